"""Listing (parallel by prefix, key lists), incremental state (done-ness, compaction, fencing)
and the workers' lease guard, against the local S3 and local folders (no Ray)."""

from __future__ import annotations

import io
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beardnet import storage
from beardnet.infer import runlog, state
from beardnet.infer.fence import LeaseClock, LeaseExpired, WriteGuard
from beardnet.infer.listing import list_inputs, read_key_list

EXTS = [".jpg", ".png"]


def test_parallel_listing_by_prefix(s3, bucket) -> None:
    st = s3.settings
    keys = [f"in/f{i}/g{j}/p{k}.jpg" for i in range(3) for j in range(2) for k in range(3)]
    keys += ["in/top.png", "in/notes.txt", "in/_beardnet/x.jpg", "in/out/skip.jpg", "other/no.jpg"]
    for k in keys:
        storage.write_bytes(f"s3://{bucket}/{k}", k.encode(), s3=st)
    t = list_inputs(f"s3://{bucket}/in/", EXTS, exclude_prefix="out", s3=st, threads=4)
    want = sorted(k[3:] for k in keys if k.startswith("in/f")) + ["top.png"]
    assert t["key"].to_pylist() == sorted(want)
    row = t.filter(pa.compute.equal(t["key"], "top.png")).to_pylist()[0]
    assert row["size"] == len(b"in/top.png") and len(row["etag"]) == 32 and row["mtime"] > 0


def test_key_lists_inventory_csv_and_parquet(s3, bucket, tmp_path) -> None:
    st = s3.settings
    csv = (f'"{bucket}","in/a%20b/c.jpg","10","etag1"\n'
           f'"{bucket}","in/d.png","20","etag2"\n'
           f'"{bucket}","elsewhere/e.jpg","30","etag3"\n'
           '"another-bucket","in/f.jpg","40","etag4"\n'
           f'"{bucket}","in/g.txt","50","etag5"\n')
    storage.write_bytes(f"s3://{bucket}/inv.csv", csv.encode(), s3=st)
    t = read_key_list(f"s3://{bucket}/inv.csv", f"s3://{bucket}/in/", EXTS, s3=st)
    assert t.select(["key", "size", "etag"]).to_pylist() == [
        {"key": "a b/c.jpg", "size": 10, "etag": "etag1"},
        {"key": "d.png", "size": 20, "etag": "etag2"},
    ]
    buf = io.BytesIO()
    pq.write_table(pa.table({"bucket": [bucket] * 2, "key": ["in/x.jpg", "in/y.jpg"],
                             "size": [1, 2], "e_tag": ['"q"', "r"]}), buf)
    path = tmp_path / "inv.parquet"
    path.write_bytes(buf.getvalue())
    t = read_key_list(str(path), f"s3://{bucket}/in", EXTS, s3=st)
    assert t["key"].to_pylist() == ["x.jpg", "y.jpg"] and t["etag"].to_pylist() == ["q", "r"]


def _part(out: str, run_id: str, token: int, rows: list[dict]) -> None:
    t = runlog.rows_to_table([runlog.empty_row(r["key"], run_id, r.get("model", "m1"))
                              | {"lease_token": token, "style": "goatee", **r} for r in rows])
    runlog.write_part(out, run_id, t, part=state.part_name(token, f"p{time.time_ns()}"))


def _work(rows: list[tuple[str, str, str]]):
    k, v, s = zip(*rows, strict=True)
    return pa.table({"key": list(k), "version": list(v), "style": list(s)})


def test_state_done_ness_compaction_and_precedence(tmp_path) -> None:
    out = str(tmp_path / "out")
    _part(out, "r1", 1, [{"key": "a.jpg", "status": "ok", "version": "v1"},
                         {"key": "b.jpg", "status": "ok", "version": "v1"},
                         {"key": "c.jpg", "status": "error", "version": "v1"},
                         {"key": "d.jpg", "status": "no_face", "version": "v1"}])
    _part(out, "r2", 2, [{"key": "b.jpg", "status": "error", "version": "v1"}])
    state.compact(out)
    st, absorbed = state.read_state(out)
    assert absorbed == {"r1", "r2"}
    assert st["key"].to_pylist() == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]  # sorted, one per key
    assert st.to_pylist()[1]["status"] == "error"  # token 2 wins over token 1
    work = _work([("a.jpg", "v1", "goatee"),  # unchanged: done
                  ("b.jpg", "v1", "goatee"),  # latest record is an error: again
                  ("c.jpg", "v1", "goatee"),  # error: again
                  ("d.jpg", "v2", "goatee"),  # replaced photo: again
                  ("e.jpg", "v1", "goatee")])  # new: again
    assert state.done_mask(work, st, "m1").to_pylist() == [True, False, False, False, False]
    assert not any(state.done_mask(work, st, "m2").to_pylist())  # new model: all again
    other = _work([("a.jpg", "v1", "mustache")])
    assert state.done_mask(other, st, "m1").to_pylist() == [False]  # other style: again
    # a later run's parts (not absorbed yet) are merged on top when planning
    _part(out, "r3", 3, [{"key": "c.jpg", "status": "ok", "version": "v1"}])
    merged, runs = state.merged(out)
    assert runs == {"r1", "r2", "r3"}
    assert state.done_mask(work, merged, "m1").to_pylist() == [True, False, True, False, False]


def test_parts_of_a_fenced_off_run_are_ignored(tmp_path) -> None:
    out = str(tmp_path / "out")
    _part(out, "old", 5, [{"key": "a.jpg", "status": "ok", "version": "v1"}])
    time.sleep(0.05)
    state.register_token(out, 6, "new")  # another run took the lease
    time.sleep(0.05)
    _part(out, "old", 5, [{"key": "b.jpg", "status": "ok", "version": "v1"}])  # written late
    merged, _ = state.merged(out)
    assert merged["key"].to_pylist() == ["a.jpg"]  # the late part is ignored


def test_versions_from_etag_or_size_and_mtime() -> None:
    t = pa.table({"key": ["a", "b"], "size": [10, 20], "etag": ["e1", None],
                  "mtime": [1.0, 1700000000.7]})
    assert state.versions(t).to_pylist() == ["e1", "size:20:mtime:1700000000"]


def test_write_guard_stops_writes_once_the_clock_says_lost() -> None:
    clock = LeaseClock(token=7, valid_until=time.time() + 60)
    guard = WriteGuard(clock, 7, wait_s=0.3)
    guard.check_write()
    clock.set(time.time() + 120)  # a renewal moves it forward
    clock.set(0.0)  # lost: final, even if an old value arrives later
    clock.set(time.time() + 500)
    guard._until = 0.0  # the cached value ran out: the guard asks the clock again
    with pytest.raises(LeaseExpired) as e:
        guard.check_write()
    assert e.value.reason == "lease_lost"
    stale = WriteGuard(LeaseClock(token=1, valid_until=time.time() - 1), 1, wait_s=0.2)
    with pytest.raises(LeaseExpired):
        stale.check_write()  # not renewed within the wait: refused
