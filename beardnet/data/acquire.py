"""Acquisition of a training set by category ratio (patent claim 2a).

Counts per category follow the ratio exactly up to **largest-remainder rounding**: category
``c`` gets ``floor(p_c * T)`` rows, and the ``T - sum(floor)`` rows left over go one each to the
categories with the largest fractional parts (ties: lower category index first).
``total=None`` takes the largest ``T`` the data allows without oversampling: the largest ``T``
with ``p_c * T <= n_c`` for every category (its rounded quotas always fit).

Within a category, rows are subsampled without replacement, deterministically from ``seed``.
A category with fewer rows than its quota raises :class:`ValueError` naming it, unless
``allow_oversample``: then every row is taken ``q // n`` times and ``q % n`` further rows are
drawn without replacement (oversampling with replacement, spread as evenly as possible).
Numpy only; returns row indices sorted ascending (repeats adjacent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from beardnet.categories import DEFAULT, Categories, parse_ratio


@dataclass
class AcquireReport:
    """What an acquisition took: per category name -> count."""

    ratio: dict[str, float]
    total: int
    available: dict[str, int] = field(default_factory=dict)
    taken: dict[str, int] = field(default_factory=dict)  # rows in the result (with repeats)
    distinct: dict[str, int] = field(default_factory=dict)  # distinct source rows used
    dropped: dict[str, int] = field(default_factory=dict)  # available rows not used
    oversampled: dict[str, int] = field(default_factory=dict)  # extra copies (taken - distinct)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio,
            "total": self.total,
            "seed": self.seed,
            "per_category": {
                n: {
                    "available": self.available[n],
                    "taken": self.taken[n],
                    "distinct": self.distinct[n],
                    "dropped": self.dropped[n],
                    "oversampled": self.oversampled[n],
                }
                for n in self.available
            },
        }


def largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` in proportion to ``shares`` (largest remainder)."""
    p = np.asarray(shares, dtype=np.float64)
    p = p / p.sum()
    exact = p * total
    base = np.floor(exact + 1e-9).astype(np.int64)
    left = int(total - base.sum())
    if left > 0:
        frac = np.where(p > 0, exact - base, -1.0)
        order = np.argsort(-frac, kind="stable")
        base[order[:left]] += 1
    return base


def _max_total(p: np.ndarray, avail: np.ndarray) -> int:
    need = p > 0
    # the largest T with p_c * T <= n_c for every category: its rounded quotas always fit
    return int(np.floor((avail[need] / p[need]).min() + 1e-9))


def acquire(
    categories: np.ndarray,
    ratio: str | Mapping[str | int, float],
    total: int | None = None,
    seed: int = 0,
    allow_oversample: bool = False,
    names: Categories = DEFAULT,
) -> tuple[np.ndarray, AcquireReport]:
    """Row indices by category ratio plus an :class:`AcquireReport` (see module docstring)."""
    cats = np.asarray(categories)
    if cats.ndim != 1 or (cats.size and not np.issubdtype(cats.dtype, np.integer)):
        raise TypeError("categories must be a 1-D integer array (category index per row)")
    if cats.size and (cats.min() < 0 or cats.max() >= len(names)):
        raise ValueError(f"categories: values must be in 0..{len(names)-1}")
    r = parse_ratio(ratio, names, field="ratio")
    w = np.array([r[n] for n in names.names], dtype=np.float64)
    p = w / w.sum()
    avail = np.bincount(cats.astype(np.int64), minlength=len(names)).astype(np.int64)
    if total is None:
        empty = [names.names[i] for i in range(len(names)) if p[i] > 0 and avail[i] == 0]
        if empty:
            raise ValueError(
                f"acquire: no rows for categor{'y' if len(empty) == 1 else 'ies'} "
                f"{', '.join(empty)}, which the ratio asks for"
            )
        total = _max_total(p, avail)
    if total < 0:
        raise ValueError(f"acquire: total must be >= 0, got {total}")
    quota = largest_remainder(p, int(total))
    short = [i for i in range(len(names)) if quota[i] > avail[i]]
    if short and not allow_oversample:
        desc = "; ".join(
            f"category {names.names[i]!r} has {avail[i]} rows but the ratio needs {quota[i]} "
            f"of {total}"
            for i in short
        )
        raise ValueError(f"acquire: {desc} (lower the total, or allow oversampling)")
    empty = [names.names[i] for i in short if avail[i] == 0]
    if empty:
        raise ValueError(f"acquire: cannot oversample categor{'y' if len(empty) == 1 else 'ies'} "
                         f"{', '.join(empty)}: no rows at all")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 0xACC])))
    order = np.argsort(cats, kind="stable")
    starts = np.concatenate([[0], np.cumsum(avail)])
    parts = []
    rep = AcquireReport(ratio=r, total=int(total), seed=int(seed))
    for i, n in enumerate(names.names):
        pool = order[starts[i] : starts[i + 1]]
        q, a = int(quota[i]), int(avail[i])
        if q <= a:
            pick = pool[rng.choice(a, size=q, replace=False)] if q else pool[:0]
            distinct = q
        else:
            full, rest = divmod(q, a)
            pick = np.concatenate([np.tile(pool, full), pool[rng.choice(a, size=rest, replace=False)]])
            distinct = a
        parts.append(pick)
        rep.available[n] = a
        rep.taken[n] = q
        rep.distinct[n] = distinct
        rep.dropped[n] = a - distinct
        rep.oversampled[n] = q - distinct
    idx = np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)
    return idx, rep


def acquire_by_ratio(
    categories: np.ndarray,
    ratio: str | Mapping[str | int, float],
    total: int | None = None,
    seed: int = 0,
    allow_oversample: bool = False,
    names: Categories = DEFAULT,
) -> np.ndarray:
    """Row indices whose category counts follow ``ratio`` (see :func:`acquire` for the report)."""
    return acquire(categories, ratio, total, seed, allow_oversample, names)[0]
