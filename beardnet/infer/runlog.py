"""The transform job's records: manifest rows, Parquet parts, earlier runs, the run summary.

Layout under the output prefix ::

    OUT/_beardnet/manifest/<run_id>/<part>.parquet   one row per input handled by that run
    OUT/_beardnet/runs/<run_id>.json                 the run summary
    OUT/_beardnet/state/state.parquet                compacted state (beardnet.infer.state)
    OUT/_beardnet/tokens/<token>.json                lease tokens taken (fencing)
    OUT/_beardnet/lease.json                         see beardnet.infer.lease

Parts are written per block while the job runs (after that block's images are written), so a
run killed half way leaves a manifest of what it finished, and ``--incremental`` picks up there.
"""

from __future__ import annotations

import io
import json
import math
import os
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from beardnet.infer.keys import meta_uri

#: Row statuses. ``skipped_existing`` rows are only written when the config asks for them.
STATUSES: tuple[str, ...] = ("ok", "no_face", "skipped_existing", "error")
#: Statuses that count as done for ``--incremental``.
DONE_STATUSES: tuple[str, ...] = ("ok", "no_face")

TIMING_FIELDS: tuple[str, ...] = (
    "read_s",
    "decode_s",
    "faces_s",
    "network_s",
    "encode_s",
    "write_s",
)

#: Column name -> pyarrow type name; the order is the manifest's column order.
MANIFEST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("key", "string"),
    ("status", "string"),
    ("error", "string"),
    ("faces", "int32"),
    ("faces_small", "int32"),
    ("style", "string"),
    ("beard_area_ratio", "float32"),
    ("bytes_in", "int64"),
    ("bytes_out", "int64"),
    ("model", "string"),
    ("run_id", "string"),
    *((t, "float32") for t in TIMING_FIELDS),
    ("version", "string"),  # the input's ETag (or size:mtime) when it was read
    ("lease_token", "int64"),  # the fencing token of the run's lease
    ("network_node", "string"),  # Ray node id of the network actor that edited the faces
)


def manifest_schema():
    """The pyarrow schema of a transform manifest part."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float32": pa.float32(),
    }
    return pa.schema([(n, types[t]) for n, t in MANIFEST_COLUMNS])


def empty_row(key: str, run_id: str = "", model: str = "", style: str | None = None) -> dict:
    """A manifest row with every column present (numbers 0, texts empty/None)."""
    row: dict[str, Any] = {n: None for n, _ in MANIFEST_COLUMNS}
    row.update(
        key=key,
        status="error",
        error=None,
        faces=0,
        faces_small=0,
        style=style,
        beard_area_ratio=None,
        bytes_in=0,
        bytes_out=0,
        model=model,
        run_id=run_id,
    )
    for t in TIMING_FIELDS:
        row[t] = 0.0
    return row


def rows_to_table(rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]):
    """Rows (list of dicts) or columns (dict of lists/arrays) -> a table with the manifest schema.

    Extra columns are dropped; missing columns are filled with nulls.
    """
    import pyarrow as pa

    schema = manifest_schema()
    if isinstance(rows, Mapping):
        n = len(next(iter(rows.values()))) if rows else 0
        cols = {name: list(rows[name]) if name in rows else [None] * n for name in schema.names}
    else:
        cols = {name: [r.get(name) for r in rows] for name in schema.names}
    arrays = []
    for field in schema:
        vals = cols[field.name]
        vals = [None if _is_nan_like(v) and field.type == pa.string() else v for v in vals]
        arrays.append(pa.array(vals, type=field.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def _is_nan_like(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def new_run_id() -> str:
    """``YYYYmmddTHHMMSSZ-<6 hex>``: sortable by start time, unique."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def manifest_dir(output_uri: str) -> str:
    return meta_uri(output_uri, "manifest")


def summary_uri(output_uri: str, run_id: str) -> str:
    return meta_uri(output_uri, "runs", f"{run_id}.json")


def write_part(output_uri: str, run_id: str, table, *, part: str | None = None, s3=None) -> str:
    """Write one manifest part for ``run_id``; returns its URI. Empty tables are not written."""
    import pyarrow.parquet as pq

    from beardnet import storage

    if table.num_rows == 0:
        return ""
    name = part or f"{int(time.time() * 1000):013d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    uri = meta_uri(output_uri, "manifest", run_id, f"{name}.parquet")
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    storage.write_bytes(uri, buf.getvalue(), s3=s3)
    return uri


