"""The batch transform job on Ray Data: ``run_transform(cfg, s3) -> summary`` (issue 4).

Pipeline (DESIGN.md §1, §5, §8)::

    driver: check access -> lease -> list keys (paginated) -> drop done keys (incremental)
            -> styles -> blocks of ``ray.block_rows`` keys
    tasks  (read_num_cpus):   read bytes, decode, locate faces, align crops       [_PrepareFn]
    actors (network_num_cpus): the network on crops batched across photos        [_NetworkFn]
    tasks  (write_num_cpus):  paste back, encode, write OUT/<same key>             [_FinishFn]
    datasink:                 one manifest Parquet part per block                 [_ManifestSink]
    driver: run summary JSON, release the lease

Every photo is handled on its own: any failure becomes that row's ``error`` (with a reason) and
never fails the batch or the job. Objects are written before the manifest part that names them,
so a run killed half way leaves outputs that are at worst re-done by ``--incremental``, never
rows that claim an output that is not there.

Exit codes of the CLI (:data:`EXIT_CODES`): 0 done (even with per-photo errors; the summary
counts them), 2 bad configuration, 3 storage not reachable / no permission, 4 model artifact,
75 another run holds the output's lease (try later), 1 anything else.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import time
from collections.abc import Callable
from typing import Any

from beardnet.infer import runlog
from beardnet.infer.config import TransformConfig
from beardnet.infer.keys import (
    key_location,
    list_input_keys,
    nested_rel,
    output_location,
    safe_rel_key,
)

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_STORAGE = 3
EXIT_MODEL = 4
EXIT_LEASE = 75
EXIT_CODES = {
    "ok": EXIT_OK,
    "failed": EXIT_FAILED,
    "config": EXIT_CONFIG,
    "storage": EXIT_STORAGE,
    "model": EXIT_MODEL,
    "lease": EXIT_LEASE,
}

#: Internal status of a row that still needs the network and the paste-back.
_PENDING = "pending"


class TransformFailed(RuntimeError):
    """A job-level failure (nothing or not everything could run); ``exit_code`` for the CLI."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ------------------------------------------------------------------------------------ schema
def _work_schema():
    """Manifest columns plus the blobs carried between stages."""
    import pyarrow as pa

    base = runlog.manifest_schema()
    return pa.schema(
        list(base)
        + [
            pa.field("style_idx", pa.int32()),
            pa.field("blob", pa.binary()),  # pickled prepared photo, or the input bytes to copy
            pa.field("crops", pa.binary()),  # n x S x S x 3 uint8
            pa.field("n_crops", pa.int32()),
            pa.field("edited", pa.binary()),  # n x S x S x 3 uint8 from the network
            pa.field("masks", pa.binary()),  # n x S x S uint8: the network's soft mask x 255
        ]
    )


def _to_table(rows: list[dict[str, Any]], schema):
    import pyarrow as pa

    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_arrays([pa.array(cols[f.name], type=f.type) for f in schema], schema=schema)


def _err(row: dict[str, Any], stage: str, exc: BaseException) -> None:
    reason = getattr(exc, "reason", None)
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    row["status"] = "error"
    row["error"] = f"{stage}: {reason}: {text}" if reason else f"{stage}: {type(exc).__name__}: {text}"
    for k in ("blob", "crops", "edited", "masks"):
        row[k] = None
    row["n_crops"] = 0


