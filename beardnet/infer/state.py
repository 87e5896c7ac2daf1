"""Incremental state: which photos are done, compacted into one indexed Parquet object.

Contract:

- *Done* means: the latest record of a key has status ``ok`` or ``no_face`` **and** the same
  ``version`` (the input's ETag; ``size:mtime`` where the store gives none), the same model id
  and the same style as now. A replaced photo (new ETag), a new model or another style is
  processed again; an unchanged photo is not.
- ``OUT/_beardnet/state/state.parquet`` holds the latest record per key (``key, version,
  model, style, status, run_id, lease_token``), sorted by key, in row groups of
  :data:`ROW_GROUP` rows (their min/max statistics index it by key). Its metadata names the
  runs it has absorbed.
- A run writes manifest parts as it goes (``OUT/_beardnet/manifest/<run_id>/<token>-....parquet``)
  and, at its end, merges the previous state with every part not yet absorbed (its own, and
  those of runs killed before their end) into a new state object: one PUT, so readers see the
  old or the new state, never half of one. Planning reads the state plus the parts of runs not
  absorbed yet: one GET and a few, never every part ever written.
- Precedence for a key: the higher lease token wins, then the later part.
- Fencing: when a run takes the lease it registers its token as
  ``OUT/_beardnet/tokens/<token>.json``. A part with token ``t`` whose object is newer than the
  registration of a higher token was written by a run that had lost its lease: readers ignore
  it (its photos are then simply processed again). Times are the store's own ``LastModified``.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from beardnet.infer.keys import meta_uri

ROW_GROUP = 65536
STATE_COLUMNS = ("key", "version", "model", "style", "status", "run_id", "lease_token")
_PART_TOKEN = re.compile(r"^(\d{20})-")


def state_schema():
    import pyarrow as pa

    return pa.schema([(c, pa.int64() if c == "lease_token" else pa.string())
                      for c in STATE_COLUMNS])


def state_uri(output_uri: str) -> str:
    return meta_uri(output_uri, "state", "state.parquet")


def token_uri(output_uri: str, token: int) -> str:
    return meta_uri(output_uri, "tokens", f"{int(token):020d}.json")


def part_name(token: int, rest: str) -> str:
    """A manifest part's file name: the lease token first (readers fence on it)."""
    return f"{int(token):020d}-{rest}"


def versions(listing):
    """The ``version`` of each listed object: its ETag, else ``size:<bytes>:mtime:<s>``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    etag = listing["etag"]
    alt = pc.binary_join_element_wise(
        "size", pc.cast(pc.fill_null(listing["size"], -1), pa.string()), "mtime",
        pc.cast(pc.cast(pc.floor(pc.fill_null(listing["mtime"], 0.0)), pa.int64()), pa.string()),
        ":")
    has = pc.fill_null(pc.greater(pc.utf8_length(etag), 0), False)
    return pc.if_else(has, etag, alt)


def register_token(output_uri: str, token: int, run_id: str, s3: Any = None) -> None:
    """Record that ``run_id`` holds the lease with ``token`` from now on (see fencing)."""
    from beardnet import storage

    body = json.dumps({"token": int(token), "run_id": run_id}).encode()
    storage.write_bytes(token_uri(output_uri, token), body, s3=s3)


def _list_meta(uri: str, ext: str, s3: Any) -> list[tuple[str, float]]:
    """``(relative key, LastModified seconds)`` of the objects under ``uri``."""
    from beardnet.infer.listing import list_inputs

    try:
        t = list_inputs(uri, [ext], s3=s3, threads=4)
    except FileNotFoundError:
        return []
    return list(zip(t["key"].to_pylist(), t["mtime"].to_pylist(), strict=True))


def live_parts(output_uri: str, absorbed: set[str], s3: Any = None) -> list[dict[str, Any]]:
    """Manifest parts of runs not in ``absorbed`` and not fenced off: ``uri, run_id, token,
    mtime`` each."""
    parts = []
    base = meta_uri(output_uri, "manifest")
    for rel, mtime in _list_meta(base, ".parquet", s3):
        run_id, _, name = rel.partition("/")
        if not name or run_id in absorbed:
            continue
        m = _PART_TOKEN.match(name)
        parts.append({"uri": base + "/" + rel, "run_id": run_id,
                      "token": int(m.group(1)) if m else 0, "mtime": mtime or 0.0})
    if not parts:
        return parts
    regs = sorted((int(r.split(".")[0]), mt or 0.0)
                  for r, mt in _list_meta(meta_uri(output_uri, "tokens"), ".json", s3)
                  if r.split(".")[0].isdigit())

    def stale(p: dict[str, Any]) -> bool:
        return any(t > p["token"] and mt < p["mtime"] for t, mt in regs)

    return [p for p in parts if not stale(p)]


def read_state(output_uri: str, s3: Any = None):
    """``(state table, absorbed run ids)``; an empty table when there is no state yet."""
    import pyarrow.parquet as pq

    from beardnet import storage

    try:
        data = storage.read_bytes(state_uri(output_uri), s3=s3)
    except FileNotFoundError:
        return state_schema().empty_table(), set()
    except Exception as e:
        if "NoSuchKey" in str(e) or "404" in str(e) or "Not Found" in str(e):
            return state_schema().empty_table(), set()
        raise
    f = pq.ParquetFile(io.BytesIO(data))
    meta = f.schema_arrow.metadata or {}
    absorbed = set(json.loads(meta.get(b"beardnet.absorbed_runs", b"[]")))
    return f.read(columns=list(STATE_COLUMNS)).cast(state_schema()), absorbed


def _part_rows(part: dict[str, Any], s3: Any):
    """A manifest part as state rows (parts written before versions/tokens get nulls/0)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beardnet import storage

    t = pq.read_table(io.BytesIO(storage.read_bytes(part["uri"], s3=s3)))
    n = t.num_rows
    cols = []
    for f in state_schema():
        if f.name in t.column_names:
            cols.append(t[f.name].cast(f.type))
        elif f.name == "lease_token":
            cols.append(pa.array([part["token"]] * n, pa.int64()))
        else:
            cols.append(pa.nulls(n, f.type))
    out = pa.Table.from_arrays(cols, schema=state_schema())
    return out.append_column("_order", pa.array([part["mtime"]] * n, pa.float64()))


