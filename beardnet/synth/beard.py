"""Cartoon beards: the zone of each style on a :class:`FaceParams` face and its strand layer.

The strands themselves are drawn by :mod:`beardnet.synth.strands`, shared with the beards drawn
onto real photos (:mod:`beardnet.synth.composite`).
"""

from __future__ import annotations

import numpy as np

from beardnet.categories import DEFAULT_CATEGORIES
from beardnet.synth import strands
from beardnet.synth.canvas import SUPERSAMPLE, _Canvas, _ellipse_d, _noise
from beardnet.synth.face import _face_d
from beardnet.synth.params import FaceParams


def _beard_zone_d(p: FaceParams, u, v, category: str, wave: tuple[float, float] = (0.0, 0.0)):
    """Signed distance of the zone where a beard of ``category`` grows (face-local units)."""
    du = np.abs(u - 0.5)
    v = v + wave[0] * np.sin(u * 60.0 + wave[1]) + 0.5 * wave[0] * np.sin(u * 137.0 + 2 * wave[1])
    d_env = _face_d(p, u, v, 0.012, 0.035)
    top_c = p.nose_y + 0.022
    if category == "full_beard":
        b = np.clip(top_c - 1.5 * np.maximum(du - 0.07, 0), p.beard_sideburn, top_c)
        return np.maximum(d_env, b - v)
    if category == "stubble":
        b = np.clip(top_c - 1.3 * np.maximum(du - 0.07, 0), p.beard_sideburn + 0.07, top_c)
        b = b + 0.03 * np.clip((du - 0.06) / 0.05, 0, 1)
        return np.maximum(_face_d(p, u, v, 0.0, 0.006), b - v)
    if category == "goatee":
        gy = p.mouth_y + 0.05
        d_g = _ellipse_d(u, v, 0.5, gy, p.goatee_w, p.chin + 0.035 - gy + 0.01)
        return np.maximum(np.maximum(d_env, top_c - v), d_g)
    if category == "mustache":
        mw = p.mustache_w
        t = np.clip(du / mw, 0, 1)
        yc = p.mouth_y - p.upper_lip - 0.011 + 0.032 * t**2
        th = 0.017 * np.sqrt(1 - t**2) + 0.007
        return np.maximum(np.abs(v - yc) - th, du - mw)
    raise KeyError(f"unknown category {category!r}; known: {', '.join(DEFAULT_CATEGORIES)}")


#: Strand opacity and brightness tones (relative to the beard colour) of bearded styles. Strands
#: contrast with the under-layer enough to read as hair, not so much that the face detector
#: stops seeing a face (measured: crisp high-contrast strands cut the MediaPipe hit rate).
STRAND_ALPHA = 0.6
BEARD_TONES = (0.55, 0.8, 1.0, 1.3)
FILL_GAIN = 1.0
STRAND_THICK = 1.0
STRAND_BLUR = 0.0

_STRANDS = {
    # density (strands per supersampled zone pixel at 128 px), length range (face-local units)
    "full_beard": (0.55, (0.014, 0.036)),
    "goatee": (0.55, (0.012, 0.03)),
    "mustache": (0.7, (0.01, 0.024)),
    "stubble": (0.13, (0.002, 0.005)),
}


def _beard_layer(
    p: FaceParams, cv: _Canvas, category: str, rng: np.random.Generator, face_cov, shade: np.ndarray
):
    """(colour image, alpha) of the beard; alpha is 0 exactly outside the face mask."""
    u, v = cv.u, cv.v
    H, W = u.shape
    stubble = category == "stubble"
    wave = (float(rng.uniform(0.003, 0.008)), float(rng.uniform(0, 2 * np.pi)))
    d_zone = _beard_zone_d(p, u, v, category, wave)
    feather = 0.012 if stubble else 0.014
    zone_soft = cv.cov(d_zone + feather, feather)  # fades in from the zone edge
    col = np.empty((H, W, 3), np.float32)
    col[:] = p.beard
    alpha = zone_soft * (0.08 if stubble else p.beard_fill * FILL_GAIN)
    # a dense under-layer with some texture
    tex = _noise(rng, H, W, (max(1, int(0.003 * cv.ppu)), max(3, int(0.02 * cv.ppu))))
    col *= np.clip(0.85 + 0.2 * tex, 0.5, 1.3)[..., None]
    if stubble:
        col = col * 0.55 + p.skin * 0.25  # a grey shadow rather than hair colour
    # strands: roots sampled inside the zone
    density, (lmin, lmax) = _STRANDS[category]
    inside = np.flatnonzero(d_zone.ravel() < 0.5 * feather)
    n_zone = inside.size
    scale = (cv.ppu / (128 * SUPERSAMPLE)) ** 2  # keep strands per face-area constant
    n = int(n_zone * density / max(scale, 1e-6) * 1.0)
    n = int(min(n, n_zone * 2, 20000))
    if n > 0 and n_zone > 0:
        pick = inside[rng.integers(0, n_zone, n)]
        ru = u.ravel()[pick].astype(np.float64) + rng.uniform(-0.5, 0.5, n) / cv.ppu
        rv = v.ravel()[pick].astype(np.float64) + rng.uniform(-0.5, 0.5, n) / cv.ppu
        # thinner near the zone edge
        keep = rng.uniform(0, 1, n) < np.clip(0.5 - d_zone.ravel()[pick] / (2 * feather), 0, 1)
        ru, rv = ru[keep], rv[keep]
        n = ru.size
        dx = ru - 0.5
        if category == "mustache":
            ang = (
                np.pi / 2
                - np.sign(dx) * np.clip(np.abs(dx) / p.mustache_w, 0, 1) * 1.0
                - np.sign(dx) * 0.25
            )
        else:
            ang = np.pi / 2 - 0.9 * dx  # downwards, a little towards the chin
            lip = (np.abs(dx) < p.mouth_w + 0.02) & (rv < p.mouth_y)
            ang = np.where(lip, np.pi / 2 - np.sign(dx) * 0.6, ang)
        ang = ang + rng.normal(0, 0.35, n)
        length = rng.uniform(lmin, lmax, n)
        curl = rng.normal(0, 0.25, n) * length
        curves = strands.strand_curves(np.stack([ru, rv], 1), ang, length, curl)
        fixed = strands.to_fixed(cv.to_px(curves.reshape(-1, 2)).reshape(n, 3, 2))
        thick = max(1, round(cv.ppu / (128 * SUPERSAMPLE) * (1.0 if stubble else STRAND_THICK)))
        tones = BEARD_TONES if not stubble else (0.5, 0.7)
        groups = rng.integers(0, len(tones), n)
        if stubble:
            colours = [p.beard * 0.6 * tone for tone in tones]
        else:
            colours = [np.clip(p.beard * t + (0.03 if t > 1 else 0.0), 0, 1) for t in tones]
        blur = STRAND_BLUR * cv.ppu / (128 * SUPERSAMPLE) if not stubble else 0.0
        masks = strands.rasterise(fixed, groups, len(tones), (H, W), thick)
        col, alpha = strands.paint(
            col, alpha, masks, colours, 0.4 if stubble else STRAND_ALPHA, blur
        )
    # lit like the face; never outside the face mask
    col = col * (0.35 + 0.75 * shade)[..., None]
    alpha = alpha * face_cov
    return col.astype(np.float32), alpha.astype(np.float32)
