"""Is a real face clean-shaven? Darkness, redness and texture of the beard zone vs cheek skin.

Measured on the aligned canonical crop (:mod:`beardnet.faces.align`, 128 px):

- ``darkness``: median grey level of the lower beard zone (upper lip, chin and jaw below the
  mouth corners, lips and nose left out) over the median of the upper-cheek skin;
- ``redness``: median CIELAB a* (OpenCV 8-bit scale) of the zone minus the cheeks' (hair and
  stubble shadow are less red than skin);
- ``texture``: the standard deviation of a difference of Gaussians (sigma 0.8 minus 2.0 px) in
  the zone over that of the cheeks.

``score`` is a logistic combination (:data:`WEIGHTS`); ``score > SCORE_MIN`` means facial hair.
Calibrated on the 91 hand-labelled real faces >= 60 px (51 clean, 40 with facial hair, mostly
stubble) with leave-one-person-out validation: 82 % of the faces with facial hair are caught,
59 % of the clean faces pass, and 81 % of the faces that pass are really clean (darkness +
texture alone: 68 % / 25 % / 50 %). Faint stubble on small face chips is what it misses. Faces
that fail are not used as clean sources for composites; where a hand label exists it decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from beardnet.affine import transform_points
from beardnet.faces import Face
from beardnet.faces.align import align
from beardnet.faces.regions import FACE_OVAL, SUBNASALE
from beardnet.synth.realface import LIPS_OUTER, MOUTH_CORNERS, NOSE

#: Logistic weights: score = bias + sum(weight * feature).
WEIGHTS = {"bias": 2.127, "darkness": -3.806, "redness": -0.215, "texture": 0.201}
#: Score above this: facial hair.
SCORE_MIN = -0.5
CROP = 128


@dataclass(frozen=True)
class HairTest:
    """Result of :func:`facial_hair_test`."""

    darkness: float
    redness: float
    texture: float
    score: float
    hair: bool

    def as_dict(self) -> dict[str, float | bool]:
        return {"darkness": round(self.darkness, 4), "redness": round(self.redness, 4),
                "texture": round(self.texture, 4),
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
    a_star = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB)[..., 1].astype(np.float32)
    dog = cv2.GaussianBlur(g, (0, 0), 0.8) - cv2.GaussianBlur(g, (0, 0), 2.0)
    lz, lc = float(np.median(g[zone])), float(np.median(g[cheeks]))
    darkness = lz / max(lc, 1.0)
    redness = float(np.median(a_star[zone]) - np.median(a_star[cheeks]))
    texture = float(dog[zone].std()) / max(float(dog[cheeks].std()), 0.3)
    w = WEIGHTS
    score = (w["bias"] + w["darkness"] * darkness + w["redness"] * redness
             + w["texture"] * texture)  # fmt: skip
    return HairTest(darkness, redness, texture, score, bool(score > SCORE_MIN))