def read_manifest(output_uri: str, *, columns: Sequence[str] | None = None, s3=None):
    """All manifest parts under ``OUT/_beardnet/manifest/`` as one table (empty if none)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beardnet import storage

    base = manifest_dir(output_uri)
    schema = manifest_schema()
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    tables = []
    try:
        keys = list(storage.list_keys(base, s3=s3))
    except FileNotFoundError:
        keys = []
    for rel in sorted(keys):
        if not rel.endswith(".parquet"):
            continue
        data = storage.read_bytes(base + "/" + rel, s3=s3)
        t = pq.read_table(io.BytesIO(data))
        cols = [t[f.name].cast(f.type) if f.name in t.column_names else pa.nulls(t.num_rows, f.type)
                for f in schema]
        tables.append(pa.Table.from_arrays(cols, schema=schema))
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


def done_keys(output_uri: str, *, s3=None):
    """Keys with an ``ok``/``no_face`` row in any earlier manifest part (a pyarrow array)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = read_manifest(output_uri, columns=["key", "status"], s3=s3)
    if t.num_rows == 0:
        return pa.array([], type=pa.string())
    mask = pc.is_in(t["status"], value_set=pa.array(DONE_STATUSES))
    return pc.unique(t.filter(mask)["key"].combine_chunks())


# -- per-block aggregates and the run summary -----------------------------------------------------
def aggregate(rows_table) -> dict[str, Any]:
    """Counts and sums of one manifest table, to merge with :func:`merge_aggregates`."""
    import pyarrow.compute as pc

    t = rows_table
    counts: dict[str, int] = {}
    if t.num_rows:
        for item in pc.value_counts(t["status"]).to_pylist():
            counts[str(item["values"])] = int(item["counts"])

    def s(col: str) -> float:
        v = pc.sum(t[col]).as_py() if t.num_rows else 0
        return float(v or 0)

    reasons: dict[str, int] = {}
    if counts.get("error"):
        errs = t.filter(pc.equal(t["status"], "error"))["error"].to_pylist()
        for e in errs:
            r = error_reason(e)
            reasons[r] = reasons.get(r, 0) + 1
    return {
        "images": t.num_rows,
        "status": counts,
        "error_reasons": reasons,
        "faces": int(s("faces")),
        "faces_small": int(s("faces_small")),
        "bytes_in": int(s("bytes_in")),
        "bytes_out": int(s("bytes_out")),
        "stage_s": {f: s(f) for f in TIMING_FIELDS},
    }


def error_reason(error: str | None) -> str:
    """The reason code of a manifest ``error`` (``"decode: truncated: ..."`` -> ``truncated``;
    ``"key: unsafe: ..."`` -> ``unsafe``); the stage when no code follows it."""
    parts = [p.strip() for p in (error or "").split(":")]
    if len(parts) >= 3 and parts[1] and " " not in parts[1]:
        return parts[1]
    return parts[0] or "unknown"


def merge_aggregates(aggs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum of :func:`aggregate` results."""
    out: dict[str, Any] = {
        "images": 0,
        "status": {},
        "error_reasons": {},
        "faces": 0,
        "faces_small": 0,
        "bytes_in": 0,
        "bytes_out": 0,
        "stage_s": {f: 0.0 for f in TIMING_FIELDS},
    }
    for a in aggs:
        for k in ("images", "faces", "faces_small", "bytes_in", "bytes_out"):
            out[k] += a.get(k, 0)
        for st, n in a.get("status", {}).items():
            out["status"][st] = out["status"].get(st, 0) + n
        for r, n in a.get("error_reasons", {}).items():
            out["error_reasons"][r] = out["error_reasons"].get(r, 0) + n
        for f, v in a.get("stage_s", {}).items():
            out["stage_s"][f] = out["stage_s"].get(f, 0.0) + v
    return out


def stage_shares(stage_s: Mapping[str, float]) -> dict[str, float]:
    """Each stage's share of the summed per-image stage time (0..1)."""
    total = sum(stage_s.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in stage_s.items()}


def write_summary(output_uri: str, run_id: str, summary: Mapping[str, Any], *, s3=None) -> str:
    """Write ``OUT/_beardnet/runs/RUN_ID.json``; returns its URI."""
    from beardnet import storage

    uri = summary_uri(output_uri, run_id)
    storage.write_bytes(uri, json.dumps(summary, indent=2, sort_keys=True, default=str).encode(), s3=s3)
    return uri


def read_summary(output_uri: str, run_id: str, *, s3=None) -> dict[str, Any]:
    from beardnet import storage

    return json.loads(storage.read_bytes(summary_uri(output_uri, run_id), s3=s3).decode())
