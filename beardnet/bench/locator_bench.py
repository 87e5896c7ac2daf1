"""Face-locator benchmark: hit rate vs cost over smallest-face rules, and one large photo.

- :func:`scene_items` renders synthetic scenes (the transform bench's scenes) until they hold
  ``n_faces`` faces of at least ``min_face_px`` (ground-truth boxes from the renderer).
- :func:`locator_curve` runs the locator with several settings on the same decoded scenes and
  reports, per setting, the hit rate on faces >= ``min_face_px`` (IoU >= 0.5 with a located
  face that the transform would edit) with its 95 % Wilson interval, false faces per 100
  photos (located faces the transform would edit that overlap no face of the scene), detector
  calls and CPU ms per photo (``time.process_time``: this process, all its threads).
- :func:`big_photo` makes a camera-sized JPEG (default 6000x4000) with one face on a textured
  background; :func:`locate_photo` decodes it reduced (JPEG DCT scaling, as far as
  :func:`beardnet.faces.locate_scale` allows) and locates, timing both in CPU seconds.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The settings the curve compares: label -> MediaPipeLocator keyword arguments (the overlaps
#: ``ov*`` are of the ``windows`` detector).
CURVE = {
    "m48-det32": {"min_face_px": 48, "det_face_px": 32},
    "m48-det28-ov50": {"min_face_px": 48, "det_face_px": 28, "overlap": 0.5,
                       "detector": "windows"},
    "m48-det28-ov38": {"min_face_px": 48, "det_face_px": 28, "overlap": 0.375,
                       "detector": "windows"},
    "m48-det28-ov31": {"min_face_px": 48, "det_face_px": 28, "overlap": 0.3125,
                       "detector": "windows"},
    "m48-det28": {"min_face_px": 48, "det_face_px": 28},
    "m48-det28-windows": {"min_face_px": 48, "det_face_px": 28, "detector": "windows"},
    "m48-det28-full": {"min_face_px": 48, "det_face_px": 28, "full_range": True},
    "m48-det26": {"min_face_px": 48, "det_face_px": 26},
    "m48-det24": {"min_face_px": 48, "det_face_px": 24},
    "m48-frac1/16": {"min_face_px": 48, "min_face_frac": 1 / 16},
    "m48-frac1/12": {"min_face_px": 48, "min_face_frac": 1 / 12},
    "m64-det32": {"min_face_px": 64, "det_face_px": 32},
}
QUICK_CURVE = ("m48-det28-windows", "m48-det28")


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``hits / n`` (``(0, 1)`` when ``n == 0``)."""
    if n <= 0:
        return 0.0, 1.0
    p = hits / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def scene_items(n_faces: int, seed: int = 1000, min_face_px: int = 48) -> list[dict[str, Any]]:
    """Scenes (JPEG bytes, ground-truth boxes) from ``seed`` on until they hold ``n_faces``
    faces >= ``min_face_px``; the transform bench renders the same scenes from the same seed."""
    from beardnet.bench.transform_bench import _encode_jpeg, _scene

    items: list[dict[str, Any]] = []
    big = 0
    sd = seed
    while big < n_faces:
        img, boxes = _scene(sd)
        boxes = boxes or []
        big += sum(max(b[2] - b[0], b[3] - b[1]) >= min_face_px for b in boxes)
        items.append({"key": f"{sd:05d}.jpg", "data": _encode_jpeg(img), "boxes": boxes})
        sd += 1
    return items


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    from beardnet.faces import box_iou

    return box_iou(np.asarray(a, float), np.asarray(b, float))


def score_faces(
    found: Sequence[Any], boxes: Sequence[Sequence[float]], min_face_px: float
) -> tuple[int, int, int]:
    """``(faces >= min_face_px, of those hit, false faces)`` for one photo: a ground-truth face
    is hit when a located face the transform edits (size >= min_face_px) has IoU >= 0.5 with
    it; a false face is an edited face with IoU < 0.2 with every ground-truth face."""
    edited = [f for f in found if f.size >= min_face_px]
    gt_big = [b for b in boxes if max(b[2] - b[0], b[3] - b[1]) >= min_face_px]
    hit = sum(any(_iou(b, f.box) >= 0.5 for f in edited) for b in gt_big)
    false = sum(all(_iou(b, f.box) < 0.2 for b in boxes) for f in edited)
    return len(gt_big), hit, false


