"""Composite pairs: beards drawn onto a folder of real photos, written in the crop contract.

For every clean-shaven face (FaceMesh landmarks, at least ``min_face_px`` wide, no facial hair by
label or by :mod:`beardnet.synth.shaven`) the aligned canonical crop of the photo itself is the
``none`` row, and each augmentation seed draws one beard per style (:mod:`beardnet.synth.composite`)
whose crop is another row of the same identity (the photo-face). Layout under ``OUT``::

    manifest.parquet                      the training manifest (crops mode columns + extras)
    faces.parquet                         one row per detected face: status, hair test, label
    images/<face>/none.png                aligned crop of the real face
    images/<face>/s<seed>_<style>.png     the same crop with the drawn beard
    masks/<face>/face.png                 face oval (mesh) in the crop, shared by the face's rows
    masks/<face>/s<seed>_<style>_beard.png  drawn hair alpha > 0.1 in the crop (inside the face)
    native/<face>/s<seed>_<style>.png     optional (``native=True``): the full photo, beard drawn

``<face>`` is the photo's key with ``/`` replaced by ``__`` and ``#f<i>`` appended (faces of a
photo ordered by ``x0``). Extra manifest columns: ``source`` (photo key), ``face_index``,
``person`` (label identity, else the photo-face), ``aug_seed`` (-1 for ``none``),
``area_ratio`` (beard mask / face mask), ``face_px`` (face width in the photo), ``hair_colour``
(``own``/``natural``), ``native_uri``.
"""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from beardnet.storage import S3Settings

SUFFIXES = (".jpg", ".jpeg", ".png")
STYLES = ("stubble", "mustache", "goatee", "full_beard")


@dataclass(frozen=True)
class CompositeOptions:
    """How faces are picked and pairs are drawn."""

    size: int = 128
    seeds: int = 4
    seed: int = 0
    min_face_px: int = 60
    native: bool = False
    split: str = "train"  # manifest split of every row; labels may restrict the faces used
    only_split: str | None = None  # with labels: use only faces whose label split is this
    own_colour_p: float = 0.6


def load_labels(uri: str, s3: S3Settings | None = None) -> list[dict[str, Any]]:
    """Per-face labels (CSV or Parquet): ``file``, ``x0..y1``, ``facial_hair``, ``identity``,
    ``split`` (``file`` relative to the faces folder)."""
    import io

    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from beardnet import storage

    data = storage.read_bytes(uri, s3=s3)
    table = pq.read_table(io.BytesIO(data)) if uri.endswith(".parquet") else pcsv.read_csv(
        io.BytesIO(data))  # fmt: skip
    need = {"file", "x0", "y0", "x1", "y1", "facial_hair"}
    missing = need - set(table.column_names)
    if missing:
        raise ValueError(f"labels {uri}: missing column(s) {sorted(missing)}")
    return table.to_pylist()


def _match(box: np.ndarray, labels: list[dict[str, Any]]) -> dict[str, Any] | None:
    from beardnet.faces import box_iou

    best, best_iou = None, 0.3
    for r in labels:
        iou = box_iou(box, np.array([r["x0"], r["y0"], r["x1"], r["y1"]], np.float64))
        if iou > best_iou:
            best, best_iou = r, iou
    return best


def _png(img: np.ndarray) -> bytes:
    from beardnet.sheets import encode_png

    return encode_png(img)


def _box(mask: np.ndarray) -> list[float] | None:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def face_pairs(
    image: np.ndarray, face: Any, ident: str, opts: CompositeOptions
) -> list[tuple[str, int, dict[str, np.ndarray], dict[str, Any]]]:
    """The crops of one clean face: ``(category, aug_seed, arrays, extra)`` per row, ``none``
    first. ``arrays`` holds ``image``, ``beard`` (bool), ``face`` (bool) and maybe ``native``."""
    import cv2

    from beardnet.faces.align import align, warp
    from beardnet.faces.regions import beard_zone_in_crop
    from beardnet.synth.composite import MASK_THRESHOLD, draw_beard
    from beardnet.synth.hairzones import sample_look
    from beardnet.synth.realface import measure

    size = opts.size
    rf = measure(image, face)
    crop0, M = align(image, face, size)
    face_m = beard_zone_in_crop(face, M, size)[1]
    out = [("none", -1, {"image": crop0, "beard": np.zeros_like(face_m), "face": face_m},
            {"area_ratio": 0.0, "hair_colour": None})]  # fmt: skip
    x0, y0 = rf.roi[:2]
    M_roi = np.asarray(M, np.float64).copy()
    M_roi[:, 2] += M_roi[:, :2] @ np.array([x0, y0], np.float64)
    key = zlib.crc32(ident.encode())
    for s in range(opts.seeds):
        for k, style in enumerate(STYLES):
            rng = np.random.default_rng([opts.seed, key, s, k])
            own = bool(rng.uniform() < opts.own_colour_p)
            look = sample_look(rf, style, rng, own_colour=own)
            dr = draw_beard(image, rf, look, rng)
            crop = warp(dr.image, M, size)
            a = cv2.warpAffine(dr.alpha, M_roi, (size, size), flags=cv2.INTER_LINEAR)
            beard = (a > MASK_THRESHOLD) & face_m
            arrays = {"image": crop, "beard": beard, "face": face_m}
            if opts.native:
                arrays["native"] = dr.image
            extra = {"area_ratio": float(beard.sum() / max(face_m.sum(), 1)),
                     "hair_colour": "own" if own else "natural"}  # fmt: skip
            out.append((style, s, arrays, extra))
    return out


