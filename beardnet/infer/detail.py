"""Paste one edited face back at the photo's native resolution, with native-resolution detail.

The network works on a ``S x S`` aligned crop (128 px). On a face 300-1000 px wide, warping its
output back gives the right colour and shape but 128-px detail: additions read as paint and the
person's own beard texture survives under a removal. :func:`paste_face` therefore splits the
change into two bands:

- **additions** on faces with FaceMesh landmarks (the default locator): hair strands drawn at
  native resolution where the network darkened the face, in the network's colour
  (:mod:`beardnet.infer.hair`); where it lightened the face (another style's hair taken
  away) its change is pasted as in a removal; its darkening itself is not pasted;
- otherwise a **low band**: the network's change (``edited - source``), warped back and
  feathered inside the beard zone (colour, shading, the outline of the beard), plus
- a **high band** (only where the face is larger than the crop, ``scale > 1.3`` image pixels
  per crop pixel), inside the network's own soft edit mask warped back:

  - additions without landmarks (Haar locator): sparse seeds smeared along a hair-flow field
    by oriented line kernels, applied as a modulation of the new colour;
  - removal (``none``): the photo's own band-pass detail (what remains of the old hair) is
    taken out and replaced by skin grain whose strength is measured on the same face's cheek
    skin, so the result reads as skin, not as a flat patch.

Lips are protected for every style: nothing of the change lands inside the outer lip contour
(FaceMesh points), so a beard never paints the lips white or brown. Everything is seeded from
the photo's key and face index (deterministic output); pixels outside the feathered zone are
copied bit for bit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from beardnet.affine import invert, scale_of
from beardnet.faces import Face
from beardnet.faces.align import feather_alpha
from beardnet.faces.regions import Zone

#: Below this many image pixels per crop pixel the network's own detail is native enough.
DETAIL_MIN_SCALE = 1.3
#: FaceMesh outer lip contour.
OUTER_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39,
              40, 185)
#: FaceMesh points of the cheek skin, left and right (below the eyes, above the beard line).
CHEEKS = ((117, 118, 101, 36, 205, 187, 123), (346, 347, 330, 266, 425, 411, 352))


@dataclass(frozen=True)
class StrandStyle:
    """How strands look for one style: length as a fraction of the crop (face frame),
    seed density, darkening amplitude and how much of the skin's own grain is covered."""

    length: float
    density: float
    amplitude: float
    cover: float


STRANDS: dict[str, StrandStyle] = {
    "stubble": StrandStyle(length=0.012, density=0.10, amplitude=0.55, cover=0.3),
    "mustache": StrandStyle(length=0.035, density=0.09, amplitude=0.65, cover=0.8),
    "goatee": StrandStyle(length=0.045, density=0.09, amplitude=0.65, cover=0.8),
    "full_beard": StrandStyle(length=0.055, density=0.10, amplitude=0.65, cover=0.9),
}
ANGLE_BINS = 10


def face_seed(key: str, index: int) -> int:
    """Deterministic seed of face ``index`` of the photo ``key``."""
    return int.from_bytes(hashlib.blake2b(f"{key}#{index}".encode(), digest_size=8).digest(), "big")


def _poly_mask(points: np.ndarray, shape: tuple[int, int], offset: tuple[int, int]) -> np.ndarray:
    import cv2

    m = np.zeros(shape, np.uint8)
    pts = np.round((points - np.asarray(offset, np.float64)) * 4).astype(np.int32)
    cv2.fillPoly(m, [pts], 1, lineType=cv2.LINE_8, shift=2)
    return m.astype(bool)


def _band(img: np.ndarray, sigma: float) -> np.ndarray:
    """``img`` minus its Gaussian blur (the detail finer than ``sigma``)."""
    import cv2

    return img - cv2.GaussianBlur(img, (0, 0), sigma)


