"""Anatomical zones of a real face, from the FaceMesh landmarks of the *input* photo.

Every zone is a full-image bool mask (the real-photo evaluation works on photos of ordinary
size). Positions are taken in the face frame of :mod:`beardnet.faces.regions` (origin between
the eyes, ``u`` along the eye line, ``v`` towards the mouth, unit: the eye distance ``d``).

- ``eyes_nose`` (protected): the convex hulls of both eye contours, grown by 25 % around their
  centres, and of the nose (bridge, tip, alae, subnasale).
- ``lips`` (protected): inside the outer lip contour.
- ``oval``: MediaPipe's face-oval loop; ``grown_oval(width_frac)`` dilates it by that fraction
  of the face width (0.15: the boundary of "outside the face").
- style zones (where a style's hair grows; the lips are never part of one):
  ``mustache``: between the nose base and the upper lip, from mouth corner to mouth corner
  (each pushed out by 15 % of the mouth width);
  ``goatee``: the chin and around the mouth (hull of the mustache zone, the mouth corners
  pushed out by 25 %, and the chin points of the oval), inside the oval whose lower half is
  stretched by 10 % (beards grow past the mesh's jaw line);
  ``full_beard``: that stretched oval below a line that runs under the nose across the mouth's width
  (``|u| <= 0.5``) and rises to ``v = 0.35`` at the sideburns (``|u| = 1.2``), so the cheeks
  below the cheekbones, the jaw, the chin and the upper lip; ``stubble``: the full-beard zone.
- ``cheek``: bare cheek skin for reference (``0.45 <= |u| <= 0.85``, ``0.25 <= v <= 0.45``
  inside the oval, away from eyes and nose), above every style's zone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from beardnet.faces import Face
from beardnet.faces.regions import FACE_OVAL, SUBNASALE, from_frame, to_frame

ADDITION_STYLES = ("stubble", "mustache", "goatee", "full_beard")
#: The zone of each facial-hair label (the label's own hair, for removal).
ZONE_OF = {"stubble": "full_beard", "mustache": "mustache", "goatee": "goatee"}
ZONE_OF["full_beard"] = "full_beard"

RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 97, 326, 129, 358, 64, 294, 48, 278)
NOSE_BASE = (98, 97, 2, 326, 327)
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER += (375, 321, 405, 314, 17, 84, 181, 91, 146)
UPPER_LIP = LIPS_OUTER[:11]  # corner 61 ... corner 291 along the top
MOUTH_CORNERS = (61, 291)
CHIN = (378, 400, 377, 152, 148, 176, 149)
EYE_GROW = 1.25
CHIN_EXTEND = 0.1  # the lower half of the oval stretched by this for the hair zones
FULL_TOP_FLAT = 0.5  # |u| under which the full-beard line runs just under the nose
SIDEBURN_U, SIDEBURN_V = 1.2, 0.35
CHEEK_U, CHEEK_V = (0.45, 0.85), (0.25, 0.45)


@dataclass
class FaceZones:
    """The masks of one face (full-image bool arrays) and its size in pixels."""

    width: float
    eye_distance: float
    eyes_nose: np.ndarray
    lips: np.ndarray
    oval: np.ndarray
    mustache: np.ndarray
    goatee: np.ndarray
    full_beard: np.ndarray
    cheek: np.ndarray

    def style_zone(self, style: str) -> np.ndarray:
        """The zone where ``style`` (an addition style or a facial-hair label) grows."""
        return getattr(self, ZONE_OF.get(style, style))

    def grown_oval(self, width_frac: float) -> np.ndarray:
        """The face oval dilated by ``width_frac`` of the face width."""
        return dilate(self.oval, width_frac * self.width)

    def lower_face(self) -> np.ndarray:
        """Below the nose: the full-beard zone and the lips."""
        return self.full_beard | self.lips


def _fill(shape: tuple[int, ...], poly: np.ndarray) -> np.ndarray:
    import cv2

    m = np.zeros(shape[:2], np.uint8)
    q = np.round(np.asarray(poly, np.float64) * 16).astype(np.int32)
    cv2.fillPoly(m, [q], 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


def _hull(pts: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.convexHull(np.asarray(pts, np.float32)).reshape(-1, 2)


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels (Euclidean)."""
    import cv2

    if radius <= 0:
        return mask.copy()
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    return dist <= radius