def locator_curve(
    items: Sequence[dict[str, Any]],
    configs: dict[str, dict[str, Any]],
    min_face_px: int = 48,
) -> list[dict[str, Any]]:
    """Hit rate (Wilson 95 %), false faces per 100 photos, detector calls and CPU ms per photo
    for each locator setting in ``configs`` (label -> ``MediaPipeLocator`` kwargs), on the same
    decoded photos; misses are listed (key, box) for the first setting."""
    from beardnet.faces.mediapipe_locator import MediaPipeLocator
    from beardnet.infer.codec import decode

    imgs = [decode(it["data"], it["key"]).image for it in items]
    pixels = sum(im.shape[0] * im.shape[1] for im in imgs)
    rows = []
    for label, kw in configs.items():
        loc = MediaPipeLocator(**kw)
        if imgs:
            loc.locate(imgs[0])  # warm-up: graph start-up is not per-photo work
        loc.calls = 0
        tot = hit = false = 0
        misses = []
        cpu = 0.0
        for im, it in zip(imgs, items, strict=True):
            c0 = time.process_time()
            found = loc.locate(im)
            cpu += time.process_time() - c0
            n, h, f = score_faces(found, it.get("boxes") or [], min_face_px)
            tot, hit, false = tot + n, hit + h, false + f
            if h < n and len(misses) < 20:
                misses.append(it["key"])
        n_img = max(1, len(imgs))
        lo, hi = wilson(hit, tot)
        rows.append({
            "label": label,
            "settings": kw,
            "photos": len(imgs),
            "faces": tot,
            "hits": hit,
            "hit_rate": hit / tot if tot else None,
            "hit_rate_95": [lo, hi],
            "false_per_100": 100.0 * false / n_img,
            "calls_per_image": loc.calls / n_img,
            "cpu_ms_per_image": 1000 * cpu / n_img,
            "cpu_ms_per_mp": 1000 * cpu / max(1e-9, pixels / 1e6),
            "misses": misses,
        })
    return rows


