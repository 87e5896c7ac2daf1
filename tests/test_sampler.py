"""RatioBatchSampler (claim 2b): composition, disjointness, determinism, resume, pool reuse."""

from __future__ import annotations

import numpy as np
import pytest

from beardnet.categories import RatioError
from beardnet.data.sampler import RatioBatchSampler, per_batch_from_ratio

PER = {"none": 2, "stubble": 2, "mustache": 1, "goatee": 1, "full_beard": 2}


def _cats(n: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(5, size=n, p=[0.5, 0.2, 0.1, 0.1, 0.1]).astype(np.int16)


def _comp(cats: np.ndarray, batch: list[int]) -> list[int]:
    return np.bincount(cats[batch], minlength=5).tolist()


def test_exact_composition_every_batch_every_rank() -> None:
    cats = _cats()
    for rank in range(3):
        s = RatioBatchSampler(cats, PER, 30, rank=rank, world_size=3, seed=1)
        batches = list(s)
        assert len(batches) == len(s) == 10
        for b in batches:
            assert _comp(cats, b) == [2, 2, 1, 1, 2]


def test_names_and_indices_are_equivalent() -> None:
    cats = _cats()
    a = list(RatioBatchSampler(cats, PER, 5, seed=3))
    b = list(RatioBatchSampler(cats, {0: 2, 1: 2, 2: 1, 3: 1, 4: 2}, 5, seed=3))
    assert a == b


def test_ranks_disjoint_and_no_repeats_within_pool() -> None:
    cats = _cats(2000)
    seen: list[int] = []
    for rank in range(4):
        for b in RatioBatchSampler(cats, PER, 40, rank=rank, world_size=4, seed=7):
            seen.extend(b)
    assert len(seen) == 40 * 8
    assert len(set(seen)) == len(seen)  # pools are big enough: no row twice


def test_deterministic_and_set_epoch_changes_order() -> None:
    cats = _cats()
    s1 = RatioBatchSampler(cats, PER, 20, rank=1, world_size=2, seed=5)
    s2 = RatioBatchSampler(cats, PER, 20, rank=1, world_size=2, seed=5)
    e0 = list(s1)
    assert e0 == list(s2)
    s1.set_epoch(1)
    e1 = list(s1)
    assert e1 != e0
    s2.set_epoch(1)
    assert list(s2) == e1
    assert list(RatioBatchSampler(cats, PER, 20, rank=1, world_size=2, seed=6)) != e0


def test_resume_mid_epoch_gives_identical_remaining_stream() -> None:
    cats = _cats()
    s = RatioBatchSampler(cats, PER, 12, seed=9)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2)  # same epoch after a full pass: starts over
    it = iter(s)
    head = [next(it) for _ in range(5)]
    state = s.state_dict()
    assert state["batches_done"] == 5 and state["epoch"] == 2
    r = RatioBatchSampler(cats, PER, 12, seed=9)
    r.load_state_dict(state)
    r.set_epoch(2)  # a training loop calls set_epoch again: keeps the position
    rest = list(r)
    assert head + rest == full
    r.set_epoch(3)
    assert len(list(r)) == 12
    # explicit consumed count overrides the prefetching DataLoader's yielded count
    r2 = RatioBatchSampler(cats, PER, 12, seed=9)
    r2.load_state_dict(s.state_dict(batches_done=3))
    assert list(r2) == full[3:]


def test_state_from_other_world_size_is_refused() -> None:
    cats = _cats()
    s = RatioBatchSampler(cats, PER, 12, world_size=2)
    r = RatioBatchSampler(cats, PER, 12, world_size=3)
    with pytest.raises(ValueError, match="world_size"):
        r.load_state_dict(s.state_dict())


