"""Metrics of one transformed real face, from the zones of its input (:mod:`.real_zones`).

Thresholds (each metric is counted only over the cases it applies to):

- protection, every face and style: eyes + nose PSNR >= 35 dB (``eyes_nose``); inside the outer
  lip contour >= 30 dB (``lips``); per photo, everything outside the faces (ovals grown by 15 %
  of their width) >= 38 dB, or within 1 dB of a plain re-encode of the input at the output's
  quality (``outside``, :func:`score_outside`);
- additions (stubble, mustache, goatee, full_beard) on faces without facial hair (and, for the
  styles other than stubble, on faces with stubble): ``coverage`` >= 50 % of the style's zone
  visibly changed (mean absolute difference over 3x3 pixels > 8 levels); ``spill`` <= 30 % of
  the changed face pixels outside the zone grown by 10 % of the face width; ``texture``: the
  standard deviation of a difference of Gaussians (sigma 1 minus sigma 3, grey) over the
  changed part of the zone is 0.6x-1.8x of the set's reference (the median of the same measure
  over the real facial-hair zones of the set's inputs);
- removal (``none``) on faces with facial hair, in the face's own hair zone: ``removal_texture``
  <= 0.7x of before (0.8x for stubble and mustache); ``skin_texture`` >= 0.5x of the same face's
  cheek-skin texture; ``skin_colour``: mean colour within dE 12 of the cheek skin (CIE76 in
  CIE Lab, lightness at half weight);
- ``none`` on faces without facial hair: ``clean_lower_face`` PSNR >= 35 dB below the nose.

Texture is measured on the zone shrunk by :data:`TEXTURE_ERODE_PX` (so a zone's own boundary,
e.g. the lip line, does not count as texture), at the photo's native resolution.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from beardnet.evaluate.metrics import detail_band
from beardnet.evaluate.real_zones import ADDITION_STYLES, FaceZones, dilate, erode

PSNR_CAP = 99.0
EYES_NOSE_DB = 35.0
LIPS_DB = 30.0
OUTSIDE_DB = 38.0
OUTSIDE_REENCODE_SLACK_DB = 1.0
CHANGE_LEVELS = 8.0
COVERAGE_MIN = 0.5
SPILL_MAX = 0.3
SPILL_GROW = 0.10
OUTSIDE_GROW = 0.15
TEXTURE_RANGE = (0.6, 1.8)
REMOVAL_MAX = {"stubble": 0.8, "mustache": 0.8}
REMOVAL_MAX_DEFAULT = 0.7
SKIN_TEXTURE_MIN = 0.5
SKIN_DE_MAX = 12.0
CLEAN_DB = 35.0
TEXTURE_ERODE_PX = 6.0  # 2 x sigma 3: the DoG response of a zone's boundary fades by then
MIN_TEXTURE_PX = 30

#: Metric names in table order.
METRICS = (
    "eyes_nose",
    "lips",
    "outside",
    "coverage",
    "spill",
    "texture",
    "removal_texture",
    "skin_texture",
    "skin_colour",
    "clean_lower_face",
)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    """PSNR (dB, capped at 99) of two uint8 images over ``mask``; None for an empty mask."""
    if not mask.any():
        return None
    d = a[mask].astype(np.float64) - b[mask].astype(np.float64)
    mse = float(np.mean(d * d))
    if mse <= 0:
        return PSNR_CAP
    return float(min(PSNR_CAP, 10.0 * np.log10(255.0**2 / mse)))


def changed(before: np.ndarray, after: np.ndarray, levels: float = CHANGE_LEVELS) -> np.ndarray:
    """Pixels visibly changed: mean absolute difference (over channels and 3x3) > ``levels``."""
    import cv2

    d = np.abs(after.astype(np.float32) - before.astype(np.float32)).mean(axis=2)
    return cv2.blur(d, (3, 3), borderType=cv2.BORDER_REFLECT) > levels


def texture(
    image: np.ndarray, mask: np.ndarray, erode_px: float = TEXTURE_ERODE_PX
) -> float | None:
    """Std of the grey difference of Gaussians (sigma 1 minus sigma 3) over ``mask`` shrunk by
    ``erode_px`` (half that, then 1 px, where it leaves under ``MIN_TEXTURE_PX`` pixels);
    None when ``mask`` itself is smaller than that."""
    import cv2

    if mask.sum() < MIN_TEXTURE_PX:
        return None
    m = mask
    for r in (erode_px, erode_px / 2, 1.0):
        e = erode(mask, r)
        if e.sum() >= MIN_TEXTURE_PX:
            m = e
            break
    ys, xs = np.nonzero(m)
    pad = 12
    y0, y1 = max(0, ys.min() - pad), min(image.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(image.shape[1], xs.max() + pad + 1)
    crop = image[y0:y1, x0:x1]
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(detail_band(grey)[m[y0:y1, x0:x1]].std())


def mean_lab(image: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Mean CIE Lab colour (L 0-100) of ``mask``'s pixels; None if empty."""
    import cv2

    if not mask.any():
        return None
    px = image[mask].reshape(-1, 1, 3).astype(np.float32) / 255.0
    return cv2.cvtColor(px, cv2.COLOR_RGB2Lab).reshape(-1, 3).mean(axis=0)


def delta_e(lab1: np.ndarray, lab2: np.ndarray) -> float:
    """CIE76 colour difference with lightness at half weight."""
    d = np.asarray(lab1, np.float64) - np.asarray(lab2, np.float64)
    return float(np.sqrt((d[0] / 2.0) ** 2 + d[1] ** 2 + d[2] ** 2))


