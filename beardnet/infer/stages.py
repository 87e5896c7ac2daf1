"""The transform's per-photo stages (Ray Data UDFs) and the rows passed between them.

Rows are Arrow tables with the manifest's columns plus the *work* columns below
(:func:`work_schema`). Between stages only encoded bytes, face geometry and crops travel; no
decoded photo ever enters the object store, and pixel columns are read zero-copy
(``as_buffer``), never through ``to_pylist``.

==============  ==========================  =============================================
column          written by                  content
==============  ==========================  =============================================
``style_idx``   planning (driver)           the model's conditioning index of ``style``
``data``        prepare                     the input's encoded bytes (needed to paste
                                            back at full size, or to copy a no-face photo)
``geometry``    prepare                     :class:`~beardnet.infer.photo.Geometry`:
                                            faces and image->crop transforms, full-size px
``crops``       prepare                     ``n_crops`` x S x S x 3 uint8: the network's
                                            input and the paste-back's source crops
``edited``      network                     ``n_crops`` x S x S x 3 uint8
``masks``       network                     ``n_crops`` x S x S uint8 (soft mask x 255)
==============  ==========================  =============================================

Pixel work (decode, locate, paste back, encode) runs in a :class:`~beardnet.infer.sandbox.
Sandbox` child of the Ray worker, so a crashing or hanging photo is recorded
(``worker_crash``, ``timeout``) and never takes its block down. Every other failure becomes
the row's ``error`` with a reason, too.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from beardnet.infer import runlog
from beardnet.infer.keys import key_location, output_location, safe_rel_key

log = logging.getLogger(__name__)

#: Internal status of a row that still needs the network and the paste-back.
PENDING = "pending"
#: The work columns that carry bytes (see the module docstring).
BLOB_COLUMNS = ("data", "geometry", "crops", "edited", "masks")


def work_schema():
    """Manifest columns plus the work columns carried between stages."""
    import pyarrow as pa

    base = runlog.manifest_schema()
    return pa.schema(
        list(base)
        + [
            pa.field("style_idx", pa.int32()),
            pa.field("n_crops", pa.int32()),
            *(pa.field(c, pa.binary()) for c in BLOB_COLUMNS),
        ]
    )


def to_table(rows: list[dict[str, Any]], schema):
    """Rows (dicts) -> a table of ``schema`` (missing keys are nulls)."""
    import pyarrow as pa

    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_arrays([pa.array(cols[f.name], type=f.type) for f in schema], schema=schema)


def _meta_rows(batch) -> list[dict[str, Any]]:
    """The batch's non-blob columns as dicts (blobs stay in Arrow)."""
    names = [n for n in batch.column_names if n not in BLOB_COLUMNS]
    return batch.select(names).to_pylist()


def _blob(batch, name: str, i: int) -> Any:
    """Row ``i`` of blob column ``name`` as a zero-copy buffer (None when null)."""
    if name not in batch.column_names:
        return None
    v = batch.column(name)[i]
    return v.as_buffer() if v.is_valid else None


def _err(row: dict[str, Any], stage: str, exc: BaseException) -> None:
    reason = getattr(exc, "reason", None)
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    row["status"] = "error"
    row["error"] = f"{stage}: {reason}: {text}" if reason else f"{stage}: {type(exc).__name__}: {text}"
    for k in BLOB_COLUMNS:
        row[k] = None
    row["n_crops"] = 0


# ------------------------------------------------------------------------- isolation per worker
_SANDBOXES: dict[tuple, Any] = {}


def _runner(isolate: dict[str, Any] | None, faces: str | None) -> Callable[..., Any]:
    """``run(fn, *args, key=...)``: in this worker's sandbox child when ``isolate`` is given
    (``{"timeout_s": ..., "poison": {...}}``), else in process."""
    if not isolate:
        return lambda fn, *args, key="": fn(*args)
    from beardnet.infer.photo import warm_locator
    from beardnet.infer.sandbox import Sandbox

    sig = (float(isolate["timeout_s"]), tuple(sorted((isolate.get("poison") or {}).items())))
    box = _SANDBOXES.get(sig)
    if box is None:
        for old in _SANDBOXES.values():  # other settings (an earlier run): one child per worker
            old.close()
        _SANDBOXES.clear()
        warm = functools.partial(warm_locator, faces) if faces else None
        box = _SANDBOXES[sig] = Sandbox(isolate["timeout_s"], warm, isolate.get("poison"))
    return box.call


# ------------------------------------------------------------------------------------ stages
class PrepareFn:
    """Read + reduced decode + locate + align, per photo (a Ray Data task UDF)."""

    def __init__(self, input_uri: str, opts: Any, on_no_face: str, s3: Any,
                 isolate: dict[str, Any] | None = None) -> None:
        self.input_uri = input_uri.rstrip("/")
        self.opts = opts
        self.on_no_face = on_no_face
        self.s3 = s3
        self.run = _runner(isolate, opts.faces)

    def __call__(self, batch):
        from beardnet import storage
        from beardnet.infer.photo import locate_bytes

        out = []
        for row in _meta_rows(batch):
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
                # storage retries transient errors within one budget per object
                data = storage.read_bytes(key_location(self.input_uri, key), s3=self.s3)
            except Exception as e:  # noqa: BLE001 - per photo
                row["read_s"] = time.perf_counter() - t0
                _err(row, "read", e)
                out.append(row)
                continue
            row["read_s"] = time.perf_counter() - t0
            row["bytes_in"] = len(data)
            try:
                geo, crops, n, n_small, t = self.run(locate_bytes, data, key, self.opts, key=key)
            except Exception as e:  # noqa: BLE001 - BadImage, crash, timeout: per photo
                _err(row, "decode", e)
                out.append(row)
                continue
            row["decode_s"] = float(t.get("decode_s", 0.0))
            row["faces_s"] = float(t.get("faces_s", 0.0)) + float(t.get("align_s", 0.0))
            row["faces"], row["faces_small"] = n, n_small
            if n == 0:
                row["status"] = "no_face"
                row["data"] = data if self.on_no_face == "copy" else None
            else:
                row.update(status=PENDING, n_crops=n, data=data, geometry=geo, crops=crops)
            out.append(row)
        return to_table(out, work_schema())


