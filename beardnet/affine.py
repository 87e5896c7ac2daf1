"""2x3 affine matrices (OpenCV convention: ``[A | t]`` maps ``p`` to ``A p + t``), closed form.

The 2x2 inverse and determinant are written out rather than taken from ``np.linalg``: numpy's
LAPACK calls go through OpenBLAS, which hands even a 2x2 inverse to its thread pool, and the
pool's threads then busy-wait for more work (OpenBLAS's thread timeout) instead of sleeping.
Per-face code inverts a few of these per photo: in a plain process loop over the bench's scenes
that spinning cost ~45 ms of CPU per photo (a third of all CPU outside the network), taken from
the other workers when every core runs one. Ray workers (``OMP_NUM_THREADS=1``) never saw it.
"""

from __future__ import annotations

import numpy as np


def det(M: np.ndarray) -> float:
    """Determinant of the linear part of ``M`` (2x3 or 2x2)."""
    a = np.asarray(M, np.float64)
    return float(a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0])


def scale_of(M: np.ndarray) -> float:
    """Output pixels per input pixel of a similarity ``M`` (sqrt of ``|det|``)."""
    return float(np.sqrt(abs(det(M))))


def invert(M: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (raises ``np.linalg.LinAlgError`` when singular)."""
    m = np.asarray(M, np.float64)
    d = det(m)
    if d == 0.0 or not np.isfinite(d):
        raise np.linalg.LinAlgError("singular affine matrix")
    Ai = np.array([[m[1, 1], -m[0, 1]], [-m[1, 0], m[0, 0]]]) / d
    return np.hstack([Ai, (-Ai @ m[:, 2])[:, None]])


def transform_points(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to Nx2 points (float64)."""
    m = np.asarray(M, np.float64)
    p = np.asarray(pts, np.float64)
    return np.stack(
        [
            p[..., 0] * m[0, 0] + p[..., 1] * m[0, 1] + m[0, 2],
            p[..., 0] * m[1, 0] + p[..., 1] * m[1, 1] + m[1, 2],
        ],
        axis=-1,
    )