def _transient(exc: BaseException) -> bool:
    """Errors worth another try (network hiccups, throttling, 5xx)."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return False
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    if code in ("NoSuchKey", "NoSuchBucket", "AccessDenied", "404", "403"):
        return False
    return isinstance(exc, (OSError, ConnectionError, TimeoutError)) or bool(code)


def _retry(fn: Callable[[], Any], attempts: int = 3, base_s: float = 0.2) -> Any:
    """Call ``fn``; retry transient storage errors with backoff (botocore retries first)."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:
            if i == attempts - 1 or not _transient(e):
                raise
            time.sleep(base_s * (2**i))
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------ stages
class _PrepareFn:
    """Read + decode + locate + align, per photo (a Ray Data task UDF)."""

    def __init__(
        self, input_uri: str, opts: Any, faces: str, on_no_face: str, s3: Any
    ) -> None:
        self.input_uri = input_uri.rstrip("/")
        self.opts = opts
        self.faces = faces
        self.on_no_face = on_no_face
        self.s3 = s3

    def __call__(self, batch):
        from beardnet import faces as faces_mod
        from beardnet import storage
        from beardnet.infer import transform

        locator = faces_mod.get_locator(self.faces)  # one per worker process
        schema = _work_schema()
        out = []
        for row in batch.to_pylist():
            row = {**row}
            for k in ("blob", "crops", "edited", "masks"):
                row[k] = None
            row["n_crops"] = 0
            key = row["key"]
            if row["status"] == "error":  # decided on the driver (e.g. unknown style)
                out.append(row)
                continue
            try:
                safe_rel_key(key)
            except ValueError as e:
                row.update(status="error", error=f"key: unsafe: {e}")
                out.append(row)
                continue
            t0 = time.perf_counter()
            try:
                src = key_location(self.input_uri, key)
                data = _retry(lambda src=src: storage.read_bytes(src, s3=self.s3))
            except Exception as e:  # noqa: BLE001 - per photo
                row["read_s"] = time.perf_counter() - t0
                _err(row, "read", e)
                out.append(row)
                continue
            row["read_s"] = time.perf_counter() - t0
            row["bytes_in"] = len(data)
            try:
                prep = transform.prepare(data, key, self.opts, locator, keep_input=False)
            except Exception as e:  # noqa: BLE001 - BadImage or anything else, per photo
                _err(row, "decode", e)
                out.append(row)
                continue
            _fill_prepared(row, prep, data, self.on_no_face)
            out.append(row)
        return _to_table(out, schema)


def _prepare_batch(batch, **kwargs):
    """Task UDF: :class:`_PrepareFn` on one batch (the face locator is cached per process)."""
    return _PrepareFn(**kwargs)(batch)


def _fill_prepared(row: dict[str, Any], prep: Any, data: bytes, on_no_face: str) -> None:
    """Copy what ``transform.prepare`` found into the row."""
    import numpy as np

    t = prep.timings or {}
    row["decode_s"] = float(t.get("decode_s", 0.0))
    row["faces_s"] = float(t.get("faces_s", 0.0)) + float(t.get("align_s", 0.0))
    n = int(prep.n_faces)
    row["faces"] = n
    row["faces_small"] = int(prep.n_small)
    if n == 0:
        row["status"] = "no_face"
        row["blob"] = data if on_no_face == "copy" else None
        return
    row["status"] = _PENDING
    row["n_crops"] = n
    row["crops"] = np.ascontiguousarray(prep.crops, dtype=np.uint8).tobytes()
    # the prepared photo keeps its crops: paste-back warps only the network's change
    row["blob"] = pickle.dumps(prep, protocol=5)


class _NetworkFn:
    """The network in an actor: model loaded once; crops batched across photos."""

    def __init__(self, model_uri: str | None, s3: Any, threads: int, batch_size: int) -> None:
        import torch

        from beardnet.model import load

        torch.set_num_threads(max(1, threads))
        t0 = time.perf_counter()
        self.model = load(model_uri, s3=s3)
        self.size = int(self.model.input_size)
        self.batch_size = batch_size
        log.info("network actor: model %s loaded in %.2fs", self.model.model_id,
                 time.perf_counter() - t0)

    def _run(self, crops, styles):
        import numpy as np

        from beardnet.infer.transform import run_network

        edited, masks = run_network(self.model, crops, styles, self.batch_size)
        m8 = np.clip(np.rint(np.asarray(masks, np.float32) * 255.0), 0, 255).astype(np.uint8)
        return edited, m8

    def __call__(self, batch):
        import numpy as np

        rows = batch.to_pylist()
        todo = [r for r in rows if r["status"] == _PENDING and r["n_crops"]]
        if todo:
            S = self.size
            arrs, styles = [], []
            for r in todo:
                a = np.frombuffer(r["crops"], dtype=np.uint8).reshape(r["n_crops"], S, S, 3)
                arrs.append(a)
                styles.append(np.full(r["n_crops"], r["style_idx"], dtype=np.int64))
            t0 = time.perf_counter()
            try:
                edited, masks = self._run(np.concatenate(arrs), np.concatenate(styles))
                dt = time.perf_counter() - t0
                total = sum(r["n_crops"] for r in todo)
                pos = 0
                for r in todo:
                    n = r["n_crops"]
                    r["edited"] = edited[pos : pos + n].tobytes()
                    r["masks"] = masks[pos : pos + n].tobytes()
                    r["network_s"] = dt * n / total
                    pos += n
            except Exception:  # noqa: BLE001 - one photo must not fail the others: go one by one
                for r, a, st in zip(todo, arrs, styles, strict=True):
                    t1 = time.perf_counter()
                    try:
                        e, m = self._run(a, st)
                        r["edited"], r["masks"] = e.tobytes(), m.tobytes()
                    except Exception as e:  # noqa: BLE001
                        _err(r, "network", e)
                    r["network_s"] = time.perf_counter() - t1
        for r in rows:
            r["crops"] = None
        return _to_table(rows, _work_schema())