def erode(mask: np.ndarray, radius: float) -> np.ndarray:
    """``mask`` shrunk by ``radius`` pixels (Euclidean)."""
    import cv2

    if radius <= 0:
        return mask.copy()
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    return dist > radius


def face_zones(face: Face, shape: tuple[int, ...]) -> FaceZones:
    """The zones of a face with a mesh (``face.landmarks`` 478x2); ValueError without one."""
    lm = face.landmarks
    if lm is None or len(lm) <= max(FACE_OVAL):
        raise ValueError("face has no FaceMesh landmarks")
    lm = np.asarray(lm, np.float64)
    P = lambda idx: lm[list(idx)]
    oval_poly = P(FACE_OVAL)
    oval = _fill(shape, oval_poly)
    # Beards grow past the mesh's jaw line: the zones' oval reaches CHIN_EXTEND lower.
    ouv = to_frame(face, oval_poly)
    cv = float(ouv[:, 1].mean())
    ouv[:, 1] = np.where(ouv[:, 1] > cv, cv + (ouv[:, 1] - cv) * (1 + CHIN_EXTEND), ouv[:, 1])
    hair_oval = _fill(shape, from_frame(face, ouv))
    width = float(np.ptp(oval_poly[:, 0]))
    eyes = np.zeros(shape[:2], bool)
    for idx in (RIGHT_EYE, LEFT_EYE):
        pts = P(idx)
        c = pts.mean(axis=0)
        eyes |= _fill(shape, _hull(c + (pts - c) * EYE_GROW))
    nose = _fill(shape, _hull(P(NOSE)))
    lips = _fill(shape, P(LIPS_OUTER))
    # Mustache: nose base down to the upper lip, corners pushed out.
    ml, mr = lm[MOUTH_CORNERS[0]], lm[MOUTH_CORNERS[1]]
    out_l, out_r = ml + 0.15 * (ml - mr), mr + 0.15 * (mr - ml)
    base = P(NOSE_BASE)
    if np.linalg.norm(base[0] - ml) > np.linalg.norm(base[-1] - ml):
        base = base[::-1]
    mustache_poly = np.concatenate([[out_l], base, [out_r], P(UPPER_LIP)[::-1]])
    mustache = _fill(shape, mustache_poly) & ~lips & ~nose
    # Goatee: hull of the mustache zone, wider corners and the chin; inside the oval.
    gl, gr = ml + 0.25 * (ml - mr), mr + 0.25 * (mr - ml)
    goatee = _fill(shape, _hull(np.concatenate([mustache_poly, [gl, gr], P(CHIN)])))
    goatee &= hair_oval & ~lips & ~nose
    # Full beard: the oval below a line under the nose that rises to the sideburns.
    sub_v = float(to_frame(face, lm[SUBNASALE][None])[0, 1])
    u = np.linspace(-3.0, 3.0, 121)
    au = np.abs(u)
    rise = (sub_v - SIDEBURN_V) / (SIDEBURN_U - FULL_TOP_FLAT)
    top = np.where(au <= FULL_TOP_FLAT, sub_v, sub_v - rise * (au - FULL_TOP_FLAT))
    top = np.maximum(top, SIDEBURN_V - 0.1)
    below_uv = np.concatenate([np.stack([u, top], axis=1), [[3.0, 4.0], [-3.0, 4.0]]])
    below = _fill(shape, from_frame(face, below_uv))
    full = hair_oval & below & ~lips & ~nose & ~eyes
    # Cheek skin: a band on each cheek above every zone.
    cheek = np.zeros(shape[:2], bool)
    (u0, u1), (v0, v1) = CHEEK_U, CHEEK_V
    for s in (-1, 1):
        quad = np.array([[s * u0, v0], [s * u1, v0], [s * u1, v1], [s * u0, v1]])
        cheek |= _fill(shape, from_frame(face, quad))
    cheek &= oval & ~dilate(eyes | nose, 0.03 * width) & ~full
    return FaceZones(
        width=width,
        eye_distance=float(face.eye_distance),
        eyes_nose=eyes | nose,
        lips=lips,
        oval=oval,
        mustache=mustache,
        goatee=goatee,
        full_beard=full,
        cheek=cheek,
    )
