"""Planning a run on the driver: list keys, drop done ones (incremental), attach styles."""

from __future__ import annotations

from typing import Any

from beardnet.infer import runlog
from beardnet.infer.config import TransformConfig
from beardnet.infer.errors import EXIT_CONFIG, EXIT_STORAGE, TransformFailed, short_error
from beardnet.infer.keys import nested_rel
from beardnet.infer.stages import PENDING, work_schema


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


def list_work(cfg: TransformConfig, s3: Any):
    """The listing table of the job's input (or its key list); TransformFailed on failure."""
    from beardnet.infer.listing import list_inputs, read_key_list

    job = cfg.job
    excl = nested_rel(job.input, job.output) or None
    try:
        if job.key_list:
            return read_key_list(job.key_list, job.input, job.extensions, exclude_prefix=excl,
                                 s3=s3)
        return list_inputs(job.input, job.extensions, exclude_prefix=excl, s3=s3,
                           threads=job.list_threads)
    except Exception as e:  # noqa: BLE001 - reported as a job-level failure
        what = f"key list {job.key_list}" if job.key_list else f"input {job.input}"
        raise TransformFailed(f"cannot list {what}: {short_error(e)}", EXIT_STORAGE) from None


def plan_keys(
    cfg: TransformConfig,
    s3: Any,
    categories: Any,
    model_id: str = "",
    *,
    listing: Any = None,
    state_table: Any = None,
) -> tuple[Any, int, Any]:
    """The table of keys to process (``key, version, style, style_idx``), the number of keys
    listed, and the keys skipped as done (incremental; see :mod:`beardnet.infer.state`).
    ``listing``/``state_table`` replace the store's (benchmarks, tests)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from beardnet.infer import state

    job = cfg.job
    if listing is None:
        listing = list_work(cfg, s3)
    listed = listing.num_rows
    table = pa.table({"key": listing["key"], "version": state.versions(listing)})
    if job.style_map:
        smap = read_style_map(job.style_map, s3)
        idx = pc.index_in(table["key"], value_set=smap["key"])
        styles = pc.take(smap["style"], idx)
        if job.style:
            styles = pc.fill_null(styles, job.style)
    else:
        styles = pa.array([job.style] * table.num_rows, type=pa.string())
    table = table.append_column("style", styles.cast(pa.string()))
    skipped = pa.array([], type=pa.string())
    if job.incremental:
        if state_table is None:
            state_table, _ = state.merged(job.output, s3)
        mask = state.done_mask(table, state_table, model_id)
        skipped = table.filter(mask)["key"].combine_chunks()
        table = table.filter(pc.invert(mask))
    if job.limit is not None:
        table = table.slice(0, job.limit)
    # style names -> the model's conditioning index (-1: unknown, an error row later)
    names = list(categories.names)
    for s in pc.unique(table["style"]).to_pylist() if table.num_rows else []:
        if s is not None and s not in names and not job.style_map:
            raise TransformFailed(
                f"style {s!r} is not one of the model's categories {names}", EXIT_CONFIG
            )
    sidx = pc.index_in(table["style"], value_set=pa.array(names))
    table = table.append_column("style_idx", pc.fill_null(sidx, -1).cast(pa.int32()))
    return table.combine_chunks(), listed, skipped


def init_rows(table, run_id: str, model_id: str, lease_token: int = 0):
    """Add the manifest columns (status pending) to the planned key table."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    schema = work_schema()
    bad = pc.less(table["style_idx"], 0)
    msg = pc.binary_join_element_wise(
        "style: unknown or missing style '", pc.fill_null(table["style"], "None"), "'", "")
    cols = {
        "key": table["key"],
        "version": table["version"],
        "style": table["style"],
        "style_idx": table["style_idx"],
        # unknown styles are errors now, before any work
        "status": pc.if_else(bad, "error", PENDING),
        "error": pc.if_else(bad, msg, pa.nulls(n, pa.string())),
        "model": pa.array([model_id] * n, pa.string()),
        "run_id": pa.array([run_id] * n, pa.string()),
        "lease_token": pa.array([int(lease_token)] * n, pa.int64()),
    }
    arrays = []
    for f in schema:
        if f.name in cols:
            a = cols[f.name].cast(f.type)
            arrays.append(a.combine_chunks() if hasattr(a, "combine_chunks") else a)
        elif pa.types.is_floating(f.type) or pa.types.is_integer(f.type):
            zero = None if f.name == "beard_area_ratio" else 0
            arrays.append(pa.array([zero] * n, f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def record_skipped(cfg: TransformConfig, s3: Any, run_id: str, model_id: str, keys,
                   lease_token: int = 0) -> None:
    """One manifest part of ``skipped_existing`` rows for the keys an incremental run skips."""
    import pyarrow as pa

    from beardnet.infer.state import part_name

    n = len(keys)
    t = runlog.rows_to_table({"key": keys, "status": pa.array(["skipped_existing"] * n),
                              "run_id": pa.array([run_id] * n), "model": pa.array([model_id] * n),
                              "lease_token": pa.array([int(lease_token)] * n, pa.int64())})
    runlog.write_part(cfg.job.output, run_id, t, part=part_name(lease_token, "skipped"), s3=s3)


#: Rows of the first input block: small, so the first photos reach the network (and the first
#: outputs are written) seconds after the start instead of after a whole ``block_rows`` block.
FIRST_BLOCK_ROWS = 8


def block_bounds(n: int, block_rows: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of the input blocks over ``n`` rows: a ramp from
    :data:`FIRST_BLOCK_ROWS` doubling up to ``block_rows``, then ``block_rows`` each (so a long
    run keeps few, large manifest parts and a short one starts producing at once)."""
    out: list[tuple[int, int]] = []
    size, i = min(FIRST_BLOCK_ROWS, block_rows), 0
    while i < n:
        out.append((i, min(size, n - i)))
        i += size
        size = min(block_rows, size * 2)
    return out