class _FinishFn:
    """Paste back + encode + write ``OUT/<key>``, per photo (a Ray Data task UDF)."""

    def __init__(self, output_uri: str, crop_size: int, s3: Any) -> None:
        self.output_uri = output_uri.rstrip("/")
        self.size = crop_size
        self.s3 = s3

    def __call__(self, batch):
        import numpy as np

        from beardnet import storage
        from beardnet.infer import transform

        out = []
        for row in batch.to_pylist():
            data: bytes | None = None
            if row["status"] == _PENDING:
                t0 = time.perf_counter()
                try:
                    prep = pickle.loads(row["blob"])
                    n, S = row["n_crops"], self.size
                    edited = np.frombuffer(row["edited"], dtype=np.uint8).reshape(n, S, S, 3)
                    masks = None
                    if row.get("masks"):
                        masks = np.frombuffer(row["masks"], dtype=np.uint8).reshape(n, S, S)
                        masks = masks.astype(np.float32) / 255.0
                    data, info = transform.apply(prep, edited, masks, style=row["style"])
                    _fill_info(row, info)
                    row["status"] = "ok"
                except Exception as e:  # noqa: BLE001 - per photo
                    _err(row, "encode", e)
                row["encode_s"] = float(row.get("encode_s") or 0.0) or (time.perf_counter() - t0)
            elif row["status"] == "no_face" and row["blob"] is not None:
                data = row["blob"]
            if data is not None and row["status"] in ("ok", "no_face"):
                t0 = time.perf_counter()
                try:
                    target = output_location(self.output_uri, row["key"])
                    _retry(lambda t=target, d=data: storage.write_bytes(t, d, s3=self.s3))
                    row["bytes_out"] = len(data)
                except Exception as e:  # noqa: BLE001 - per photo
                    _err(row, "write", e)
                row["write_s"] = time.perf_counter() - t0
            out.append({k: row.get(k) for k in runlog.manifest_schema().names})
        return runlog.rows_to_table(out)


def _finish_batch(batch, **kwargs):
    """Task UDF: :class:`_FinishFn` on one batch."""
    return _FinishFn(**kwargs)(batch)


def _fill_info(row: dict[str, Any], info: Any) -> None:
    """Copy ``transform.apply``'s info into the row."""
    info = dict(info or {})
    for k in ("faces", "faces_small"):
        if k in info and info[k] is not None:
            row[k] = int(info[k])
    if info.get("beard_area_ratio") is not None:
        row["beard_area_ratio"] = float(info["beard_area_ratio"])
    if info.get("encode_s") is not None:
        row["encode_s"] = float(info["encode_s"])


def _manifest_sink(output_uri: str, run_id: str, s3: Any):
    """A Datasink writing one manifest part per write task; returns per-part aggregates."""
    from ray.data import Datasink

    class _ManifestSink(Datasink):
        def __init__(self) -> None:
            self.aggregates: list[dict[str, Any]] = []

        def write(self, blocks, ctx) -> dict[str, Any]:
            import pyarrow as pa

            tables = [pa.table(b) if not isinstance(b, pa.Table) else b for b in blocks]
            tables = [t for t in tables if t.num_rows]
            if not tables:
                return runlog.aggregate(runlog.manifest_schema().empty_table())
            t = pa.concat_tables([x.select(runlog.manifest_schema().names) for x in tables])
            t = t.cast(runlog.manifest_schema())
            part = f"{int(time.time() * 1000):013d}-{ctx.task_idx:05d}-{os.urandom(3).hex()}"
            _retry(lambda: runlog.write_part(output_uri, run_id, t, part=part, s3=s3))
            return runlog.aggregate(t)

        def on_write_complete(self, write_result) -> None:
            self.aggregates = list(write_result.write_returns)

    return _ManifestSink()


