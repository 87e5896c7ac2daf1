"""`beardnet eval --real`: score a model on labelled real photos through the product's path.

For each photo of the chosen split, the product's per-image transform runs once per style
(:func:`beardnet.infer.transform.prepare` once, then the network and
:func:`beardnet.infer.transform.apply`, whose paste-back and encoding are the product's), and
the output is decoded as a user would see it. Independently, the evaluation locates the faces
of the *input* with MediaPipe (FaceMesh landmarks), matches them to the labelled faces by IoU,
and scores every labelled face with :mod:`beardnet.evaluate.real_metrics`. A labelled face
the evaluation cannot mesh is reported under ``unscored``.

Outputs under ``--out``: ``real_metrics.json`` (per-face and per-photo figures, the summary and
the texture reference), ``real_metrics.md`` (the pass-rate table) and ``real_sheet_<style>.png``
(per style, each scored face before | after at the photo's native resolution).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from beardnet.evaluate import real_metrics as rm
from beardnet.evaluate.real_set import LabelledFace, by_photo, labels_uri_of, match, read_labels
from beardnet.evaluate.real_zones import FaceZones, face_zones
from beardnet.storage import S3Settings

STYLES = ("none", "stubble", "mustache", "goatee", "full_beard")
SHEET_MAX_W = 2400


@dataclass
class PhotoResult:
    """One photo: its input, each style's decoded output, and the matched zones."""

    file: str
    before: np.ndarray
    after: dict[str, np.ndarray] = field(default_factory=dict)
    faces: list[tuple[LabelledFace, FaceZones | None]] = field(default_factory=list)


