"""The transform's per-photo stages (Ray Data UDFs) and the rows passed between them.

See :mod:`beardnet.infer.job` for the pipeline; every failure becomes the row's ``error``.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from typing import Any

from beardnet.infer import runlog
from beardnet.infer.keys import output_uri, safe_rel_key

log = logging.getLogger(__name__)

#: Internal status of a row that still needs the network and the paste-back.
PENDING = "pending"



# ------------------------------------------------------------------------------------ schema
def work_schema():
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


def to_table(rows: list[dict[str, Any]], schema):
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


def retry(fn: Callable[[], Any], attempts: int = 3, base_s: float = 0.2) -> Any:
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
class PrepareFn:
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
        schema = work_schema()
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
                src = self.input_uri + "/" + key
                data = retry(lambda src=src: storage.read_bytes(src, s3=self.s3))
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
        return to_table(out, schema)


def prepare_batch(batch, **kwargs):
    """Task UDF: :class:`PrepareFn` on one batch (the face locator is cached per process)."""
    return PrepareFn(**kwargs)(batch)


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
    row["status"] = PENDING
    row["n_crops"] = n
    row["crops"] = np.ascontiguousarray(prep.crops, dtype=np.uint8).tobytes()
    # the prepared photo keeps its crops: paste-back warps only the network's change
    row["blob"] = pickle.dumps(prep, protocol=5)


class NetworkFn:
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
        todo = [r for r in rows if r["status"] == PENDING and r["n_crops"]]
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
        return to_table(rows, work_schema())


class FinishFn:
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
            if row["status"] == PENDING:
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
                    target = output_uri(self.output_uri, row["key"])
                    retry(lambda t=target, d=data: storage.write_bytes(t, d, s3=self.s3))
                    row["bytes_out"] = len(data)
                except Exception as e:  # noqa: BLE001 - per photo
                    _err(row, "write", e)
                row["write_s"] = time.perf_counter() - t0
            out.append({k: row.get(k) for k in runlog.manifest_schema().names})
        return runlog.rows_to_table(out)


def finish_batch(batch, **kwargs):
    """Task UDF: :class:`FinishFn` on one batch."""
    return FinishFn(**kwargs)(batch)


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