def _texture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A busy, photo-like background: multi-scale coloured noise (foliage/stone-like)."""
    import cv2

    acc = np.zeros((h, w, 3), np.float32)
    for cell, amp in ((400, 0.35), (60, 0.25), (12, 0.2), (3, 0.1)):
        small = rng.uniform(0, 1, (max(2, h // cell), max(2, w // cell), 3)).astype(np.float32)
        acc += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    tint = rng.uniform(0.3, 0.8, 3).astype(np.float32)
    return np.clip(acc * tint / 0.9 + 0.1, 0, 1)


def big_photo(
    seed: int = 0, width: int = 6000, height: int = 4000, face_px: int = 900, quality: int = 90
) -> tuple[bytes, list[float]]:
    """A ``width`` x ``height`` JPEG with one face about ``face_px`` wide on a textured
    background; returns ``(jpeg bytes, face box)``."""
    from PIL import Image

    from beardnet.synth.scenes import _draw_face, _similarity

    rng = np.random.default_rng([seed, 24])
    img = _texture(rng, width, height)
    centre = (float(rng.uniform(0.3, 0.7) * width), float(rng.uniform(0.35, 0.65) * height))
    rec = _draw_face(img, int(rng.integers(0, 2**31 - 1)), "full_beard",
                     _similarity(float(face_px), 0.0, centre))
    if rec is None:
        raise RuntimeError("face could not be drawn")
    out = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), rec["box"]


def decode_reduced(data: bytes, factor: float) -> tuple[np.ndarray, float]:
    """RGB pixels of a JPEG decoded at most ``factor`` times smaller (DCT scaling: 1/2, 1/4,
    1/8); returns ``(image, full width / reduced width)``."""
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    w, h = im.size
    if factor >= 2:
        im.draft("RGB", (math.ceil(w / factor), math.ceil(h / factor)))
    arr = np.asarray(im.convert("RGB"))
    return arr, w / arr.shape[1]


def locate_photo(
    data: bytes, min_face_px: int = 48, min_face_frac: float | None = None, repeats: int = 2
) -> dict[str, Any]:
    """Decode ``data`` reduced (by :func:`beardnet.faces.locate_scale`) and locate faces with
    the process-wide locator; CPU seconds of decode and locate (best of ``repeats``)."""
    from PIL import Image

    from beardnet.faces import MIN_FACE_FRAC, Face, get_locator, locate_scale

    frac = MIN_FACE_FRAC if min_face_frac is None else float(min_face_frac)
    w, h = Image.open(io.BytesIO(data)).size
    factor = locate_scale(w, h, min_face_px, frac)
    loc = get_locator("mediapipe", min_face_px=min_face_px, min_face_frac=frac)
    best: dict[str, Any] | None = None
    for _ in range(max(1, repeats)):
        c0 = time.process_time()
        small, k = decode_reduced(data, factor)
        c1 = time.process_time()
        faces: list[Face] = [
            f.scaled(k) for f in loc.locate(small, min_face_px=min_face_px / k)
        ]
        c2 = time.process_time()
        run = {"decode_cpu_s": c1 - c0, "locate_cpu_s": c2 - c1, "faces": len(faces),
               "reduced": [int(small.shape[1]), int(small.shape[0])], "factor": factor,
               "boxes": [[round(float(v), 1) for v in f.box] for f in faces]}
        if best is None or run["locate_cpu_s"] < best["locate_cpu_s"]:
            best = run
    assert best is not None
    return best


def real_set_hits(root: str, configs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per locator setting, how many labelled faces of a real-photo set (``root``: a folder
    with ``labels.csv``, every split) a meshed located face matches one to one at IoU >= 0.5
    and >= 0.3, and the CPU ms per photo of ``locate`` on the full decode."""
    from pathlib import Path

    from beardnet.evaluate.real_set import by_photo, match, read_labels
    from beardnet.faces.mediapipe_locator import MediaPipeLocator
    from beardnet.infer.codec import decode

    labels = read_labels(str(Path(root) / "labels.csv"))
    photos = {f: [lf.box for lf in faces] for f, faces in by_photo(labels, "all").items()}
    imgs = {f: decode((Path(root) / f).read_bytes(), f).image for f in photos}
    rows = []
    for label, kw in configs.items():
        loc = MediaPipeLocator(**kw)
        hits = {0.5: 0, 0.3: 0}
        cpu = 0.0
        for f, boxes in photos.items():
            c0 = time.process_time()
            found = [x.box for x in loc.locate(imgs[f]) if x.landmarks is not None]
            cpu += time.process_time() - c0
            for iou in hits:
                hits[iou] += sum(m is not None for m in match(boxes, found, iou))
        rows.append({"label": label, "real_photos": len(photos), "real_faces": len(labels),
                     "matched_iou50": hits[0.5], "matched_iou30": hits[0.3],
                     "cpu_ms_per_photo": 1000 * cpu / max(1, len(photos))})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m beardnet.bench.locator_bench [--faces N] [--settings a,b] [--quick]``: print
    the curve (JSON lines) and the large-photo check, with the load average."""
    import argparse
    import json
    import os

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--faces", type=int, default=500,
                    help="scene faces >= 48 px (quick: 60; 0: no scenes)")
    ap.add_argument("--settings", default=None, help=f"comma-separated of {', '.join(CURVE)}")
    ap.add_argument("--quick", action="store_true", help="60 faces, two settings")
    ap.add_argument("--real", default=None, help="also match a labelled real-photo set "
                    "(a folder with labels.csv, e.g. .realset from infra/realset/build.sh)")
    a = ap.parse_args(argv)
    n = 60 if a.quick else a.faces
    labels = a.settings.split(",") if a.settings else list(QUICK_CURVE if a.quick else CURVE)
    if a.real:
        for row in real_set_hits(a.real, {k: CURVE[k] for k in labels}):
            print(json.dumps({**row, "load": os.getloadavg()[0]}), flush=True)
    items = scene_items(n) if n > 0 else []
    for row in locator_curve(items, {k: CURVE[k] for k in labels}) if items else []:
        print(json.dumps({**row, "load": os.getloadavg()[0]}), flush=True)
    data, box = big_photo(0)
    for frac in (1 / 16, 1 / 12):
        res = locate_photo(data, 48, frac)
        print(json.dumps({"photo": "6000x4000, one face", "truth": box, "min_face_frac": frac,
                          **res, "load": os.getloadavg()[0]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