def test_pool_reused_only_after_exhaustion() -> None:
    # category 4 has 7 rows; 10 global batches need 20 of them
    cats = np.array([0] * 100 + [4] * 7, dtype=np.int64)
    world = 2
    per_rank = [
        list(RatioBatchSampler(cats, {0: 1, 4: 2}, 10, rank=k, world_size=world, seed=2))
        for k in range(world)
    ]
    glob = [per_rank[b % world][b // world] for b in range(10)]  # global batch order
    by_batch = [[i for i in b if cats[i] == 4] for b in glob]
    flat = [i for b in by_batch for i in b]
    assert len(flat) == 20
    # the first 3 batches (6 draws) use distinct rows; by batch 4 the 7-row pool is exhausted
    assert len(set(flat[:6])) == 6
    assert set(flat[:8]) == set(range(100, 107))
    # 20 draws from 7 rows: every row twice or three times (reshuffled passes, no favourites)
    counts = np.bincount(np.array(flat) - 100, minlength=7)
    assert set(counts.tolist()) <= {2, 3} and counts.sum() == 20
    assert all(_comp(cats, b)[4] == 2 for b in glob)
    # the none rows (100 of them, 10 needed) never repeat
    nones = [i for b in glob for i in b if cats[i] == 0]
    assert len(set(nones)) == 10


def test_len_drop_last_and_none() -> None:
    cats = _cats()
    assert len(RatioBatchSampler(cats, PER, 10, rank=2, world_size=3)) == 3
    s = RatioBatchSampler(cats, PER, 10, rank=2, world_size=3, drop_last=False)
    assert len(s) == 4 and len(list(s)) == 4
    n = RatioBatchSampler(cats, PER, None)
    avail = np.bincount(cats, minlength=5)
    assert len(n) == int(min(avail[i] // c for i, c in enumerate([2, 2, 1, 1, 2])))


def test_missing_category_and_bad_counts() -> None:
    cats = np.zeros(50, dtype=np.int64)
    with pytest.raises(ValueError, match="stubble"):
        RatioBatchSampler(cats, {"none": 1, "stubble": 1}, 5)
    with pytest.raises(RatioError, match="whole number"):
        RatioBatchSampler(cats, {"none": 1.5}, 5)
    with pytest.raises(RatioError, match="unknown category"):
        RatioBatchSampler(cats, {"beard": 1}, 5)


def test_per_batch_from_ratio() -> None:
    assert per_batch_from_ratio("none:2,stubble:2,mustache:1,goatee:1,full_beard:2", 16) == {
        "none": 4, "stubble": 4, "mustache": 2, "goatee": 2, "full_beard": 4
    }
    assert per_batch_from_ratio({"none": 0.5, "goatee": 0.5}, 4) == {"none": 2, "goatee": 2}
    with pytest.raises(RatioError, match="batch size"):
        per_batch_from_ratio("none:1,stubble:1,goatee:1", 10)


def test_planning_millions_of_skewed_rows() -> None:
    """Scale check (behaviour only; the time and memory figures are in ``make bench``)."""
    rng = np.random.default_rng(0)
    cats = rng.choice(5, size=2_000_000, p=[0.8, 0.1, 0.05, 0.03, 0.02]).astype(np.int16)
    s = RatioBatchSampler(cats, {i: 2 for i in range(5)}, 100_000, rank=1, world_size=2)
    plan = s.plan_epoch(0)
    assert plan.shape == (50_000, 10)
    assert _comp(cats, plan[0].tolist()) == [2] * 5
    assert _comp(cats, plan[-1].tolist()) == [2] * 5


def test_no_row_twice_in_a_batch_at_pool_reuse() -> None:
    """A small pool reused many times (reshuffled between passes) never puts one row, or with
    ``keys`` one underlying manifest row, twice into a batch; composition stays exact."""
    from beardnet.data.sampler import ShuffleBatchSampler, dedupe_batches

    cats = np.array([0] * 5 + [1] * 3 + [2] * 7)
    s = RatioBatchSampler(cats, {0: 4, 1: 3, 2: 2}, 300, seed=2)
    plan = s.plan_epoch(0)
    assert all(len(set(b.tolist())) == len(b) for b in plan)
    assert all(np.bincount(cats[b], minlength=3).tolist() == [4, 3, 2] for b in plan)
    # oversampled rows: indices 0-5 are rows 0,0,1,1,2,2 of the manifest
    keys = np.array([0, 0, 1, 1, 2, 2, 3, 4, 5, 6])
    k = RatioBatchSampler(np.zeros(10, np.int64), {0: 4}, 50, seed=1, keys=keys)
    assert all(len(set(keys[b].tolist())) == 4 for b in k.plan_epoch(0))
    sh = ShuffleBatchSampler(9, 8, 40, seed=4)
    assert all(len(set(b.tolist())) == 8 for b in sh.plan_epoch(0))
    with pytest.raises(ValueError, match="distinct"):
        dedupe_batches(np.array([[1, 1], [1, 1]]))
    with pytest.raises(ValueError, match="distinct"):
        RatioBatchSampler(np.zeros(3, np.int64), {0: 4}, 5)
