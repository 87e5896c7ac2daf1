"""Beard categories and the ratio tables that name them.

One definition the rest of the code imports. The order of a :class:`Categories` is the
model's conditioning index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_CATEGORIES: tuple[str, ...] = ("none", "stubble", "mustache", "goatee", "full_beard")


class RatioError(ValueError):
    """A ratio string or table that does not fit the categories."""


@dataclass(frozen=True)
class Categories:
    """An ordered beard taxonomy; the index of a name is its conditioning index."""

    names: tuple[str, ...] = DEFAULT_CATEGORIES

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("categories: at least one category is needed")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"categories: duplicate names in {list(self.names)}")
        for n in self.names:
            if not n or not n.replace("_", "").isalnum():
                raise ValueError(f"categories: bad name {n!r} (letters, digits and _ only)")

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def index(self, name: str) -> int:
        """Conditioning index of ``name``; a clear error for an unknown name."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(
                f"unknown category {name!r}; known: {', '.join(self.names)}"
            ) from None

    def indices(self, names: Iterable[str]) -> np.ndarray:
        """Vectorised name -> index (int16 array); unknown names raise naming the first."""
        arr = np.asarray(list(names) if not isinstance(names, np.ndarray) else names, dtype=object)
        lookup = {n: i for i, n in enumerate(self.names)}
        uniq, inverse = np.unique(arr.astype(str), return_inverse=True)
        codes = np.empty(len(uniq), dtype=np.int16)
        for j, u in enumerate(uniq):
            if u not in lookup:
                raise KeyError(f"unknown category {u!r}; known: {', '.join(self.names)}")
            codes[j] = lookup[u]
        return codes[inverse].reshape(arr.shape)


DEFAULT = Categories()


def parse_ratio(
    spec: str | Mapping[str | int, float] | Sequence[float],
    categories: Categories = DEFAULT,
    *,
    field: str = "ratio",
    require_all: bool = False,
) -> dict[str, float]:
    """Parse and validate a ratio against ``categories``.

    ``spec`` is a string ``"none:1,stubble:2"``, a mapping of names (or indices) to weights,
    or a sequence of weights in category order. Missing categories get weight 0 (unless
    ``require_all``). Unknown names, negative or non-finite weights and an all-zero ratio raise
    :class:`RatioError` naming ``field``. Returns ``{name: weight}`` in category order.
    """
    items: list[tuple[str | int, object]]
    if isinstance(spec, str):
        items = []
        for part in [p.strip() for p in spec.split(",") if p.strip()]:
            if ":" not in part:
                raise RatioError(f"{field}: expected name:weight, got {part!r}")
            k, v = part.split(":", 1)
            items.append((k.strip(), v.strip()))
    elif isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        seq = list(spec)
        if len(seq) != len(categories):
            raise RatioError(
                f"{field}: {len(seq)} weights for {len(categories)} categories "
                f"({', '.join(categories.names)})"
            )
        items = list(zip(categories.names, seq))
    out = {n: 0.0 for n in categories.names}
    seen: set[str] = set()
    for k, v in items:
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            if not 0 <= int(k) < len(categories):
                raise RatioError(f"{field}: category index {k} out of range 0..{len(categories)-1}")
            name = categories.names[int(k)]
        else:
            name = str(k)
            if name not in categories:
                raise RatioError(
                    f"{field}: unknown category {name!r}; known: {', '.join(categories.names)}"
                )
        if name in seen:
            raise RatioError(f"{field}: category {name!r} given twice")
        seen.add(name)
        try:
            w = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise RatioError(f"{field}.{name}: weight {v!r} is not a number") from None
        if not np.isfinite(w) or w < 0:
            raise RatioError(f"{field}.{name}: weight must be a finite number >= 0, got {v!r}")
        out[name] = w
    if require_all and seen != set(categories.names):
        missing = [n for n in categories.names if n not in seen]
        raise RatioError(f"{field}: missing categories {missing}")
    if sum(out.values()) <= 0:
        raise RatioError(f"{field}: all weights are zero; at least one must be > 0")
    return out


def format_ratio(ratio: Mapping[str, float]) -> str:
    """Inverse of :func:`parse_ratio` for a string form: ``"none:1,stubble:2"``."""
    return ",".join(f"{k}:{v:g}" for k, v in ratio.items())
