"""Ratio-aware batch sampler (patent claim 2b).

Every batch holds the categories in a fixed composition (``per_batch``: category -> count).
How an epoch is planned (a pure function of ``(seed, epoch, rank, world_size)``):

1. Rows are grouped by category (one stable ``argsort``; no per-row Python objects).
2. For each category with count ``k_c`` per batch, the epoch needs ``k_c * G`` rows, where ``G``
   is the number of batches planned for all ranks together. The category's pool is laid out in a
   random permutation (``numpy.random.Generator(PCG64)`` seeded from ``(seed, epoch)``); when the
   pool is exhausted it is **reshuffled and reused** (a fresh permutation appended), so a row never
   repeats within an epoch until every row of its category has been used once.
3. The pool streams are cut into ``G`` consecutive slices, slice ``b`` of every category makes
   global batch ``b`` (rows shuffled inside the batch).
4. Ranks take whole batches round-robin: rank ``r`` gets global batches ``r, r+W, r+2W, ...``.
   Ranks are therefore disjoint up to pool reuse, and every batch on every rank has exactly the
   composition.
5. No row (or, with ``keys``, no underlying manifest row of oversampled data) appears twice in
   one batch: where a reshuffled pool would put a row twice into a batch that straddles the
   reshuffle, :func:`dedupe_batches` swaps it with the nearest later entry that fits.

``num_batches`` is the number of batches per epoch over *all* ranks (so the epoch's content does
not depend on the world size); ``len(sampler)`` is the number per rank: ``num_batches //
world_size`` with ``drop_last`` (default), else rounded up (the extra batches are drawn from the
pools like any other). ``num_batches=None`` plans the largest epoch in which no row repeats.

Resumption: ``state_dict()`` records epoch and batches done on this rank; after
``load_state_dict`` the next iteration continues at the next batch of the identical stream.
A ``DataLoader`` prefetches batches, so the training loop should pass the number of batches it
actually consumed: ``state_dict(batches_done=step_in_epoch)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from beardnet.categories import DEFAULT, Categories, RatioError, parse_ratio


def _resolve_counts(
    per_batch: Mapping[str | int, float], names: Categories
) -> np.ndarray:
    """``{name|index: count}`` -> int64 array of counts in category order (validated)."""
    counts = np.zeros(len(names), dtype=np.int64)
    for k, v in per_batch.items():
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            if not 0 <= int(k) < len(names):
                raise RatioError(f"per_batch: category index {k} out of range 0..{len(names)-1}")
            i = int(k)
        else:
            if str(k) not in names:
                raise RatioError(
                    f"per_batch: unknown category {k!r}; known: {', '.join(names.names)}"
                )
            i = names.index(str(k))
        fv = float(v)
        if fv < 0 or fv != int(fv):
            raise RatioError(
                f"per_batch.{names.names[i]}: count must be a whole number >= 0, got {v!r} "
                "(for shares use per_batch_from_ratio(ratio, batch_size))"
            )
        counts[i] += int(fv)
    if counts.sum() <= 0:
        raise RatioError("per_batch: all counts are zero")
    return counts


def per_batch_from_ratio(
    ratio: str | Mapping[str | int, float], batch_size: int, names: Categories = DEFAULT
) -> dict[str, int]:
    """Turn shares (e.g. ``"none:2,stubble:2,mustache:1,goatee:1,full_beard:2"``) into whole
    counts per batch of ``batch_size``. Raises :class:`RatioError` unless every share times
    ``batch_size`` is a whole number (the composition must be exact)."""
    if batch_size <= 0:
        raise RatioError(f"batch_size must be > 0, got {batch_size}")
    r = parse_ratio(ratio, names, field="sampling_ratio")
    total = sum(r.values())
    out: dict[str, int] = {}
    for n, w in r.items():
        exact = w * batch_size / total
        k = round(exact)
        if abs(exact - k) > 1e-6:
            raise RatioError(
                f"sampling_ratio: {n} would get {exact:g} of a batch of {batch_size}; choose a "
                "batch size that the shares divide exactly (or give counts per batch)"
            )
        if k:
            out[n] = k
    return out


def dedupe_batches(batches: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
    """Make every row of ``batches`` (a ``[G, k]`` plan of indices) free of repeated keys
    (``keys[index]``, or the indices themselves) by swapping a repeated entry with the nearest
    later entry that fits both batches. Repeats only arise where a pool is reshuffled and
    reused (or rows are oversampled), so only those few batches are touched: vectorised
    detection, a short Python loop for the fixes. Deterministic; raises ``ValueError`` when
    no swap exists (the pool has fewer distinct keys than a batch needs)."""
    if batches.shape[1] < 2:
        return batches
    out = np.array(batches, dtype=np.int64, copy=True)

    def kk(x: np.ndarray) -> np.ndarray:
        return x if keys is None else keys[x]

    srt = np.sort(kk(out), axis=1)
    bad = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
    g = out.shape[0]
    for b in bad:
        row_keys = kk(out[b])
        seen: set[int] = set()
        for j in range(out.shape[1]):
            key = int(row_keys[j])
            if key not in seen:
                seen.add(key)
                continue
            done = False
            for b2 in list(range(b + 1, g)) + list(range(b)):
                keys2 = kk(out[b2])
                if key in set(keys2.tolist()):
                    continue
                for j2 in range(out.shape[1]):
                    cand = int(keys2[j2])
                    if cand in seen or cand in set(row_keys.tolist()):
                        continue
                    out[b, j], out[b2, j2] = out[b2, j2], out[b, j]
                    row_keys = kk(out[b])
                    seen.add(cand)
                    done = True
                    break
                if done:
                    break
            if not done:
                raise ValueError(
                    "batch plan: a batch needs more distinct rows of a category than it has"
                )
    return out


class PlannedBatchSampler(Sampler[list[int]]):
    """What every beardnet batch sampler shares: an epoch is a plan (an int array
    ``[len(self), batch_size]`` from :meth:`plan_epoch`, a pure function of the seed, epoch,
    rank and world size) iterated batch by batch, with ``set_epoch`` and a
    ``state_dict``/``load_state_dict`` that resume at the next batch.

    Subclasses set ``seed``, ``num_batches``, ``rank``, ``world_size``, ``per_rank`` and
    implement :meth:`plan_epoch`; :meth:`_state_extra` adds fields that must match on resume.
    """

    seed: int
    num_batches: int
    rank: int
    world_size: int
    per_rank: int
    epoch: int = 0
    _done: int = 0  # batches yielded in the current epoch on this rank
    _plan: np.ndarray | None = None
    _plan_epoch: int | None = None

    def plan_epoch(self, epoch: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _current_plan(self) -> np.ndarray:
        if self._plan is None or self._plan_epoch != self.epoch:
            self._plan = self.plan_epoch(self.epoch)
            self._plan_epoch = self.epoch
        return self._plan

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[list[int]]:
        plan = self._current_plan()
        if self._done >= self.per_rank:  # a finished epoch iterated again: start it over
            self._done = 0
        while self._done < self.per_rank:
            b = plan[self._done]
            self._done += 1
            yield b.tolist()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a different epoch restarts at its first batch (same epoch: keeps
        the position, so ``load_state_dict`` followed by ``set_epoch`` resumes)."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._done = 0

    @property
    def batches_done(self) -> int:
        """Batches yielded so far in the current epoch on this rank."""
        return self._done

    def _state_extra(self) -> dict[str, Any]:
        return {}

    def state_dict(self, batches_done: int | None = None) -> dict[str, Any]:
        """Resumable state. ``batches_done`` overrides the yielded count (pass the number of
        batches the training loop consumed, since a DataLoader prefetches)."""
        return {
            "epoch": self.epoch,
            "batches_done": int(self._done if batches_done is None else batches_done),
            "seed": self.seed,
            "num_batches": self.num_batches,
            "rank": self.rank,
            "world_size": self.world_size,
            **self._state_extra(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at the next batch after ``state``. The seed, batch plan and world size must
        match (a stream for a different world size is a different stream)."""
        for key, mine in (
            ("seed", self.seed),
            ("num_batches", self.num_batches),
            ("world_size", self.world_size),
        ):
            if key in state and int(state[key]) != mine:
                raise ValueError(f"sampler state: {key}={state[key]} but this sampler has {mine}")
        for key, mine in self._state_extra().items():
            if key in state and state[key] != mine:
                raise ValueError(f"sampler state: {key} {state[key]} differs from {mine}")
        done = int(state["batches_done"])
        if not 0 <= done <= self.per_rank:
            raise ValueError(f"sampler state: batches_done {done} not in 0..{self.per_rank}")
        self.epoch = int(state["epoch"])
        self._done = done