def _line_kernel(angle: float, length: float) -> np.ndarray:
    import cv2

    n = max(3, int(np.ceil(length)) | 1)
    k = np.zeros((n, n), np.float32)
    c = (n - 1) / 2.0
    dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
    p0 = (round((c - dx) * 4), round((c - dy) * 4))
    p1 = (round((c + dx) * 4), round((c + dy) * 4))
    cv2.line(k, p0, p1, 1.0, 1, lineType=cv2.LINE_AA, shift=2)
    return k / max(float(k.sum()), 1e-6)


def strand_texture(
    shape: tuple[int, int],
    angle: np.ndarray,
    length_px: float,
    density: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Zero-mean, unit-std strand field of ``shape``: sparse seeds smeared along ``angle``
    (radians per pixel, image frame) over ``length_px`` pixels."""
    import cv2

    h, w = shape
    seeds = (rng.random((h, w)) < density).astype(np.float32) * rng.uniform(0.4, 1.0, (h, w))
    seeds = seeds.astype(np.float32)
    out = np.zeros((h, w), np.float32)
    wsum = np.zeros((h, w), np.float32)
    for b in range(ANGLE_BINS):
        a = np.pi * b / ANGLE_BINS
        d = np.abs(((angle - a + np.pi / 2) % np.pi) - np.pi / 2)  # angular distance mod pi
        wgt = np.clip(1.0 - d / (np.pi / ANGLE_BINS), 0.0, 1.0).astype(np.float32)
        if not wgt.any():
            continue
        out += wgt * cv2.filter2D(seeds, -1, _line_kernel(a, length_px))
        wsum += wgt
    out /= np.maximum(wsum, 1e-6)
    out -= cv2.GaussianBlur(out, (0, 0), max(1.5, length_px / 2))
    sd = float(out.std())
    return out / sd if sd > 1e-8 else out


def _flow_angle(M: np.ndarray, x0: int, y0: int, shape: tuple[int, int], S: int,
                style: str) -> np.ndarray:
    """Hair-flow angle (image frame, radians) per ROI pixel: down in the face frame, turning
    outwards towards the jaw; a mustache grows outwards and down from the philtrum."""
    h, w = shape
    ys, xs = np.mgrid[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    u = (M[0, 0] * xs + M[0, 1] * ys + M[0, 2]) / S - 0.5  # -0.5..0.5 across the crop
    tilt = np.clip(u * (2.2 if style == "mustache" else 1.2), -1.1, 1.1)
    # direction in the crop frame: (sin tilt, cos tilt) = down, leaning outwards
    dcx, dcy = np.sin(tilt), np.cos(tilt)
    Minv = invert(M)[:, :2]
    dx = Minv[0, 0] * dcx + Minv[0, 1] * dcy
    dy = Minv[1, 0] * dcx + Minv[1, 1] * dcy
    return np.arctan2(dy, dx).astype(np.float32)


def _cheek_grain(image: np.ndarray, face: Face, sigma: float) -> float | None:
    """Std of the band-pass detail on the face's cheek skin (grey), or None."""
    import cv2

    if face.landmarks is None or len(face.landmarks) < 468:
        return None
    vals = []
    for idx in CHEEKS:
        pts = np.asarray(face.landmarks)[list(idx), :2]
        x0, y0 = np.floor(pts.min(0)).astype(int) - 2
        x1, y1 = np.ceil(pts.max(0)).astype(int) + 3
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(image.shape[1], x1), min(image.shape[0], y1)
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)
        m = _poly_mask(pts, grey.shape, (x0, y0))
        if m.sum() >= 16:
            vals.append(float(_band(grey, sigma)[m].std()))
    return float(np.median(vals)) if vals else None


