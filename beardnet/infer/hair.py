"""Additions at the photo's own resolution: hair strands drawn where the network put the beard.

The network works on a 128 px aligned crop. What it gives for an addition is trusted for *where*
the beard goes (its soft edit mask) and *what colour* it is (its output inside that mask); what
it cannot give on a 300-1000 px face is hair. :func:`draw_added_hair` therefore draws the beard
with the strand renderer of the composite pairs (:func:`beardnet.synth.composite.draw_beard`:
strands rooted by a density field on the face's own landmarks, following its hair flow, lit by
its own lighting, clipped off lips, nose and past the jaw), with

- the density following where the network *darkened* the face (its change warped back to the
  photo: no darkening, no hair; the network's edit mask is where it may edit, not where the
  hair is), and
- the colour taken from the network's output where it darkened (kept darker than the skin).

Where the network *lightened* the face (hair of another style taken away, e.g. the cheeks of a
full beard turned into a goatee) its change is pasted as it is (:mod:`beardnet.infer.detail`).

Deterministic per photo key and face (``seed``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from beardnet.faces import Face

#: Darkening (grey levels) at which the network's change counts as full hair density.
DARKEN_FULL = 12.0
#: How far the hair may grow past where the network darkened, in eye distances.
GUIDE_GROW = 0.12
#: Largest dilation radius (pixels) applied at the photo's own resolution by :func:`grow`.
GROW_GRID_RADIUS = 6
#: Fewest darkened crop pixels needed to read a colour from the network's output.
MIN_HAIR_PIXELS = 12


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of RGB (any scale, last axis)."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def hair_guide(luma_change: np.ndarray) -> np.ndarray:
    """Hair density 0..1 from the network's change of luma (grey levels, any frame): how much
    it darkened each pixel, full at :data:`DARKEN_FULL` levels."""
    return np.clip(-np.asarray(luma_change, np.float32) / DARKEN_FULL, 0.0, 1.0)


def network_colour(edited_crop: np.ndarray, source_crop: np.ndarray) -> np.ndarray | None:
    """Median RGB (0..1) of the network's output where it darkened the crop by at least
    :data:`DARKEN_FULL` levels, or None."""
    delta = edited_crop.astype(np.float32) - source_crop.astype(np.float32)
    m = hair_guide(luma(delta)) >= 1.0
    if int(m.sum()) < MIN_HAIR_PIXELS:
        return None
    return np.median(edited_crop[m].astype(np.float32), axis=0) / 255.0


def grow(guide: np.ndarray, radius: float) -> np.ndarray:
    """``guide`` dilated by a disc of ``radius`` pixels. The guide is the network's 128 px
    output warped up, so a large radius is applied on a grid ``f`` times coarser (each cell the
    maximum of its ``f x f`` pixels, so thin parts keep their strength), then linearly back up;
    ``f`` keeps the radius on that grid at most :data:`GROW_GRID_RADIUS`."""
    import cv2

    if round(radius) < 1:
        return guide
    h, w = guide.shape
    f = int(np.ceil(radius / GROW_GRID_RADIUS))
    small = guide
    if f > 1:
        small = cv2.dilate(guide, np.ones((f, f), np.uint8), anchor=(0, 0))[::f, ::f]
    r = max(1, round((radius - (f - 1) / 2) / f))  # the cell maximum already grew it
    out = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    if f == 1:
        return out
    # cell i covers pixels [i f, (i + 1) f): its centre is at pixel i f + (f - 1) / 2
    M = np.array([[1.0 / f, 0, -(f - 1) / (2 * f)], [0, 1.0 / f, -(f - 1) / (2 * f)]])
    return cv2.warpAffine(out, M, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def draw_added_hair(
    image: np.ndarray,
    face: Face,
    style: str,
    guide: np.ndarray,
    guide_box: tuple[int, int, int, int],
    colour: np.ndarray | None,
    seed: int,
) -> None:
    """Draw ``style`` hair onto ``image`` (uint8 RGB, in place) for ``face``.

    ``guide`` is the hair density 0..1 in photo pixels over ``guide_box`` (x0, y0, x1, y1);
    ``colour`` the network's hair colour (RGB 0..1; None: the person's own brow colour)."""
    from beardnet.synth.composite import draw_beard
    from beardnet.synth.hairzones import sample_look
    from beardnet.synth.realface import luminance, measure

    rng = np.random.default_rng(seed)
    rf = measure(image, face)
    look = sample_look(rf, style, rng, own_colour=True)
    if colour is not None:
        col = np.asarray(colour, np.float64)
        lim = float(luminance(rf.skin)) * 0.6  # hair reads as hair when darker than skin
        lum = float(luminance(col))
        if lum > lim:
            col = col * lim / max(lum, 1e-4)
        look = dataclasses.replace(look, colour=np.clip(col, 0.02, 1.0).astype(np.float32))
    x0, y0, x1, y1 = rf.roi
    g = np.zeros((y1 - y0, x1 - x0), np.float32)
    gx0, gy0, gx1, gy1 = guide_box
    ix0, iy0, ix1, iy1 = max(x0, gx0), max(y0, gy0), min(x1, gx1), min(y1, gy1)
    if ix1 > ix0 and iy1 > iy0:
        g[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = guide[iy0 - gy0 : iy1 - gy0,
                                                              ix0 - gx0 : ix1 - gx0]
    g = np.clip(g, 0.0, 1.0)
    if not g.any():
        return
    # the network marks a beard's core at 128 px; hair grows out to its edge: widen the guide by
    # a fraction of the eye distance (the style's own density field still bounds where it grows)
    g = grow(g, GUIDE_GROW * rf.d)
    draw_beard(image, rf, look, rng, guide=g, in_place=True)