# ------------------------------------------------------------------------------------ driver
def _progress_enabled(mode: str) -> bool:
    if mode == "on":
        return True
    if mode == "off":
        return False
    return sys.stderr.isatty() and not os.environ.get("CI")


def _check_access(input_uri: str, output: str, run_id: str, s3: Any) -> None:
    """Fail before any work when input cannot be listed or output cannot be written."""
    from beardnet import storage

    try:
        if storage.is_s3(input_uri):
            bucket, _ = storage.split_s3(input_uri)
            storage.boto3_client(s3).head_bucket(Bucket=bucket)
        elif not os.path.isdir(storage.local_path(input_uri)):
            raise FileNotFoundError(f"no such folder {storage.local_path(input_uri)}")
    except Exception as e:  # noqa: BLE001 - reported as a job-level failure
        raise TransformFailed(f"cannot read input {input_uri}: {_short(e)}", EXIT_STORAGE) from None
    probe = runlog.meta_uri(output, f".probe-{run_id}")
    try:
        if storage.is_s3(output):  # some servers create a missing bucket on the first write
            bucket, _ = storage.split_s3(output)
            storage.boto3_client(s3).head_bucket(Bucket=bucket)
        storage.write_bytes(probe, b"probe", s3=s3)
        storage.delete(probe, s3=s3)
    except Exception as e:  # noqa: BLE001 - reported as a job-level failure
        raise TransformFailed(
            f"cannot write to output {output}: {_short(e)}", EXIT_STORAGE
        ) from None


def _short(e: BaseException) -> str:
    code = getattr(e, "response", {}).get("Error", {}).get("Code")
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"{code}: {msg}" if code else f"{type(e).__name__}: {msg}"