def merged(output_uri: str, s3: Any = None, *, extra_parts: list | None = None):
    """The latest record per key: state + live parts not absorbed. Returns ``(table,
    absorbed run ids including those merged now)``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    state, absorbed = read_state(output_uri, s3)
    parts = extra_parts if extra_parts is not None else live_parts(output_uri, absorbed, s3)
    if not parts:
        return state, absorbed
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as ex:
        tables = list(ex.map(lambda p: _part_rows(p, s3), parts))
    base = state.append_column("_order", pa.array([-1.0] * state.num_rows, pa.float64()))
    t = pa.concat_tables([base, *tables])
    t = t.filter(pc.fill_null(pc.not_equal(t["status"], "skipped_existing"), True))
    t = t.append_column("_seq", pa.array(range(t.num_rows), pa.int64()))
    t = t.sort_by([("key", "ascending"), ("lease_token", "descending"),
                   ("_order", "descending"), ("_seq", "descending")])
    keys = t["key"].combine_chunks()
    if t.num_rows:
        first = pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1))
        keep = pa.concat_arrays([pa.array([True]), pc.fill_null(first, True)])
        t = t.filter(keep)
    runs = absorbed | {p["run_id"] for p in parts}
    return t.select(list(STATE_COLUMNS)), runs


def compact(output_uri: str, s3: Any = None) -> str:
    """Merge the state with every live part not absorbed yet; write the new state object."""
    import pyarrow.parquet as pq

    from beardnet import storage

    t, runs = merged(output_uri, s3)
    t = t.replace_schema_metadata({"beardnet.absorbed_runs": json.dumps(sorted(runs))})
    buf = io.BytesIO()
    pq.write_table(t, buf, compression="zstd", row_group_size=ROW_GROUP)
    uri = state_uri(output_uri)
    storage.write_bytes(uri, buf.getvalue(), s3=s3)
    return uri


def done_mask(work, state, model_id: str):
    """For a table with ``key, version, style``: True where the state says it is done with
    that version, ``model_id`` and style (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from beardnet.infer.runlog import DONE_STATUSES

    if work.num_rows == 0 or state.num_rows == 0:
        return pa.array([False] * work.num_rows)
    done = state.filter(pc.is_in(state["status"], value_set=pa.array(DONE_STATUSES)))
    done = done.filter(pc.equal(done["model"], model_id))
    done = done.select(["key", "version", "style"]).rename_columns(["key", "_v", "_s"])
    idx = pa.table({"key": work["key"], "_i": pa.array(range(work.num_rows), pa.int64())})
    j = idx.join(done, "key", join_type="inner")
    wv = pc.take(work["version"], j["_i"])
    ws = pc.take(work["style"], j["_i"])
    same = pc.and_(pc.fill_null(pc.equal(wv, j["_v"]), False),
                   pc.fill_null(pc.equal(ws, j["_s"]), False))
    hit = pc.filter(j["_i"], same)
    mask = pc.is_in(idx["_i"], value_set=hit)
    return mask