class RatioBatchSampler(PlannedBatchSampler):
    """Yield lists of row indices, each batch with exactly the ``per_batch`` composition.

    ``categories``: integer category index per row. ``per_batch``: category name or index ->
    rows per batch. See the module docstring for the plan, the pool reuse rule and resumption.
    """

    def __init__(
        self,
        categories: np.ndarray,
        per_batch: Mapping[str | int, float],
        num_batches: int | None,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        drop_last: bool = True,
        names: Categories = DEFAULT,
        keys: np.ndarray | None = None,
    ) -> None:
        cats = np.asarray(categories)
        if cats.ndim != 1 or not np.issubdtype(cats.dtype, np.integer):
            raise TypeError("categories must be a 1-D integer array (category index per row)")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} / world_size {world_size} is not valid")
        if cats.size and (cats.min() < 0 or cats.max() >= len(names)):
            raise ValueError(f"categories: values must be in 0..{len(names)-1}")
        self.names = names
        self.keys = None if keys is None else np.asarray(keys, dtype=np.int64)
        if self.keys is not None and self.keys.shape != cats.shape:
            raise ValueError("keys must have one entry per row")
        self.counts = _resolve_counts(per_batch, names)
        self.batch_size = int(self.counts.sum())
        self._cats = cats
        self.available = np.bincount(cats, minlength=len(names)).astype(np.int64)
        short = [
            names.names[i]
            for i in range(len(names))
            if self.counts[i] > 0 and self.available[i] == 0
        ]
        if short:
            raise ValueError(
                f"RatioBatchSampler: no rows for categor{'y' if len(short) == 1 else 'ies'} "
                f"{', '.join(short)} but the batch composition needs them"
            )
        for i in np.flatnonzero(self.counts > 0):
            rows = np.flatnonzero(cats == i)
            distinct = rows.size if self.keys is None else np.unique(self.keys[rows]).size
            if distinct < self.counts[i]:
                raise ValueError(
                    f"RatioBatchSampler: category {names.names[i]} has {distinct} distinct rows "
                    f"but every batch needs {int(self.counts[i])} of them"
                )
        if num_batches is None:
            need = self.counts > 0
            num_batches = int((self.available[need] // self.counts[need]).min())
        if num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")
        self.num_batches = int(num_batches)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        if drop_last:
            self.per_rank = self.num_batches // self.world_size
            if self.per_rank == 0:
                raise ValueError(
                    f"num_batches {self.num_batches} < world_size {self.world_size} with drop_last"
                )
        else:
            self.per_rank = math.ceil(self.num_batches / self.world_size)
        self.epoch = 0
        self._done = 0  # batches yielded in the current epoch on this rank
        self._plan: np.ndarray | None = None
        self._plan_epoch: int | None = None
        self._order: np.ndarray | None = None  # row indices grouped by category
        self._starts: np.ndarray | None = None

    # -- planning ----------------------------------------------------------------------------
    def _group(self) -> None:
        if self._order is None:
            self._order = np.argsort(self._cats, kind="stable")
            self._starts = np.concatenate([[0], np.cumsum(self.available)])

    def plan_epoch(self, epoch: int) -> np.ndarray:
        """This rank's batches for ``epoch`` as an int64 array ``[len(self), batch_size]``."""
        self._group()
        assert self._order is not None and self._starts is not None
        g = self.per_rank * self.world_size  # global batches planned
        # only the batches of this rank are materialised; the pool streams are global
        mine = np.arange(self.rank, g, self.world_size)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, epoch])))
        parts = []
        for c in range(len(self.names)):
            k = int(self.counts[c])
            if k == 0:
                continue
            n = int(self.available[c])
            pool = self._order[self._starts[c] : self._starts[c + 1]]
            need = k * g
            passes = -(-need // n)
            if passes == 1:
                stream = rng.permutation(n)
            elif passes <= 16:
                stream = np.concatenate([rng.permutation(n) for _ in range(passes)])
            else:
                stream = rng.permuted(np.broadcast_to(np.arange(n), (passes, n)), axis=1).ravel()
            plan = pool[stream[:need].reshape(g, k)]
            if passes > 1 or self.keys is not None:  # only reuse can repeat a row
                plan = dedupe_batches(plan, self.keys)
            parts.append(plan[mine])
        batches = np.concatenate(parts, axis=1).astype(np.int64, copy=False)
        # mix categories inside each batch (deterministic, from the same generator)
        return rng.permuted(batches, axis=1)

    def _state_extra(self) -> dict[str, Any]:
        return {"per_batch": [int(c) for c in self.counts]}


class ShuffleBatchSampler(PlannedBatchSampler):
    """Plain shuffled batches (no sampling ratio): the ablation's baseline.

    Per epoch one permutation of all rows (seeded by ``(seed, epoch)``) is cut into
    ``num_batches`` global batches of ``batch_size`` (cycling when the rows run out); rank ``r``
    takes global batches ``r, r+W, ...``. Same iteration and resume protocol as
    :class:`RatioBatchSampler`.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        num_batches: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        keys: np.ndarray | None = None,
    ) -> None:
        if n <= 0:
            raise ValueError("ShuffleBatchSampler: no rows")
        self.n, self.batch_size, self.num_batches = int(n), int(batch_size), int(num_batches)
        self.rank, self.world_size, self.seed = int(rank), int(world_size), int(seed)
        self.keys = None if keys is None else np.asarray(keys, dtype=np.int64)
        self.per_rank = self.num_batches // self.world_size
        self.epoch = 0
        self._done = 0

    def plan_epoch(self, epoch: int) -> np.ndarray:
        """This rank's batches for ``epoch`` as an int64 array ``[len(self), batch_size]``."""
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, epoch, 7])))
        g = self.per_rank * self.world_size
        need = g * self.batch_size
        stream = np.concatenate([rng.permutation(self.n) for _ in range(-(-need // self.n))])
        plan = dedupe_batches(stream[:need].reshape(g, self.batch_size), self.keys)
        return plan[self.rank :: self.world_size]