def _read_style_map(uri: str, s3: Any):
    """``key -> style`` table from a Parquet or CSV object."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from beardnet import storage

    try:
        data = storage.read_bytes(uri, s3=s3)
    except Exception as e:  # noqa: BLE001 - reported as a job-level failure
        raise TransformFailed(f"cannot read style map {uri}: {_short(e)}", EXIT_STORAGE) from None
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
        raise TransformFailed(f"style map {uri} is unreadable: {_short(e)}", EXIT_CONFIG) from None
    if "key" not in t.column_names or "style" not in t.column_names:
        raise TransformFailed(f"style map {uri} needs columns key and style", EXIT_CONFIG)
    return t.select(["key", "style"]).cast(pa.schema([("key", pa.string()), ("style", pa.string())]))


def _plan_keys(cfg: TransformConfig, s3: Any, categories: Any) -> tuple[Any, int, Any]:
    """The table of keys to process (key, style, style_idx), keys listed, keys skipped."""
    import pyarrow as pa
    import pyarrow.compute as pc

    job = cfg.job
    excl = nested_rel(job.input, job.output) or None
    try:
        keys = list(list_input_keys(job.input, job.extensions, exclude_prefix=excl, s3=s3))
    except Exception as e:  # noqa: BLE001 - reported as a job-level failure
        raise TransformFailed(f"cannot list input {job.input}: {_short(e)}", EXIT_STORAGE) from None
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
        smap = _read_style_map(job.style_map, s3)
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


def _init_rows(table, run_id: str, model_id: str):
    """Add the manifest columns (status pending) to the planned key table."""
    import pyarrow as pa

    n = table.num_rows
    schema = _work_schema()
    cols = {
        "key": table["key"],
        "style": table["style"],
        "style_idx": table["style_idx"],
        "status": pa.array([_PENDING] * n, pa.string()),
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
        t = _to_table(rows, schema)
    return t


def _transform_options(cfg: TransformConfig, crop_size: int) -> Any:
    """``beardnet.infer.transform.TransformOptions`` from the config (only fields it has)."""
    import dataclasses

    from beardnet.infer.transform import TransformOptions

    wanted = {
        "jpeg_quality": cfg.image.jpeg_quality,
        "min_face_px": cfg.image.min_face_px,
        "max_pixels": cfg.image.max_pixels,
        "max_faces": cfg.image.max_faces,
        "crop_size": crop_size,
        "feather_px": cfg.image.feather_px,
        "faces": cfg.image.faces,
    }
    names = {f.name for f in dataclasses.fields(TransformOptions)}
    kwargs = {k: v for k, v in wanted.items() if k in names and v is not None}
    return TransformOptions(**kwargs)


def run_transform(
    cfg: TransformConfig,
    s3: Any = None,
    *,
    on_lease: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Run the transform job described by ``cfg``; returns the run summary (also written to
    ``OUT/_beardnet/runs/RUN_ID.json``). Raises :class:`TransformFailed` on job-level failure."""
    from beardnet.infer.lease import ConditionalWritesUnsupported, Lease, LeaseHeld

    t_start = time.time()
    try:
        cfg.check_paths()
    except ValueError as e:
        raise TransformFailed(str(e), EXIT_CONFIG) from None
    s3 = s3 if s3 is not None else cfg.s3.settings()
    job = cfg.job
    inp, out = job.input.rstrip("/"), job.output.rstrip("/")
    if nested_rel(inp, out) == "" or nested_rel(out, inp) is not None:
        raise TransformFailed(
            f"output {out} must not be the input {inp} or contain it", EXIT_CONFIG
        )
    run_id = job.run_id or runlog.new_run_id()

    # model metadata on the driver: id, categories, crop size (the actors load it again)
    try:
        from beardnet.model import load

        model = load(job.model, s3=s3)
    except Exception as e:  # noqa: BLE001 - reported as a job-level failure
        raise TransformFailed(f"cannot load model {job.model or '(shipped)'}: {_short(e)}",
                              EXIT_MODEL) from None
    model_id, categories, crop_size = model.model_id, model.categories, int(model.input_size)
    del model

    _check_access(inp, out, run_id, s3)
    lease = Lease(out, run_id, ttl_s=job.lease_ttl_s, s3=s3, no_lease=job.no_lease)
    try:
        lease.acquire()
    except LeaseHeld as e:
        raise TransformFailed(str(e), EXIT_LEASE) from None
    except ConditionalWritesUnsupported as e:
        raise TransformFailed(str(e), EXIT_STORAGE) from None
    lease.start_renewing()
    if on_lease is not None:
        on_lease(lease)
    try:
        t_list = time.time()
        table, listed, skipped_keys = _plan_keys(cfg, s3, categories)
        skipped = len(skipped_keys)
        list_s = time.time() - t_list
        log.info("run %s: %d keys listed, %d already done, %d to process (listing %.1fs)",
                 run_id, listed, skipped, table.num_rows, list_s)
        if job.record_skipped and skipped:
            _record_skipped(cfg, s3, run_id, model_id, skipped_keys)
        work = _init_rows(table, run_id, model_id)
        aggs = _execute(cfg, s3, run_id, model_id, crop_size, work) if work.num_rows else []
    finally:
        lost = lease.lost
        lease.release()
    if lost:
        log.error("run %s: %s; another run may have written to %s too", run_id, lost, out)
    wall = time.time() - t_start
    agg = runlog.merge_aggregates(aggs)
    if skipped:
        agg["status"]["skipped_existing"] = agg["status"].get("skipped_existing", 0) + skipped
    processed = agg["images"]
    summary = {
        "run_id": run_id,
        "input": inp,
        "output": out,
        "model": model_id,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
        "wall_s": round(wall, 3),
        "list_s": round(list_s, 3),
        "keys_listed": listed,
        "keys_skipped": skipped,
        "images": processed,
        "images_per_s": round(processed / wall, 3) if wall > 0 else 0.0,
        "status": agg["status"],
        "errors": agg["status"].get("error", 0),
        "faces": agg["faces"],
        "faces_small": agg["faces_small"],
        "bytes_in": agg["bytes_in"],
        "bytes_out": agg["bytes_out"],
        "stage_s": {k: round(v, 4) for k, v in agg["stage_s"].items()},
        "stage_share": {k: round(v, 4) for k, v in runlog.stage_shares(agg["stage_s"]).items()},
        "config": cfg.public_dict(),
        "complete": processed == work.num_rows,
        "lease_lost": lost,
    }
    summary["summary_uri"] = runlog.write_summary(out, run_id, summary, s3=s3)
    return summary