def process_photo(
    key: str,
    data: bytes,
    out_uri: str,
    opts: CompositeOptions,
    labels: list[dict[str, Any]] | None,
    s3: S3Settings | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Locate, test and draw every face of one photo; writes its files.

    Returns ``(manifest rows, face reports, bytes written)``; never raises for bad input
    (the photo's report row says why).
    """
    import cv2

    from beardnet.faces import get_locator
    from beardnet.storage import join
    from beardnet.synth.dataset import _ObjectWriter
    from beardnet.synth.shaven import facial_hair_test

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if arr is None:
        return [], [{"source": key, "face_index": -1, "status": "decode_error"}], 0
    image = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    faces = get_locator("mediapipe", min_face_px=min(48, opts.min_face_px)).locate(image)
    faces = sorted(faces, key=lambda f: float(f.box[0]))
    mine = [r for r in labels or [] if r["file"] == key]
    rows: list[dict[str, Any]] = []
    report: list[dict[str, Any]] = []
    base = key.rsplit(".", 1)[0].replace("/", "__")
    with _ObjectWriter(s3) as writer:
        for i, face in enumerate(faces):
            ident = f"{base}#f{i}"
            rep: dict[str, Any] = {
                "source": key,
                "face_index": i,
                "identity": ident,
                "box": [float(v) for v in face.box],
                "face_px": face.width,
            }
            lab = _match(face.box, mine) if labels is not None else None
            rep["label"] = lab.get("facial_hair") if lab else None
            rep["label_split"] = lab.get("split") if lab else None
            test = facial_hair_test(image, face) if face.landmarks is not None else None
            rep.update({f"hair_{k}": v for k, v in (test.as_dict() if test else {}).items()})
            status = "clean"
            if face.width < opts.min_face_px:
                status = "small"
            elif face.landmarks is None:
                status = "no_mesh"
            elif labels is not None and lab is None:
                status = "unlabelled"
            elif opts.only_split and lab is not None and lab.get("split") != opts.only_split:
                status = "other_split"
            elif lab is not None and lab.get("facial_hair") not in (None, "none"):
                status = "facial_hair_labelled"
            elif lab is None and (test is None or test.hair):  # a label, where given, decides
                status = "facial_hair_detected" if test is not None else "untestable"
            rep["status"] = status
            rep["detector_disagrees"] = bool(
                lab is not None
                and test is not None
                and test.hair != (lab.get("facial_hair") not in (None, "none"))
            )
            report.append(rep)
            if status != "clean":
                continue
            person = (lab or {}).get("identity") or ident
            try:
                pairs = face_pairs(image, face, ident, opts)
            except (ValueError, cv2.error) as exc:  # bad geometry: recorded, never fatal
                rep["status"] = f"draw_error: {exc}"
                continue
            face_rel = f"masks/{ident}/face.png"
            writer.put(join(out_uri, face_rel), _png(pairs[0][2]["face"].astype(np.uint8) * 255))
            for cat, s, arrays, extra in pairs:
                stem = "none" if cat == "none" else f"s{s}_{cat}"
                img_rel = f"images/{ident}/{stem}.png"
                writer.put(join(out_uri, img_rel), _png(arrays["image"]))
                beard_rel = None
                if cat != "none":
                    beard_rel = f"masks/{ident}/{stem}_beard.png"
                    writer.put(
                        join(out_uri, beard_rel), _png(arrays["beard"].astype(np.uint8) * 255)
                    )
                native_rel = None
                if "native" in arrays:
                    native_rel = f"native/{ident}/{stem}.png"
                    writer.put(join(out_uri, native_rel), _png(arrays["native"]))
                rows.append({"uri": img_rel, "identity": ident, "category": cat,
                             "beard_mask_uri": beard_rel, "face_mask_uri": face_rel,
                             "face_box": _box(arrays["face"]), "split": opts.split,
                             "source": key, "face_index": i, "person": person, "aug_seed": s,
                             "face_px": float(face.width), "native_uri": native_rel, **extra})  # fmt: skip
    return rows, report, writer.nbytes


def _process_row(row: dict[str, Any], faces_uri: str, out_uri: str, opts: dict, labels, s3):
    from beardnet import storage

    key = row["key"]
    try:
        data = storage.read_bytes(storage.join(faces_uri, key), s3=s3)
    except OSError as exc:
        return {
            "key": key,
            "rows": "[]",
            "report": json.dumps(
                [{"source": key, "face_index": -1, "status": f"read_error: {exc}"}]
            ),
            "nbytes": 0,
        }
    rows, rep, nbytes = process_photo(key, data, out_uri, CompositeOptions(**opts), labels, s3)
    return {"key": key, "rows": json.dumps(rows), "report": json.dumps(rep), "nbytes": nbytes}


def write_composite_dataset(
    faces_uri: str,
    out_uri: str,
    opts: CompositeOptions = CompositeOptions(),
    labels_uri: str | None = None,
    s3: S3Settings | None = None,
    use_ray: bool | None = None,
) -> dict[str, Any]:
    """Draw composite pairs for every photo under ``faces_uri`` (JPEG/PNG, recursive) and write
    them under ``out_uri`` with ``manifest.parquet`` and ``faces.parquet``; returns a summary.

    Over Ray Data (read bytes -> locate -> draw -> write, one task per photo) when ``use_ray``,
    or by default above 20 photos.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beardnet import storage
    from beardnet.manifest import write_manifest

    t0 = time.perf_counter()
    faces_uri, out_uri = faces_uri.rstrip("/"), out_uri.rstrip("/")
    keys = [k for k in storage.list_keys(faces_uri, SUFFIXES, s3=s3)
            if not k.startswith(".")]  # fmt: skip
    if not keys:
        raise ValueError(f"composite: no .jpg/.jpeg/.png under {faces_uri}")
    labels = load_labels(labels_uri, s3) if labels_uri else None
    ray_on = len(keys) > 20 if use_ray is None else bool(use_ray)
    args = (faces_uri, out_uri, asdict(opts), labels, s3)
    if ray_on:
        import ray.data

        from beardnet.raysession import init_ray

        init_ray(s3=s3)
        ds = ray.data.from_items([{"key": k} for k in keys], override_num_blocks=len(keys))
        results = ds.map(_process_row, fn_args=args, num_cpus=1).take_all()
    else:
        results = [_process_row({"key": k}, *args) for k in keys]
    results.sort(key=lambda r: r["key"])
    rows = [r for res in results for r in json.loads(res["rows"])]
    report = [r for res in results for r in json.loads(res["report"])]
    if not rows:
        counts = dict(Counter(r["status"] for r in report))
        raise ValueError(f"composite: no clean face found under {faces_uri}: {counts}")
    manifest_uri = storage.join(out_uri, "manifest.parquet")
    write_manifest(rows, manifest_uri, s3=s3)
    for r in report:
        r["box"] = json.dumps(r.get("box"))
    buf = pa.BufferOutputStream()
    cols = list(dict.fromkeys(k for r in report for k in r))  # every key, first-seen order
    report_table = pa.Table.from_pylist([{k: r.get(k) for k in cols} for r in report])
    pq.write_table(report_table, buf, compression="zstd")
    storage.write_bytes(storage.join(out_uri, "faces.parquet"), buf.getvalue().to_pybytes(), s3)
    status = Counter(r["status"] for r in report)
    dt = time.perf_counter() - t0
    return {
        "uri": out_uri, "manifest": manifest_uri, "photos": len(keys), "faces": len(report),
        "faces_per_status": dict(status), "clean_faces": status.get("clean", 0),
        "rows": len(rows), "per_category": dict(Counter(r["category"] for r in rows)),
        "facial_hair_faces": [f"{r['source']}#f{r['face_index']}" for r in report
                              if str(r["status"]).startswith("facial_hair")],
        "bytes": sum(int(r["nbytes"]) for r in results), "seconds": round(dt, 2),
        "ray": ray_on, "options": asdict(opts),
    }  # fmt: skip
