"""Planning a run on the driver: list keys, drop done ones (incremental), attach styles."""

from __future__ import annotations

from typing import Any

from beardnet.infer import runlog
from beardnet.infer.config import TransformConfig
from beardnet.infer.errors import EXIT_CONFIG, EXIT_STORAGE, TransformFailed, short_error
from beardnet.infer.keys import list_input_keys, nested_rel
from beardnet.infer.stages import PENDING, to_table, work_schema


def read_style_map(uri: str, s3: Any):
    """``key -> style`` table from a Parquet or CSV object."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from beardnet import storage

    try:
        data = storage.read_bytes(uri, s3=s3)
    except Exception as e:  # noqa: BLE001 - reported as a job-level failure
        raise TransformFailed(f"cannot read style map {uri}: {short_error(e)}", EXIT_STORAGE) from None
    try:
        if uri.lower().endswith(".csv"):
            t = pcsv.read_csv(
                io.BytesIO(data),
                convert_options=pcsv.ConvertOptions(
                    column_types={"key": pa.string(), "style": pa.string()}
                ),
            )
        else:
            t = pq.read_table(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - reported as a job-level failure
        raise TransformFailed(f"style map {uri} is unreadable: {short_error(e)}", EXIT_CONFIG) from None
    if "key" not in t.column_names or "style" not in t.column_names:
        raise TransformFailed(f"style map {uri} needs columns key and style", EXIT_CONFIG)
    return t.select(["key", "style"]).cast(pa.schema([("key", pa.string()), ("style", pa.string())]))


def plan_keys(cfg: TransformConfig, s3: Any, categories: Any) -> tuple[Any, int, Any]:
    """The table of keys to process (key, style, style_idx), keys listed, keys skipped."""
    import pyarrow as pa
    import pyarrow.compute as pc

    job = cfg.job
    excl = nested_rel(job.input, job.output) or None
    try:
        keys = list(list_input_keys(job.input, job.extensions, exclude_prefix=excl, s3=s3))
    except Exception as e:  # noqa: BLE001 - reported as a job-level failure
        raise TransformFailed(f"cannot list input {job.input}: {short_error(e)}", EXIT_STORAGE) from None
    listed = len(keys)
    table = pa.table({"key": pa.array(keys, type=pa.string())})
    skipped = pa.array([], type=pa.string())
    if job.incremental:
        done = runlog.done_keys(job.output, s3=s3)
        if len(done):
            mask = pc.is_in(table["key"], value_set=done)
            skipped = table.filter(mask)["key"].combine_chunks()
            table = table.filter(pc.invert(mask))
    if job.limit is not None:
        table = table.slice(0, job.limit)
    if job.style_map:
        smap = read_style_map(job.style_map, s3)
        idx = pc.index_in(table["key"], value_set=smap["key"])
        styles = pc.take(smap["style"], idx)
        if job.style:
            styles = pc.fill_null(styles, job.style)
    else:
        styles = pa.array([job.style] * table.num_rows, type=pa.string())
    table = table.append_column("style", styles.cast(pa.string()))
    # style names -> the model's conditioning index (-1: unknown, an error row later)
    names = list(categories.names)
    for s in pc.unique(table["style"]).to_pylist() if table.num_rows else []:
        if s is not None and s not in names and not job.style_map:
            raise TransformFailed(
                f"style {s!r} is not one of the model's categories {names}", EXIT_CONFIG
            )
    sidx = pc.index_in(table["style"], value_set=pa.array(names))
    table = table.append_column("style_idx", pc.fill_null(sidx, -1).cast(pa.int32()))
    return table, listed, skipped


def init_rows(table, run_id: str, model_id: str):
    """Add the manifest columns (status pending) to the planned key table."""
    import pyarrow as pa

    n = table.num_rows
    schema = work_schema()
    cols = {
        "key": table["key"],
        "style": table["style"],
        "style_idx": table["style_idx"],
        "status": pa.array([PENDING] * n, pa.string()),
        "model": pa.array([model_id] * n, pa.string()),
        "run_id": pa.array([run_id] * n, pa.string()),
    }
    arrays = []
    for f in schema:
        if f.name in cols:
            arrays.append(cols[f.name].cast(f.type) if hasattr(cols[f.name], "cast") else cols[f.name])
        elif pa.types.is_floating(f.type) or pa.types.is_integer(f.type):
            zero = None if f.name == "beard_area_ratio" else 0
            arrays.append(pa.array([zero] * n, f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    t = pa.Table.from_arrays([a.combine_chunks() if hasattr(a, "combine_chunks") else a
                              for a in arrays], schema=schema)
    # unknown styles are errors now, before any work
    bad = [i for i, v in enumerate(t["style_idx"].to_pylist()) if v < 0]
    if bad:
        rows = t.to_pylist()
        for i in bad:
            rows[i]["status"] = "error"
            rows[i]["error"] = f"style: unknown or missing style {rows[i]['style']!r}"
        t = to_table(rows, schema)
    return t



def record_skipped(cfg: TransformConfig, s3: Any, run_id: str, model_id: str, keys) -> None:
    keys = keys.to_pylist()
    rows = [
        runlog.empty_row(k, run_id=run_id, model=model_id) | {"status": "skipped_existing"}
        for k in keys
    ]
    runlog.write_part(cfg.job.output, run_id, runlog.rows_to_table(rows), part="skipped", s3=s3)


