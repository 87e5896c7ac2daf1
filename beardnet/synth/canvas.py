"""Pixel-grid helpers of the renderers: a supersampled canvas with face-local coordinates,
coverage from signed distances, alpha compositing, smooth noise and downsampling.

Face-local coordinates are fractions of the canonical crop side for the cartoon faces
(:mod:`beardnet.synth.params`) and eye-distance units of a real face for composites
(:mod:`beardnet.synth.realface`); a :class:`Canvas` only needs the affine map from them to pixels.
"""

from __future__ import annotations

from functools import cached_property

import cv2
import numpy as np

from beardnet.affine import scale_of

#: Supersampling factor: shapes are drawn at this multiple of the output size, then averaged.
SUPERSAMPLE = 2


def _ellipse_d(u, v, cx, cy, ax, ay):
    r = np.sqrt(((u - cx) / ax) ** 2 + ((v - cy) / ay) ** 2)
    return (r - 1.0) * min(ax, ay)


class Canvas:
    """A supersampled pixel grid with its face-local coordinates (u, v)."""

    def __init__(self, A: np.ndarray, width: int, height: int, ss: int = SUPERSAMPLE):
        # A: 2x3, face-local -> output pixel coordinates (continuous, pixel centres at i+0.5)
        self.A = np.asarray(A, np.float64)
        self.w, self.h, self.ss = width, height, ss
        self.shape = (height * ss, width * ss)
        # supersampled pixels per face-local unit
        self.ppu = scale_of(self.A) * ss

    @cached_property
    def _uv(self) -> tuple[np.ndarray, np.ndarray]:
        H, W = self.shape
        Ainv = cv2.invertAffineTransform(self.A)
        xs = (np.arange(W, dtype=np.float32) + 0.5) / self.ss
        ys = (np.arange(H, dtype=np.float32) + 0.5) / self.ss
        u = Ainv[0, 0] * xs[None, :] + Ainv[0, 1] * ys[:, None] + Ainv[0, 2]
        v = Ainv[1, 0] * xs[None, :] + Ainv[1, 1] * ys[:, None] + Ainv[1, 2]
        return u.astype(np.float32), v.astype(np.float32)

    @property
    def u(self) -> np.ndarray:
        """Face-local u of every supersampled pixel centre (computed on first use)."""
        return self._uv[0]

    @property
    def v(self) -> np.ndarray:
        """Face-local v of every supersampled pixel centre (computed on first use)."""
        return self._uv[1]

    def cov(self, d: np.ndarray, feather: float = 0.0) -> np.ndarray:
        """Coverage in [0, 1] from a signed distance (anti-aliased edge, optional feather)."""
        width = 1.0 + feather * self.ppu
        return np.clip(0.5 - d * self.ppu / width, 0.0, 1.0).astype(np.float32)

    def to_px(self, uv: np.ndarray) -> np.ndarray:
        """Face-local points (N, 2) -> supersampled pixel coordinates (N, 2)."""
        p = uv @ self.A[:, :2].T + self.A[:, 2]
        return p * self.ss


def _over(img: np.ndarray, col, a: np.ndarray) -> None:
    """In place: ``img = img*(1-a) + col*a`` (col a colour or an image)."""
    a3 = a[..., None]
    img *= 1.0 - a3
    img += np.asarray(col, np.float32) * a3


def _noise(rng: np.random.Generator, h: int, w: int, blur: tuple[int, int]) -> np.ndarray:
    n = rng.standard_normal((h, w)).astype(np.float32)
    n = cv2.blur(n, blur)
    s = float(n.std()) or 1.0
    return n / s


def _down(img: np.ndarray, ss: int) -> np.ndarray:
    if ss == 1:
        return img
    h, w = img.shape[0] // ss, img.shape[1] // ss
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


# the historical private names, used across the renderer modules
_Canvas = Canvas