def prepare_batch(batch, **kwargs):
    """Task UDF: :class:`PrepareFn` on one batch (the sandbox is kept per worker process)."""
    return PrepareFn(**kwargs)(batch)


def _node_id() -> str | None:
    """This process's Ray node id (None outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - not in a Ray worker
        return None


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
        self.node = _node_id()
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
        import pyarrow as pa

        status = batch.column("status").to_pylist()
        n_crops = batch.column("n_crops").to_pylist()
        style_idx = batch.column("style_idx").to_pylist()
        errors = batch.column("error").to_pylist()
        net_s = batch.column("network_s").to_pylist()
        n = batch.num_rows
        edited: list[bytes | None] = [None] * n
        masks: list[bytes | None] = [None] * n
        todo = [i for i in range(n) if status[i] == PENDING and n_crops[i]]
        if todo:
            S = self.size
            arrs = [np.frombuffer(_blob(batch, "crops", i), np.uint8).reshape(n_crops[i], S, S, 3)
                    for i in todo]
            styles = [np.full(n_crops[i], style_idx[i], dtype=np.int64) for i in todo]
            t0 = time.perf_counter()
            try:
                e_all, m_all = self._run(np.concatenate(arrs), np.concatenate(styles))
                dt = time.perf_counter() - t0
                total = sum(n_crops[i] for i in todo)
                pos = 0
                for i in todo:
                    k = n_crops[i]
                    edited[i] = e_all[pos : pos + k].tobytes()
                    masks[i] = m_all[pos : pos + k].tobytes()
                    net_s[i] = dt * k / total
                    pos += k
            except Exception:  # noqa: BLE001 - one photo must not fail the others: go one by one
                for i, a, st in zip(todo, arrs, styles, strict=True):
                    t1 = time.perf_counter()
                    try:
                        e, m = self._run(a, st)
                        edited[i], masks[i] = e.tobytes(), m.tobytes()
                    except Exception as exc:  # noqa: BLE001
                        row: dict[str, Any] = {}
                        _err(row, "network", exc)
                        status[i], errors[i] = row["status"], row["error"]
                    net_s[i] = time.perf_counter() - t1
        node = batch.column("network_node").to_pylist()
        for i in todo:
            node[i] = self.node
        schema = work_schema()
        for name, values in (("edited", edited), ("masks", masks), ("status", status),
                             ("error", errors), ("network_s", net_s), ("network_node", node)):
            idx = batch.schema.get_field_index(name)
            batch = batch.set_column(idx, schema.field(name), pa.array(values, schema.field(name).type))
        return batch


class FinishFn:
    """Full-size decode + paste back + encode + write ``OUT/<key>``, per photo (task UDF)."""

    def __init__(self, output_uri: str, opts: Any, s3: Any,
                 isolate: dict[str, Any] | None = None, guard: Any = None) -> None:
        self.output_uri = output_uri.rstrip("/")
        self.opts = opts
        self.s3 = s3
        self.run = _runner(isolate, None)
        self.guard = guard

    def __call__(self, batch):
        from beardnet.infer.photo import paste_bytes
        from beardnet.infer.writer import write_photo

        out = []
        names = runlog.manifest_schema().names
        for i, row in enumerate(_meta_rows(batch)):
            data: Any = None
            if row["status"] == PENDING:
                t0 = time.perf_counter()
                try:
                    blobs = [_blob(batch, c, i) for c in ("data", "geometry", "crops", "edited")]
                    m = _blob(batch, "masks", i)
                    args = [b.to_pybytes() for b in blobs] + [m.to_pybytes() if m else None]
                    data, info = self.run(paste_bytes, args[0], row["key"], self.opts, *args[1:],
                                          row["style"], key=row["key"])
                    _fill_info(row, info)
                    row["status"] = "ok"
                except Exception as e:  # noqa: BLE001 - per photo
                    _err(row, "encode", e)
                    data = None
                row["encode_s"] = time.perf_counter() - t0
            elif row["status"] == "no_face":
                buf = _blob(batch, "data", i)
                data = buf.to_pybytes() if buf is not None else None
            if data is not None and row["status"] in ("ok", "no_face"):
                t0 = time.perf_counter()
                try:
                    if self.guard is not None:
                        self.guard.check_write()
                    write_photo(output_location(self.output_uri, row["key"]), data, s3=self.s3)
                    row["bytes_out"] = len(data)
                except Exception as e:  # noqa: BLE001 - per photo
                    _err(row, "write", e)
                row["write_s"] = time.perf_counter() - t0
            out.append({k: row.get(k) for k in names})
        return runlog.rows_to_table(out)


def finish_batch(batch, **kwargs):
    """Task UDF: :class:`FinishFn` on one batch."""
    return FinishFn(**kwargs)(batch)


def _fill_info(row: dict[str, Any], info: Any) -> None:
    """Copy ``paste_bytes``'s info into the row."""
    info = dict(info or {})
    for k in ("faces", "faces_small"):
        if k in info and info[k] is not None:
            row[k] = int(info[k])
    if info.get("beard_area_ratio") is not None:
        row["beard_area_ratio"] = float(info["beard_area_ratio"])
