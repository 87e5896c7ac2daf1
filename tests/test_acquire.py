"""Acquisition by category ratio (claim 2a) and the ``beardnet acquire`` CLI."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from beardnet.data.acquire import acquire, acquire_by_ratio, largest_remainder

SKEWED = np.repeat(np.arange(5), [800, 100, 20, 50, 30])  # none, stubble, mustache, goatee, full


def test_largest_remainder() -> None:
    assert largest_remainder(np.array([1, 1, 1]), 10).tolist() == [4, 3, 3]
    assert largest_remainder(np.array([0.5, 0.3, 0.2]), 7).tolist() == [4, 2, 1]  # 3.5 2.1 1.4
    assert largest_remainder(np.array([1, 0, 1]), 3).tolist() == [2, 0, 1]
    assert largest_remainder(np.array([2, 1]), 0).tolist() == [0, 0]


def test_counts_follow_ratio_exactly() -> None:
    idx, rep = acquire(SKEWED, "none:2,stubble:1,mustache:1,goatee:1,full_beard:1", total=120)
    counts = np.bincount(SKEWED[idx], minlength=5).tolist()
    assert counts == [40, 20, 20, 20, 20]
    assert len(set(idx.tolist())) == 120  # no repeats without oversampling
    assert rep.taken["none"] == 40 and rep.dropped["none"] == 760 and rep.oversampled["none"] == 0
    assert rep.available["mustache"] == 20 and rep.dropped["mustache"] == 0


def test_total_none_is_largest_without_oversampling() -> None:
    idx = acquire_by_ratio(SKEWED, {"none": 1, "stubble": 1, "mustache": 1, "goatee": 1,
                                    "full_beard": 1})
    assert np.bincount(SKEWED[idx], minlength=5).tolist() == [20] * 5  # mustache limits
    idx = acquire_by_ratio(SKEWED, {"none": 1, "stubble": 1})  # others weight 0
    assert np.bincount(SKEWED[idx], minlength=5).tolist() == [100, 100, 0, 0, 0]
    # indices as keys
    cats = np.array([0, 0, 1, 1, 2])
    idx = acquire_by_ratio(cats, {0: 1, 1: 1, 2: 1})
    assert np.bincount(cats[idx], minlength=3).tolist() == [1, 1, 1]


def test_short_category_errors_or_oversamples() -> None:
    with pytest.raises(ValueError, match="mustache.*20 rows.*needs 40"):
        acquire(SKEWED, "none:1,mustache:1", total=80)
    idx, rep = acquire(SKEWED, "none:1,mustache:1", total=90, allow_oversample=True)
    must = idx[SKEWED[idx] == 2]
    assert must.size == 45
    per_row = np.bincount(must - 900, minlength=20)
    assert per_row.min() == 2 and per_row.max() == 3  # spread evenly
    assert rep.oversampled["mustache"] == 25 and rep.distinct["mustache"] == 20
    with pytest.raises(ValueError, match="goatee"):
        acquire(np.zeros(10, dtype=np.int64), "none:1,goatee:1")


def test_deterministic_in_seed() -> None:
    a = acquire_by_ratio(SKEWED, "none:1,stubble:1", total=50, seed=3)
    b = acquire_by_ratio(SKEWED, "none:1,stubble:1", total=50, seed=3)
    c = acquire_by_ratio(SKEWED, "none:1,stubble:1", total=50, seed=4)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert np.all(np.diff(a) >= 0)


def test_cli_writes_manifest_and_report(tmp_path) -> None:
    from beardnet.cli import main
    from beardnet.manifest import read_manifest, write_manifest

    rows = []
    cats = ["none"] * 30 + ["stubble"] * 6 + ["mustache"] * 4 + ["goatee"] * 5 + ["full_beard"] * 5
    for i, c in enumerate(cats):
        rows.append({"uri": f"images/{i}/{c}.png", "identity": str(i), "category": c,
                     "split": "train" if i % 10 else "val"})
    src = tmp_path / "src" / "manifest.parquet"
    write_manifest(pa.Table.from_pylist(rows), str(src))
    out = tmp_path / "acq"
    rc = main(["acquire", "--data", str(tmp_path / "src"), "--out", str(out),
               "--ratio", "none:2,stubble:1,mustache:1,goatee:1,full_beard:1",
               "--total", "30", "--allow-oversample", "--seed", "1"])
    assert rc == 0
    t = read_manifest(str(out / "manifest.parquet"))
    rep = json.loads((out / "acquire_report.json").read_text())
    assert rep["rows"] == 30 and rep["per_category"]["none"]["taken"] == 10
    reps = t.column("repeat").to_pylist() if "repeat" in t.column_names else [1] * t.num_rows
    by_cat: dict[str, int] = {}
    for c, r in zip(t.column("category").to_pylist(), reps):
        by_cat[c] = by_cat.get(c, 0) + r
    assert by_cat == {"none": 10, "stubble": 5, "mustache": 5, "goatee": 5, "full_beard": 5}
    assert set(t.column("split").to_pylist()) == {"train"}
    assert all(u.startswith(str(tmp_path / "src")) for u in t.column("uri").to_pylist())
    # mustache has 4 rows and goatee 4 in train: one extra copy each
    assert rep["per_category"]["mustache"]["oversampled"] == 1
    assert rep["per_category"]["goatee"]["oversampled"] == 1
    assert max(reps) == 2 and t.num_rows == 28
    rc = main(["acquire", "--data", str(src), "--out", str(tmp_path / "x.parquet"),
               "--ratio", "none:1,mustache:1", "--total", "40"])
    assert rc == 1
