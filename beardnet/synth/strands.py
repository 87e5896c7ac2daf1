"""The strand drawer shared by the cartoon beards and the beards drawn onto real photos.

A strand is a bent line from its root: :func:`strand_curves` turns roots, angles, lengths and
bends into polylines; :func:`rasterise` draws groups of them anti-aliased (OpenCV, 4 fractional
bits) into one uint8 coverage mask per group; :func:`paint` lays each group over a colour and
alpha layer with its own colour. Callers draw on a supersampled canvas and downsample afterwards,
so strands thinner than an output pixel still add up to hair-like texture.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np


def strand_curves(
    roots: np.ndarray,
    angles: np.ndarray,
    lengths: np.ndarray,
    bends: np.ndarray,
    points: int = 3,
) -> np.ndarray:
    """``(n, points, 2)`` polylines: from each root along ``angle`` for ``length``, bowed
    sideways by ``bend`` (a quadratic curve through the bent midpoint; any length unit)."""
    ca, sa = np.cos(angles), np.sin(angles)
    p0 = np.asarray(roots, np.float64)
    p2 = p0 + np.stack([ca, sa], 1) * lengths[:, None]
    p1 = (p0 + p2) / 2 + np.stack([-sa, ca], 1) * bends[:, None]
    if points == 3:
        return np.stack([p0, p1, p2], 1)
    t = np.linspace(0.0, 1.0, points)[None, :, None]
    c1 = 2 * p1 - (p0 + p2) / 2  # control point of the quadratic through p1 at t = 1/2
    return (1 - t) ** 2 * p0[:, None] + 2 * (1 - t) * t * c1[:, None] + t**2 * p2[:, None]


def to_fixed(px: np.ndarray) -> np.ndarray:
    """Pixel-centre coordinates -> OpenCV's 4-fractional-bit int32 points."""
    return np.round((np.asarray(px, np.float64) - 0.5) * 16).astype(np.int32)


def rasterise(
    fixed: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    shape: tuple[int, int],
    thick: int = 1,
) -> Iterator[tuple[int, np.ndarray]]:
    """``(group, uint8 mask)`` for every non-empty group of the ``(n, k, 2)`` fixed-point
    polylines (see :func:`to_fixed`), each drawn anti-aliased ``thick`` pixels wide."""
    for gi in range(n_groups):
        sel = fixed[groups == gi]
        if not len(sel):
            continue
        m = np.zeros(shape, np.uint8)
        cv2.polylines(m, list(sel), False, 255, thick, cv2.LINE_AA, shift=4)
        yield gi, m


def paint(
    col: np.ndarray,
    alpha: np.ndarray,
    masks: Iterator[tuple[int, np.ndarray]],
    colours: Sequence[np.ndarray],
    opacity: float,
    blur: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Lay each group's mask (scaled to ``opacity``) over ``col``/``alpha`` in its colour
    ``colours[group]`` (a colour or an image); returns the new ``(col, alpha)``."""
    col = np.array(col, dtype=np.result_type(col, np.float32), copy=True)
    alpha = np.array(alpha, dtype=np.result_type(alpha, np.float32), copy=True)
    for gi, m in masks:
        c = np.asarray(colours[gi])
        if blur > 0:  # the blur spreads the mask: work on the whole canvas
            a = cv2.GaussianBlur(m.astype(np.float32) * (opacity / 255.0), (0, 0), blur)
            col[...] = col * (1 - a[..., None]) + c * a[..., None]
            alpha[...] = alpha + a * (1 - alpha)
            continue
        # only pixels under the mask change (a = 0 leaves values exact): work on those alone,
        # with the same arithmetic per pixel as over the whole canvas
        idx = np.flatnonzero(m)
        if not idx.size:
            continue
        a = m.reshape(-1)[idx].astype(np.float32) * (opacity / 255.0)
        col_f = col.reshape(-1, col.shape[-1])
        alpha_f = alpha.reshape(-1)
        cc = c.reshape(-1, c.shape[-1])[idx] if c.ndim == 3 else c
        col_f[idx] = col_f[idx] * (1 - a[:, None]) + cc * a[:, None]
        alpha_f[idx] = alpha_f[idx] + a * (1 - alpha_f[idx])
    return col, alpha