def paste_face(
    image: np.ndarray,
    edited_crop: np.ndarray,
    source_crop: np.ndarray,
    mask_crop: np.ndarray | None,
    M: np.ndarray,
    zone: Zone,
    feather_px: float,
    face: Face,
    style: str,
    seed: int,
) -> None:
    """Paste one face's edit into ``image`` (uint8 RGB, in place); see the module docstring."""
    import cv2

    h, w = image.shape[:2]
    zx0, zy0, zx1, zy1 = zone.box
    x0, y0, x1, y1 = max(0, zx0), max(0, zy0), min(w, zx1), min(h, zy1)
    if x1 <= x0 or y1 <= y0 or zone.area == 0:
        return
    S = edited_crop.shape[0]
    M = np.asarray(M, np.float64)
    M_roi = np.hstack([M[:, :2], (M[:, :2] @ np.array([x0, y0]) + M[:, 2])[:, None]])
    dsize = (x1 - x0, y1 - y0)
    inv = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP

    def back(crop: np.ndarray, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
        return cv2.warpAffine(crop, M_roi, dsize, flags=inv, borderMode=border, borderValue=0)

    alpha = feather_alpha(zone.mask[y0 - zy0 : y1 - zy0, x0 - zx0 : x1 - zx0], feather_px)
    alpha *= back(np.ones((S, S), np.float32))
    if face.landmarks is not None and len(face.landmarks) >= 468:
        lips = _poly_mask(np.asarray(face.landmarks)[list(OUTER_LIPS), :2], alpha.shape, (x0, y0))
        lips = cv2.dilate(lips.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        alpha[lips] = 0.0
    a = alpha[:, :, None]
    orig = image[y0:y1, x0:x1].astype(np.float32)
    delta = back(edited_crop.astype(np.float32) - source_crop.astype(np.float32))
    if style in STRANDS and face.landmarks is not None and len(face.landmarks) >= 468:
        # additions: hair drawn at native resolution where the network put the beard
        from beardnet.infer.hair import draw_added_hair, hair_guide, luma, network_colour

        px = 1.0 / max(scale_of(M), 1e-9)  # image px per crop px
        dl = cv2.GaussianBlur(luma(delta), (0, 0), max(0.5, 0.7 * px))
        lighten = np.clip(dl / 10.0, 0.0, 1.0) * alpha  # hair of another style taken away
        out = orig + lighten[:, :, None] * delta
        res = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        keep = lighten <= 0
        res[keep] = image[y0:y1, x0:x1][keep]
        image[y0:y1, x0:x1] = res
        guide = hair_guide(dl) * alpha
        colour = network_colour(edited_crop, source_crop)
        draw_added_hair(image, face, style, guide, (x0, y0, x1, y1), colour, seed)
        return
    out = orig + a * delta
    scale = scale_of(M)  # crop px per image px
    px_per_crop = 1.0 / max(scale, 1e-9)
    if px_per_crop > DETAIL_MIN_SCALE:
        if mask_crop is not None:
            m = back(np.asarray(mask_crop, np.float32).reshape(S, S))
        else:
            m = np.clip(np.abs(delta).mean(-1) / 24.0, 0, 1)
        m = (m * alpha)[:, :, None]
        rng = np.random.default_rng(seed)
        sigma = 0.7 * px_per_crop  # what the network could not draw
        if style == "none":
            grain = _cheek_grain(image, face, 1.0)
            out = out - m * _band(orig, sigma)
            if grain:
                noise = cv2.GaussianBlur(rng.standard_normal(alpha.shape).astype(np.float32),
                                         (0, 0), 0.6)
                noise /= max(float(_band(noise, 3.0).std()), 1e-6)
                out = out + m * (grain * 0.9) * noise[:, :, None]
        elif style in STRANDS:
            st = STRANDS[style]
            angle = _flow_angle(M, x0, y0, alpha.shape, S, style)
            length = max(2.0, st.length * S * px_per_crop)
            tex = strand_texture(alpha.shape, angle, length, st.density, rng)[:, :, None]
            out = out - m * st.cover * _band(orig, sigma)
            lum = np.clip(out, 1.0, 255.0)
            out = out - m * st.amplitude * 0.175 * lum * np.clip(tex, -2.5, 2.5)  # dark strands
    res = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    keep = alpha <= 0
    res[keep] = image[y0:y1, x0:x1][keep]
    image[y0:y1, x0:x1] = res
