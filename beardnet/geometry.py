"""The canonical face crop: where eyes and mouth sit in every aligned crop.

Shared contract between the synthetic renderer (training crops are drawn in this frame), the
aligner (real photos are warped into it) and the model (trained on it). Coordinates are
fractions of the crop side; "left" is the eye on the image's left.
"""

from __future__ import annotations

import numpy as np

#: (x, y) as fractions of the crop size.
CANONICAL_LEFT_EYE: tuple[float, float] = (0.35, 0.36)
CANONICAL_RIGHT_EYE: tuple[float, float] = (0.65, 0.36)
CANONICAL_MOUTH: tuple[float, float] = (0.50, 0.66)

DEFAULT_CROP_SIZE = 128


def canonical_points(size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """3x2 float32 array: left eye, right eye, mouth centre, in pixels of a ``size`` crop."""
    return (
        np.array([CANONICAL_LEFT_EYE, CANONICAL_RIGHT_EYE, CANONICAL_MOUTH], dtype=np.float32)
        * size
    )
