"""Draw a beard of hair strands onto a real photo, at the photo's own resolution.

:func:`draw_beard` works on the lower-face box of one face (:class:`RealFace`), on two grids in
the face frame: the smooth layers on the photo's own pixels (:func:`field_supersample`: twice as
fine for small faces), the strands on a canvas 2-4x finer (:func:`supersample_for`):

1. a density field (:mod:`beardnet.synth.hairzones`) gives where hair grows and how densely;
2. a thin under-layer (hair colour, fine grain) fills between strands;
3. strands (:mod:`beardnet.synth.strands`, shared with the cartoon faces) are rooted by the
   density, follow the face's hair flow, taper towards the tip and vary in tone; each tone
   group's strands are rasterised on the fine canvas and area-averaged onto the layer grid,
   then laid over the under-layer and lit by the face's own lighting map;
4. everything is clipped to the face oval and off lips and nose, and a faint shadow darkens the
   skin under dense hair.

Pixels where neither hair nor shadow lands keep their exact original values
(:attr:`Drawn.changed` is the support). Only the strands need the fine canvas: computing the
smooth layers on it too cost 3-4x as much for the same picture (README, "Benchmarks").
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from beardnet.synth import strands
from beardnet.synth.canvas import Canvas, _down, _noise
from beardnet.synth.hairzones import BeardLook, clip_layers, density_field, flow_angles
from beardnet.synth.realface import RealFace

#: Relative brightness of strand tone groups; the last two are highlights.
TONES = (0.42, 0.62, 0.82, 1.0, 1.25, 1.6)
TONE_P = (0.18, 0.22, 0.22, 0.18, 0.12, 0.08)
MAX_STRANDS = 60000
#: Beard-mask threshold on the drawn hair's alpha.
MASK_THRESHOLD = 0.1
#: A strand's tip half is drawn at this coverage (its root half full).
TIP = 140 / 255
#: Amplitude of the under-layer's grain on the layer grid.
GRAIN = 0.25


@dataclass
class Drawn:
    """A beard drawn into a copy of the photo; layers are over ``roi`` (x0, y0, x1, y1)."""

    image: np.ndarray  # full photo, uint8 RGB, beard drawn
    alpha: np.ndarray  # hair alpha over the ROI, float32
    shadow: np.ndarray  # skin darkening over the ROI, float32
    roi: tuple[int, int, int, int]
    strands: int
    supersample: int

    @property
    def changed(self) -> np.ndarray:
        """Bool ROI mask of every pixel the beard may have changed (alpha or shadow > 0)."""
        return (self.alpha > 0) | (self.shadow > 0)

    def full(self, layer: np.ndarray) -> np.ndarray:
        """An ROI layer placed in a zero full-photo array."""
        out = np.zeros(self.image.shape[:2], layer.dtype)
        x0, y0, x1, y1 = self.roi
        out[y0:y1, x0:x1] = layer
        return out


def supersample_for(d_px: float) -> int:
    """Canvas factor for a face with eye distance ``d_px``: 4 for small faces, 2 for large."""
    return int(np.clip(np.ceil(240.0 / max(d_px, 1.0)), 2, 4))


def _roots(
    dens: np.ndarray, n: int, cv: Canvas, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` roots (u, v) sampled in proportion to ``dens`` (with sub-pixel jitter)."""
    flat = dens.ravel().astype(np.float64)
    cdf = np.cumsum(flat)
    idx = np.searchsorted(cdf, rng.uniform(0, cdf[-1], n))
    idx = np.clip(idx, 0, flat.size - 1)
    _H, W = dens.shape
    ys, xs = np.divmod(idx, W)
    px = np.stack([xs + rng.uniform(0, 1, n), ys + rng.uniform(0, 1, n)], 1) / cv.ss
    Ainv = cv2.invertAffineTransform(cv.A)
    uv = px @ Ainv[:, :2].T + Ainv[:, 2]
    return uv[:, 0], uv[:, 1]


def field_supersample(d_px: float) -> int:
    """Grid factor of the smooth layers (density, clip, lighting, under-layer, shadow): 2 for
    faces under 50 px of eye distance (their noise needs the room), else the photo's pixels."""
    return 2 if d_px < 50 else 1