def _record_skipped(cfg: TransformConfig, s3: Any, run_id: str, model_id: str, keys) -> None:
    keys = keys.to_pylist()
    rows = [
        runlog.empty_row(k, run_id=run_id, model=model_id) | {"status": "skipped_existing"}
        for k in keys
    ]
    runlog.write_part(cfg.job.output, run_id, runlog.rows_to_table(rows), part="skipped", s3=s3)


def _execute(cfg, s3, run_id: str, model_id: str, crop_size: int, work) -> list[dict[str, Any]]:
    """Build and run the Ray Data pipeline; returns the per-part aggregates."""
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy, DataContext

    from beardnet.raysession import init_ray

    r = cfg.ray
    init_ray(num_cpus=r.num_cpus, object_store_mb=r.object_store_mb, s3=s3)
    total = float(ray.cluster_resources().get("CPU", 0.0))
    need = r.network_actors * r.network_num_cpus + r.read_num_cpus + r.write_num_cpus
    if need > total + 1e-9:
        raise TransformFailed(
            f"ray: network_actors x network_num_cpus ({r.network_actors} x "
            f"{r.network_num_cpus}) + read_num_cpus ({r.read_num_cpus}) + write_num_cpus "
            f"({r.write_num_cpus}) = {need:g} CPUs, but the cluster has {total:g}: the actor "
            "pool would starve the read and write tasks and the pipeline would hang",
            EXIT_CONFIG,
        )
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = _progress_enabled(r.progress)
    ctx.verbose_progress = False
    opts = _transform_options(cfg, crop_size)
    n = work.num_rows
    blocks = [work.slice(i, r.block_rows) for i in range(0, n, r.block_rows)]
    threads = r.torch_threads or max(1, round(r.network_num_cpus))
    ds = ray.data.from_arrow(blocks)
    ds = ds.map_batches(
        _prepare_batch,
        fn_kwargs={
            "input_uri": cfg.job.input, "opts": opts, "faces": cfg.image.faces,
            "on_no_face": cfg.job.on_no_face, "s3": s3,
        },
        batch_format="pyarrow",
        batch_size=r.read_batch_size,
        num_cpus=r.read_num_cpus,
        udf_modifying_row_count=False,
    )
    ds = ds.map_batches(
        _NetworkFn,
        fn_constructor_kwargs={
            "model_uri": cfg.job.model, "s3": s3, "threads": threads,
            "batch_size": r.network_batch_size,
        },
        batch_format="pyarrow",
        batch_size=r.network_batch_size,
        num_cpus=r.network_num_cpus,
        compute=ActorPoolStrategy(size=r.network_actors),
        udf_modifying_row_count=False,
    )
    ds = ds.map_batches(
        _finish_batch,
        fn_kwargs={"output_uri": cfg.job.output, "crop_size": crop_size, "s3": s3},
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=r.write_num_cpus,
        udf_modifying_row_count=False,
    )
    sink = _manifest_sink(cfg.job.output, run_id, s3)
    # same CPUs as the finish step, so Ray Data fuses them: objects, then their manifest part,
    # in one task
    ds.write_datasink(sink, ray_remote_args={"num_cpus": r.write_num_cpus})
    return sink.aggregates


def demo_transform(
    input_uri: str, output_uri: str, model_uri: str | None, s3: Any = None, **job: Any
) -> dict[str, Any]:
    """The transform as ``beardnet demo`` runs it: small blocks, no progress bar by default."""
    cfg = TransformConfig.model_validate(
        {
            "job": {"input": input_uri, "output": output_uri, "model": model_uri, **job},
            "ray": {"block_rows": 16, "read_batch_size": 4, "progress": "auto"},
        }
    )
    return run_transform(cfg, s3)