def hair_texture(image: np.ndarray, zones: FaceZones, facial_hair: str) -> float | None:
    """Texture of a face's own facial hair (its label's zone); None for ``none``."""
    if facial_hair == "none":
        return None
    return texture(image, zones.style_zone(facial_hair))


def additions_apply(facial_hair: str, style: str) -> bool:
    """Whether an addition of ``style`` is scored on a face labelled ``facial_hair``."""
    if style not in ADDITION_STYLES:
        return False
    return facial_hair == "none" or (facial_hair == "stubble" and style != "stubble")


def score_face(
    before: np.ndarray,
    after: np.ndarray,
    zones: FaceZones,
    facial_hair: str,
    style: str,
    ref_texture: float | None,
) -> dict[str, Any]:
    """Figures and pass/fail of one face transformed to ``style``.

    Returns ``{"values": {name: float|None}, "passed": {name: bool}}``; a metric is in
    ``passed`` only where it applies (see module docstring).
    """
    v: dict[str, Any] = {}
    ok: dict[str, bool] = {}
    v["eyes_nose_db"] = psnr(before, after, zones.eyes_nose)
    if v["eyes_nose_db"] is not None:
        ok["eyes_nose"] = v["eyes_nose_db"] >= EYES_NOSE_DB
    v["lips_db"] = psnr(before, after, zones.lips)
    if v["lips_db"] is not None:
        ok["lips"] = v["lips_db"] >= LIPS_DB
    if additions_apply(facial_hair, style):
        zone = zones.style_zone(style)
        ch = changed(before, after)
        n_zone = int(zone.sum())
        v["coverage"] = float((ch & zone).sum() / n_zone) if n_zone else 0.0
        ok["coverage"] = v["coverage"] >= COVERAGE_MIN
        face_ch = ch & zones.grown_oval(OUTSIDE_GROW)
        n_ch = int(face_ch.sum())
        near = dilate(zone, SPILL_GROW * zones.width)
        v["spill"] = float((face_ch & ~near).sum() / n_ch) if n_ch else None
        ok["spill"] = v["spill"] is not None and v["spill"] <= SPILL_MAX
        t = texture(after, zone & ch)
        v["texture"] = t
        v["texture_ratio"] = t / ref_texture if (t is not None and ref_texture) else None
        lo, hi = TEXTURE_RANGE
        ok["texture"] = v["texture_ratio"] is not None and lo <= v["texture_ratio"] <= hi
    elif style == "none" and facial_hair != "none":
        zone = zones.style_zone(facial_hair)
        t0, t1 = texture(before, zone), texture(after, zone)
        cheek_t = texture(before, zones.cheek, erode_px=1.0)
        v.update(texture_before=t0, texture_after=t1, cheek_texture=cheek_t)
        if t0 and t1 is not None:
            v["removal_ratio"] = t1 / t0
            ok["removal_texture"] = v["removal_ratio"] <= REMOVAL_MAX.get(
                facial_hair, REMOVAL_MAX_DEFAULT
            )
        if cheek_t and t1 is not None:
            v["skin_ratio"] = t1 / cheek_t
            ok["skin_texture"] = v["skin_ratio"] >= SKIN_TEXTURE_MIN
        lab_zone, lab_cheek = mean_lab(after, zone), mean_lab(before, zones.cheek)
        if lab_zone is not None and lab_cheek is not None:
            v["skin_de"] = delta_e(lab_zone, lab_cheek)
            ok["skin_colour"] = v["skin_de"] <= SKIN_DE_MAX
    elif style == "none":
        v["lower_face_db"] = psnr(before, after, zones.lower_face())
        if v["lower_face_db"] is not None:
            ok["clean_lower_face"] = v["lower_face_db"] >= CLEAN_DB
    return {"values": v, "passed": ok}


def score_outside(
    before: np.ndarray, after: np.ndarray, reencoded: np.ndarray, faces: np.ndarray
) -> dict[str, Any]:
    """Outside-the-faces protection of one photo: ``faces`` is the union of the grown ovals.

    Passes at >= 38 dB, or within 1 dB of ``reencoded`` (the input re-encoded alone)."""
    out = ~faces
    db, ref = psnr(before, after, out), psnr(before, reencoded, out)
    if db is None:
        return {"values": {"outside_db": None, "reencode_db": ref}, "passed": {}}
    passed = db >= OUTSIDE_DB or (ref is not None and db >= ref - OUTSIDE_REENCODE_SLACK_DB)
    return {"values": {"outside_db": db, "reencode_db": ref}, "passed": {"outside": passed}}


def summarize(cases: list[dict[str, Any]], styles: list[str]) -> dict[str, dict[str, Any]]:
    """``{style: {metric: {"passed": k, "n": n, "rate": k/n|None}}}`` over scored cases (each
    a dict with ``style`` and ``passed``)."""
    out: dict[str, dict[str, Any]] = {}
    for s in styles:
        row: dict[str, Any] = {}
        for m in METRICS:
            got = [c["passed"][m] for c in cases if c["style"] == s and m in c["passed"]]
            k = int(sum(got))
            row[m] = {"passed": k, "n": len(got), "rate": (k / len(got)) if got else None}
        out[s] = row
    return out


def table(summary: dict[str, dict[str, Any]], title: str = "") -> str:
    """Markdown table: one row per style, one column per metric, ``rate (passed/n)``."""
    cols = [m for m in METRICS if any(summary[s][m]["n"] for s in summary)]
    lines = [f"**{title}**", ""] if title else []
    lines.append("| style | " + " | ".join(cols) + " |")
    lines.append("| --- |" + " --- |" * len(cols))
    for s, row in summary.items():
        cells = []
        for m in cols:
            c = row[m]
            cells.append("-" if not c["n"] else f"{100 * c['rate']:.0f}% ({c['passed']}/{c['n']})")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