def draw_beard(
    image: np.ndarray,
    rf: RealFace,
    look: BeardLook,
    rng: np.random.Generator,
    guide: np.ndarray | None = None,
    in_place: bool = False,
) -> Drawn:
    """Draw ``look`` onto face ``rf`` of the RGB uint8 ``image`` (see module docstring).
    ``guide`` (float 0..1 over ``rf.roi``, photo pixels) scales the hair density: where a
    network put the beard (:mod:`beardnet.infer.hair`). ``in_place``: draw into ``image``
    itself (``Drawn.image`` is then ``image``) instead of a copy."""
    x0, y0, x1, y1 = rf.roi
    w, h = x1 - x0, y1 - y0
    ss, sf = supersample_for(rf.d), field_supersample(rf.d)
    A = rf.A.copy()
    A[:, 2] -= (x0, y0)
    # smooth layers on a grid of ``sf`` x the photo's pixels; strands on ``ss`` x
    cv = Canvas(A, w, h, sf)
    H, W = cv.u.shape
    fine = cv.ppu * ss / sf  # strand-canvas pixels per face unit
    # the clip on a grid twice as fine, area-averaged: its anti-aliased edge stays within a
    # pixel of the oval
    clip = _down(clip_layers(rf, Canvas(A, w, h, 2 * sf)), 2)
    dens = density_field(rf, look, cv, rng) * (clip > 0.5)
    if guide is not None:
        g = np.asarray(guide, np.float32)
        dens = dens * (g if g.shape == (H, W) else
                       cv2.resize(g, (W, H), interpolation=cv2.INTER_LINEAR))  # fmt: skip
    light = rf.light if sf == 1 else cv2.resize(rf.light, (W, H), interpolation=cv2.INTER_LINEAR)
    # under-layer: hair colour with a fine grain, following the density
    grain = _noise(rng, H, W, (max(1, int(0.004 * cv.ppu)), max(2, int(0.02 * cv.ppu))))
    fill_a = look.fill * np.clip(dens, 0, 1) * np.clip(0.8 + GRAIN * grain, 0.3, 1.3)
    col = np.empty((H, W, 3), np.float32)
    col[:] = look.colour * 0.95
    alpha = fill_a.astype(np.float32)
    # strands
    area = float(dens.sum()) / (cv.ppu**2)
    n = int(min(MAX_STRANDS, look.density * area))
    if n > 0:
        ru, rv = _roots(dens, n, cv, rng)
        ang = flow_angles(rf, look, ru, rv) + rng.normal(0, look.spread, n)
        k = max(3, int(0.12 * cv.ppu))
        swirl = _noise(rng, H, W, (k, k))
        pu = np.clip(((ru * cv.A[0, 0] + rv * cv.A[0, 1] + cv.A[0, 2]) * sf).astype(int), 0, W - 1)
        pv = np.clip(((ru * cv.A[1, 0] + rv * cv.A[1, 1] + cv.A[1, 2]) * sf).astype(int), 0, H - 1)
        ang = ang + 0.45 * swirl[pv, pu]
        length = rng.uniform(*look.length, n) * rng.choice([1.0, 1.0, 1.0, 0.5], n)
        bend = rng.normal(0, 0.13, n) * length
        curves = strands.strand_curves(np.stack([ru, rv], 1), ang, length, bend, points=5)
        fixed = strands.to_fixed(cv.to_px(curves.reshape(-1, 2)).reshape(n, 5, 2) * (ss / sf))
        thick = max(1, round(fine * 0.0022))
        groups = rng.choice(len(TONES) + 1, n, p=_tone_p(look.grey))
        colours = [np.clip(look.colour * t, 0, 1) for t in TONES]
        colours.append(
            np.clip(np.array([0.62, 0.6, 0.58], np.float32) * float(rng.uniform(0.75, 1.05)), 0, 1)
        )
        shape = (H * ss // sf, W * ss // sf)
        full = strands.rasterise(fixed, groups, len(colours), shape, thick)
        root = dict(strands.rasterise(fixed[:, :3], groups, len(colours), shape, thick))
        # tips at 55 % coverage, the first half full; then area-averaged onto the layer grid
        tapered = ((gi, cv2.resize(cv2.max(cv2.convertScaleAbs(m, alpha=TIP), root[gi]), (W, H),
                                   interpolation=cv2.INTER_AREA))
                   for gi, m in full)  # fmt: skip
        col, alpha = strands.paint(col, alpha, tapered, colours, look.opacity)
    col = col * np.power(light, 0.9)[..., None]
    alpha = np.clip(alpha * clip, 0, 1).astype(np.float32)
    sig = max(0.7, 0.03 * cv.ppu)
    # the shadow fades with the clip (never onto lips or nose, whose clip edge is soft)
    shadow = look.shadow * cv2.GaussianBlur(np.clip(dens, 0, 1) * clip, (0, 0), sig) \
        * np.where(clip > 0.05, clip, 0.0)
    a_n = _down(alpha, sf)
    c_n = _down((col * alpha[..., None]).astype(np.float32), sf)
    s_n = _down(shadow.astype(np.float32), sf)
    a_n[a_n < 1e-3] = 0
    s_n[s_n < 1e-3] = 0
    orig = image[y0:y1, x0:x1].astype(np.float32) / 255.0
    tint = np.array([1.0, 0.97, 0.9], np.float32)  # shadowed skin goes slightly cool
    out = orig * (1 - s_n[..., None] * tint) * (1 - a_n[..., None]) + c_n
    out8 = np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
    changed = (a_n > 0) | (s_n > 0)
    res = image if in_place else image.copy()
    res[y0:y1, x0:x1] = np.where(changed[..., None], out8, image[y0:y1, x0:x1])
    return Drawn(res, a_n, s_n, rf.roi, n, ss)


def _tone_p(grey: float) -> np.ndarray:
    p = np.array(TONE_P + (0.0,), np.float64) * (1 - grey)
    p[-1] = grey
    return p / p.sum()