def evaluate_real(
    model: Any,
    real: str,
    *,
    labels: str | None = None,
    styles: tuple[str, ...] | None = None,
    split: str = "eval",
    s3: S3Settings | None = None,
    max_photos: int | None = None,
    log: Any = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Score ``model`` (LoadedModel, artifact URI, or None: shipped) on the real set ``real``.

    Returns ``(report, sheets)``: the JSON-able report and one RGB sheet per style."""
    from beardnet import storage
    from beardnet.faces import get_locator
    from beardnet.infer.codec import BadImage, decode, encode_like
    from beardnet.infer.transform import (
        TransformOptions,
        apply,
        prepare,
        run_network,
        style_index,
    )
    from beardnet.model import load

    t_start = time.time()
    lm = model if hasattr(model, "net") else load(model, s3=s3)
    styles = tuple(styles or STYLES)
    idx = {s: style_index(lm, s) for s in styles}
    luri = labels_uri_of(real, labels, s3=s3)
    photos = by_photo(read_labels(luri, s3=s3), split)
    if max_photos:
        photos = dict(list(photos.items())[:max_photos])
    opts = TransformOptions(crop_size=int(lm.input_size))
    eval_loc = get_locator("mediapipe", min_face_px=40)
    results: list[PhotoResult] = []
    photo_cases: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    unscored: list[dict[str, Any]] = []
    for n, (file, labelled) in enumerate(photos.items()):
        key = storage.join(real, file)
        try:
            data = storage.read_bytes(key, s3=s3)
            prep = prepare(data, file, opts)
        except (BadImage, FileNotFoundError, OSError) as exc:
            skipped.append({"file": file, "reason": type(exc).__name__, "message": str(exc)})
            continue
        before = prep.decoded.image
        pr = PhotoResult(file, before)
        located = [f for f in eval_loc.locate(before) if f.landmarks is not None]
        m = match([lf.box for lf in labelled], [f.box for f in located])
        for lf, j in zip(labelled, m, strict=True):
            z = None
            if j is not None:
                try:
                    z = face_zones(located[j], before.shape)
                except ValueError:
                    z = None
            if z is None:
                unscored.append({"file": file, "face": lf.face, "reason": "no_mesh_match"})
            pr.faces.append((lf, z))
        faces_mask = _faces_mask(before.shape, located, prep.faces)
        reenc = decode(encode_like(prep.decoded, before, opts.jpeg_quality)).image
        for s in styles:
            edited, masks = run_network(lm, prep.crops, idx[s])
            out, _info = apply(prep, edited, masks, style=s)
            after = decode(out).image
            pr.after[s] = after
            oc = rm.score_outside(before, after, reenc, faces_mask)
            photo_cases.append({"file": file, "style": s, **oc})
        results.append(pr)
        if log:
            log(f"[{n + 1}/{len(photos)}] {file}: {len(labelled)} labelled, {len(located)} meshed")
    # Texture reference: the median over the set's real facial-hair zones (inputs).
    hair = [
        rm.hair_texture(pr.before, z, lf.facial_hair)
        for pr in results
        for lf, z in pr.faces
        if z is not None and lf.facial_hair != "none"
    ]
    hair = [t for t in hair if t is not None]
    ref = float(np.median(hair)) if hair else None
    # For comparison: the same measure on clean faces' full-beard zones (bare skin).
    bare = [
        rm.texture(pr.before, z.full_beard)
        for pr in results
        for lf, z in pr.faces
        if z is not None and lf.facial_hair == "none"
    ]
    bare = [t for t in bare if t is not None]
    cases: list[dict[str, Any]] = []
    for pr in results:
        for lf, z in pr.faces:
            if z is None:
                continue
            for s in styles:
                sc = rm.score_face(pr.before, pr.after[s], z, lf.facial_hair, s, ref)
                cases.append(
                    {
                        "file": pr.file,
                        "face": lf.face,
                        "identity": lf.identity,
                        "facial_hair": lf.facial_hair,
                        "width": round(z.width, 1),
                        "style": s,
                        **sc,
                    }
                )
    summary = rm.summarize(cases + photo_cases, list(styles))
    report = {
        "model": lm.meta.get("model_id") or lm.model_id,
        "model_uri": model if isinstance(model, str) else None,
        "real": real,
        "labels": luri,
        "split": split,
        "styles": list(styles),
        "photos": len(results),
        "faces_scored": sum(1 for pr in results for _, z in pr.faces if z is not None),
        "texture_reference": ref,
        "texture_reference_faces": len(hair),
        "texture_bare_skin_median": float(np.median(bare)) if bare else None,
        "summary": summary,
        "faces": cases,
        "photo_cases": photo_cases,
        "unscored": unscored,
        "skipped": skipped,
        "seconds": round(time.time() - t_start, 1),
    }
    model_id = report["model"]
    sheets = {
        s: before_after_sheet(
            results, s, f"model {model_id}, style {s}: each face before | after, native size"
        )
        for s in styles
    }
    return _jsonable(report), sheets


def _faces_mask(shape: tuple[int, ...], located: list, product_faces: list) -> np.ndarray:
    """Union of every located face's oval grown by 15 % of its width (the evaluation's meshed
    faces and the faces the product edited)."""
    from beardnet.evaluate.real_zones import dilate
    from beardnet.faces.regions import face_oval_polygon, face_region

    acc = np.zeros(shape[:2], bool)
    for f in list(located) + list(product_faces):
        width = float(np.ptp(face_oval_polygon(f)[:, 0]))
        acc |= dilate(face_region(f, shape).full(shape), rm.OUTSIDE_GROW * width)
    return acc


def _crop_box(z: FaceZones, lf: LabelledFace, shape: tuple[int, ...]) -> tuple[int, ...]:
    x0, y0, x1, y1 = lf.box
    p = 0.2 * (x1 - x0)
    h, w = shape[:2]
    return (
        int(max(0, x0 - p)),
        int(max(0, y0 - p)),
        int(min(w, x1 + p)),
        int(min(h, y1 + 1.5 * p)),
    )


def before_after_sheet(results: list[PhotoResult], style: str, title: str = "") -> np.ndarray:
    """Each scored face as ``before | after`` at native resolution, packed in rows under a
    title band (``title``, else the style)."""
    import cv2

    tiles = []
    for pr in results:
        if style not in pr.after:
            continue
        for lf, z in pr.faces:
            if z is None:
                continue
            x0, y0, x1, y1 = _crop_box(z, lf, pr.before.shape)
            a, b = pr.before[y0:y1, x0:x1], pr.after[style][y0:y1, x0:x1]
            gap = np.full((a.shape[0], 2, 3), 255, np.uint8)
            body = np.concatenate([a, gap, b], axis=1)
            band = np.full((14, body.shape[1], 3), 255, np.uint8)
            name = pr.file.rsplit("/", 1)[-1][:28]
            cv2.putText(
                band, f"{name}#{lf.face} hair:{lf.facial_hair}", (2, 11),
                cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA,
            )  # fmt: skip
            tiles.append(np.concatenate([band, body], axis=0))
    if not tiles:
        return np.full((16, 16, 3), 255, np.uint8)
    width = max(SHEET_MAX_W, max(t.shape[1] for t in tiles))
    rows: list[list[np.ndarray]] = [[]]
    used = 0
    for t in tiles:
        if rows[-1] and used + t.shape[1] + 4 > width:
            rows.append([])
            used = 0
        rows[-1].append(t)
        used += t.shape[1] + 4
    bands = []
    for r in rows:
        h = max(t.shape[0] for t in r)
        band = np.full((h + 4, width, 3), 255, np.uint8)
        x = 0
        for t in r:
            band[: t.shape[0], x : x + t.shape[1]] = t
            x += t.shape[1] + 4
        bands.append(band)
    head = np.full((22, width, 3), 255, np.uint8)
    cv2.putText(
        head, title or f"style: {style} (each face: before | after)", (4, 16),
        cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA,
    )  # fmt: skip
    return np.concatenate([head, *bands], axis=0)


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.bool_ | bool):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating | float):
        return None if not np.isfinite(o) else round(float(o), 4)
    return o


def write_real_report(
    report: dict[str, Any], sheets: dict[str, np.ndarray], out: str, s3: S3Settings | None = None
) -> dict[str, str]:
    """Write ``real_metrics.json``, ``real_metrics.md`` and one ``real_sheet_<style>.png`` per
    style under ``out``; returns their URIs."""
    from beardnet import storage
    from beardnet.sheets import encode_png

    paths = {"metrics": storage.join(out, "real_metrics.json")}
    paths["table"] = storage.join(out, "real_metrics.md")
    storage.write_bytes(paths["metrics"], (json.dumps(report, indent=1) + "\n").encode(), s3=s3)
    storage.write_bytes(paths["table"], real_table(report).encode(), s3=s3)
    for s, img in sheets.items():
        paths[f"sheet_{s}"] = storage.join(out, f"real_sheet_{s}.png")
        storage.write_bytes(paths[f"sheet_{s}"], encode_png(img), s3=s3)
    return paths


def real_table(report: dict[str, Any]) -> str:
    """The pass-rate table of a report, titled with the model and the set."""
    title = (
        f"model {report['model']} on {report['faces_scored']} real faces "
        f"({report['photos']} photos, split {report['split']})"
    )
    return rm.table(report["summary"], title)
