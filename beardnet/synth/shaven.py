"""Is a real face clean-shaven? A darkness + texture test of the beard zone against cheek skin.

Measured on the aligned canonical crop (:mod:`beardnet.faces.align`, 128 px) in grey levels:

- ``darkness``: median luminance of the lower beard zone (upper lip, chin and jaw below the
  mouth corners, lips and nose left out) over the median of the upper-cheek skin;
- ``texture``: the standard deviation of a difference of Gaussians (sigma 0.8 minus 2.0 px)
  in the same zone over that of the cheeks (hair adds fine contrast; smooth shaven skin does not).

A face carries facial hair when ``darkness < DARK_MAX`` or ``texture > TEXTURE_MIN`` or their
combined score is past ``SCORE_MIN``; thresholds were calibrated on the hand-labelled real set
(see :data:`CALIBRATION`). Faces that fail are not used as clean sources for composites.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from beardnet.faces import Face
from beardnet.faces.align import align, transform_points
from beardnet.faces.regions import FACE_OVAL, SUBNASALE
from beardnet.synth.realface import LIPS_OUTER, MOUTH_CORNERS, NOSE

#: Beard zone darker than this fraction of the cheek skin: facial hair.
DARK_MAX = 0.80
#: Beard-zone fine texture above this multiple of the cheeks': facial hair.
TEXTURE_MIN = 1.9
#: Combined score ``(1 - darkness) * 4 + (texture - 1)`` above this: facial hair.
SCORE_MIN = 1.6
CALIBRATION = "uncalibrated defaults"
CROP = 128


@dataclass(frozen=True)
class HairTest:
    """Result of :func:`facial_hair_test`."""

    darkness: float
    texture: float
    score: float
    hair: bool

    def as_dict(self) -> dict[str, float | bool]:
        return {"darkness": round(self.darkness, 4), "texture": round(self.texture, 4),
                "score": round(self.score, 4), "hair": self.hair}  # fmt: skip


def _fill(shape: tuple[int, int], polys: list[np.ndarray]) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    for p in polys:
        cv2.fillPoly(m, [np.round(p * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return m.astype(bool)


def zone_and_cheeks(face: Face, M: np.ndarray, size: int = CROP) -> tuple[np.ndarray, np.ndarray]:
    """``(beard_zone, cheeks)`` bool masks in the aligned crop of ``M``."""
    lm = transform_points(M, face.landmarks)
    oval = _fill((size, size), [lm[list(FACE_OVAL)]])
    holes = _fill((size, size), [lm[list(LIPS_OUTER)], lm[list(NOSE)]])
    holes = cv2.dilate(holes.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    yy, xx = np.mgrid[0:size, 0:size]
    sub_y = lm[SUBNASALE, 1]
    corners = lm[list(MOUTH_CORNERS)]
    mouth_y = float(corners[:, 1].mean())
    cx = float(corners[:, 0].mean())
    eye_y = float(lm[[33, 263], 1].mean())
    inner = cv2.erode(oval.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    zone = inner & ~holes & (yy > sub_y) & ((yy > mouth_y) | (np.abs(xx - cx) < abs(
        corners[1, 0] - corners[0, 0]) * 0.6))  # fmt: skip
    half = abs(corners[1, 0] - corners[0, 0])
    cheeks = (inner & ~holes & (yy > eye_y + 0.35 * (sub_y - eye_y)) & (yy < sub_y)
              & (np.abs(xx - cx) > 0.55 * half))  # fmt: skip
    return zone, cheeks


def facial_hair_test(image: np.ndarray, face: Face) -> HairTest | None:
    """Darkness/texture test of ``face`` (needs mesh landmarks); None when it cannot be run."""
    if face.landmarks is None:
        return None
    crop, M = align(image, face, CROP)
    zone, cheeks = zone_and_cheeks(face, M, CROP)
    if zone.sum() < 40 or cheeks.sum() < 20:
        return None
    g = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    dog = cv2.GaussianBlur(g, (0, 0), 0.8) - cv2.GaussianBlur(g, (0, 0), 2.0)
    lz, lc = float(np.median(g[zone])), float(np.median(g[cheeks]))
    darkness = lz / max(lc, 1.0)
    texture = float(dog[zone].std()) / max(float(dog[cheeks].std()), 0.3)
    score = (1 - darkness) * 4 + (texture - 1)
    hair = darkness < DARK_MAX or texture > TEXTURE_MIN or score > SCORE_MIN
    return HairTest(darkness, texture, score, bool(hair))
