"""Sampler benchmark: plan one epoch of :class:`RatioBatchSampler` over millions of rows.

The manifest is a skewed 5-category integer array (shares like a real photo set, after
CelebA's attributes: none 80%, stubble 10%, goatee 5%, full_beard 3%, mustache 2%), built
before the measurement starts. One epoch has ``rows // batch`` batches of 4 per category.

Timed passes (no tracing; the best of ``repeats`` counts, the machine being shared) drain the
epoch in full (batches are dropped as they come), so the time holds however lazily the sampler
plans. One more pass under :mod:`tracemalloc` (numpy reports its buffers to it) plans the epoch
and takes its first batch, for the peak of new allocations.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Mapping
from typing import Any

import numpy as np

from beardnet.categories import DEFAULT, Categories

#: Category shares of the skewed manifest, in the spirit of CelebA's beard attributes.
SKEW: dict[str, float] = {
    "none": 0.80,
    "stubble": 0.10,
    "mustache": 0.02,
    "goatee": 0.05,
    "full_beard": 0.03,
}
#: Rows of each category in every batch (20 per batch, every target style equally often).
PER_BATCH: dict[str, int] = {name: 4 for name in DEFAULT.names}


def skewed_categories(
    n_rows: int,
    shares: Mapping[str, float] = SKEW,
    categories: Categories = DEFAULT,
    seed: int = 0,
) -> np.ndarray:
    """An int16 array of ``n_rows`` category indices drawn with ``shares``."""
    p = np.array([float(shares.get(n, 0.0)) for n in categories.names], dtype=np.float64)
    p = p / p.sum()
    rng = np.random.default_rng(seed)
    return rng.choice(len(categories), size=n_rows, p=p).astype(np.int16)


def _make_sampler(cats: np.ndarray, per_batch: Mapping[str, int], num_batches: int, seed: int):
    from beardnet.data.sampler import RatioBatchSampler

    try:
        return RatioBatchSampler(cats, dict(per_batch), num_batches, seed=seed)
    except (KeyError, TypeError, ValueError):
        # Some signatures want category indices rather than names.
        by_index = {DEFAULT.index(k): v for k, v in per_batch.items()}
        return RatioBatchSampler(cats, by_index, num_batches, seed=seed)


def _drain(sampler: Any, epoch: int) -> tuple[int, int, float]:
    """Plan and iterate one epoch; returns (batches, rows, seconds to the first batch)."""
    t0 = time.perf_counter()
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    it = iter(sampler)
    n_batches = 0
    n_rows = 0
    first = None
    for batch in it:
        if first is None:
            first = time.perf_counter() - t0
        n_batches += 1
        n_rows += len(batch)
    return n_batches, n_rows, first if first is not None else time.perf_counter() - t0


def bench_sampler_once(
    n_rows: int,
    per_batch: Mapping[str, int] = PER_BATCH,
    seed: int = 0,
    measure_memory: bool = True,
    repeats: int = 2,
) -> dict[str, float]:
    """Time (and trace the peak memory of) constructing the sampler and draining one epoch.

    Returns ``rows, batches, batch_size, plan_s`` (construct + whole epoch; the fastest of
    ``repeats`` passes, since the machine is shared), ``cpu_s`` (CPU seconds of that pass),
    ``first_batch_s`` (construct + time to the first batch) and ``peak_mb`` (tracemalloc
    peak of new allocations; 0 when ``measure_memory`` is off).
    """
    import beardnet.data.sampler  # noqa: F401 - import outside the timed region

    cats = skewed_categories(n_rows, seed=seed)
    batch_size = int(sum(per_batch.values()))
    num_batches = max(1, n_rows // batch_size)
    gc.collect()

    best: tuple[float, float, float, float] | None = None  # wall, cpu, init, first batch
    for _ in range(max(1, repeats)):
        c0 = time.process_time()
        t0 = time.perf_counter()
        sampler = _make_sampler(cats, per_batch, num_batches, seed)
        t_init = time.perf_counter() - t0
        n_b, n_r, t_first = _drain(sampler, epoch=0)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        if n_b != len(sampler) or n_r != n_b * batch_size:
            raise AssertionError(
                f"sampler gave {n_b} batches / {n_r} rows, expected {len(sampler)} x {batch_size}"
            )
        if best is None or wall < best[0]:
            best = (wall, cpu, t_init, t_init + t_first)
        del sampler
        gc.collect()
    assert best is not None
    plan_s, cpu_s, t_init, first_s = best

    peak_mb = 0.0
    if measure_memory:
        tracemalloc.start()
        try:
            # plan + the first batch: iterating further holds one more small list at a time,
            # never more, and tracing 500k list allocations would only slow this pass down
            sampler = _make_sampler(cats, per_batch, num_batches, seed)
            sampler.set_epoch(1)
            next(iter(sampler))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        del sampler
        peak_mb = peak / 2**20
    gc.collect()
    return {
        "rows": float(n_rows),
        "batches": float(n_b),
        "batch_size": float(batch_size),
        "init_s": t_init,
        "first_batch_s": first_s,
        "plan_s": plan_s,
        "cpu_s": cpu_s,
        "peak_mb": peak_mb,
        "input_mb": cats.nbytes / 2**20,
    }


def run(report: Any, quick: bool = False) -> dict[str, Any]:
    """Run the sampler benchmark at 1M and 10M rows and record its metrics in ``report``."""
    out: dict[str, Any] = {}
    repeats = 1 if quick else 3
    for label, n in (("1m", 1_000_000), ("10m", 10_000_000)):
        r = bench_sampler_once(n, repeats=repeats)
        out[label] = r
        report.add(f"sampler_{label}_s", r["plan_s"], "s",
                   note=f"construct + set_epoch + drain one epoch, best of {repeats}"
                   if label == "10m"
                   else "")
        report.add(f"sampler_{label}_peak_mb", r["peak_mb"], "MB",
                   note="tracemalloc peak of new allocations (input array excluded)"
                   if label == "10m" else "")
        report.add(f"sampler_{label}_first_batch_s", r["first_batch_s"], "s")
        report.add(f"sampler_{label}_cpu_s", r["cpu_s"], "s",
                   note="CPU seconds of the timed pass (less sensitive to other users)"
                   if label == "10m" else "")
    report.details["sampler"] = out
    return out
