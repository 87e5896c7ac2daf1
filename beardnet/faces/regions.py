"""Face region (face oval) and beard zone of a located face, and their area ratio.

Both are polygons in image pixels, rasterised only inside their bounding box (a ``Zone``), so a
face in a 50 Mpx photo costs a face-sized mask, not a photo-sized one.

**Face frame.** Positions are measured in a frame attached to the face: origin at the midpoint
of the eyes, ``u`` along the eye line (image-left eye to image-right eye), ``v`` perpendicular
to it towards the mouth, both in units of the eye distance ``d``. In the canonical crop
(``beardnet.geometry``) the mouth sits at ``v = 1.0``.

**Face oval.** With a mesh: MediaPipe's 36-point face-oval loop (``FACE_OVAL``). Without one
(Haar, or where the mesh failed): a template ellipse in the face frame (centre ``v = 0.35``,
half-width 1.1 d, half-height 1.3 d: forehead to chin), which follows the face's roll and scale.

**Beard zone** (decision, documented): everything a beard can cover, and nothing above it:
the face oval grown by ``GROW`` (15 %, so the beard may spill past the jaw line onto the neck)
below a boundary that runs under the nose in the middle (``v = 0.62``, or just under the mesh's
subnasale point) and rises towards the ears (0.9 d per d of ``|u|`` beyond 0.15 d, never above
``v = 0.1``), so jaw, chin, upper lip, sideburns and the cheeks below the cheekbones are in, and
eyes, nose tip and cheekbones are out. Tuned on the synthetic renderer: the zone covers ~98 % of
its beard pixels (every category of 24 identities) with the mesh, ~99 % with the template. **The lips and the mouth are included**: a mustache overlaps the upper lip, and the
network's own soft mask (mask-and-blend output) decides which zone pixels actually change; the
zone is the outer limit where a change is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from beardnet.faces import Face

#: MediaPipe face-mesh face-oval loop (clockwise from the forehead top).
FACE_OVAL = (
    10,
    338,
    297,
    332,
    284,
    251,
    389,
    356,
    454,
    323,
    361,
    288,
    397,
    365,
    379,
    378,
    400,
    377,
    152,
    148,
    176,
    149,
    150,
    136,
    172,
    58,
    132,
    93,
    234,
    127,
    162,
    21,
    54,
    103,
    67,
    109,
)
SUBNASALE = 2  # mesh point under the nose tip

#: Template oval (no mesh), face-frame units.
TEMPLATE_CENTRE_V = 0.35
TEMPLATE_HALF_WIDTH = 1.1
TEMPLATE_HALF_HEIGHT = 1.3
#: Beard-zone upper boundary: v = TOP_V - TOP_SLOPE * max(0, |u| - TOP_FLAT).
TOP_V = 0.62
TOP_SLOPE = 0.9
TOP_FLAT = 0.15
TOP_MIN = 0.1  # never above this (just below the eye line), even at the sideburns
GROW = 0.15


@dataclass
class Zone:
    """A mask restricted to its bounding box: ``mask[r, c]`` is pixel ``(y0 + r, x0 + c)``."""

    x0: int
    y0: int
    mask: np.ndarray  # bool

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``, exclusive end."""
        return (self.x0, self.y0, self.x0 + self.mask.shape[1], self.y0 + self.mask.shape[0])

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def full(self, shape: tuple[int, ...]) -> np.ndarray:
        """The mask in a full ``shape[:2]`` bool image."""
        out = np.zeros(shape[:2], bool)
        x0, y0, x1, y1 = self.box
        out[y0:y1, x0:x1] = self.mask
        return out

    @staticmethod
    def from_full(mask: np.ndarray) -> Zone:
        """Crop a full-image bool mask to its bounding box."""
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            return Zone(0, 0, np.zeros((0, 0), bool))
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        return Zone(int(x0), int(y0), mask[y0:y1, x0:x1].astype(bool))


def face_frame(face: Face) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(origin, u_axis, v_axis, d)``: the face frame of the module docstring."""
    le = np.asarray(face.left_eye, np.float64)
    re = np.asarray(face.right_eye, np.float64)
    d = float(np.linalg.norm(re - le))
    if d < 1e-6:
        d = max(1.0, face.size * 0.4)
        ex = np.array([1.0, 0.0])
    else:
        ex = (re - le) / d
    ey = np.array([-ex[1], ex[0]])
    # v must point from the eyes towards the mouth (mirror-proof).
    if np.dot(np.asarray(face.mouth, np.float64) - (le + re) / 2, ey) < 0:
        ey = -ey
    return (le + re) / 2, ex, ey, d


def to_frame(face: Face, pts: np.ndarray) -> np.ndarray:
    """Image pixels -> face-frame (u, v)."""
    o, ex, ey, d = face_frame(face)
    p = np.asarray(pts, np.float64) - o
    return np.stack([p @ ex, p @ ey], axis=-1) / d


def from_frame(face: Face, uv: np.ndarray) -> np.ndarray:
    """Face-frame (u, v) -> image pixels."""
    o, ex, ey, d = face_frame(face)
    uv = np.asarray(uv, np.float64) * d
    return o + uv[..., :1] * ex + uv[..., 1:2] * ey


def face_oval_polygon(face: Face) -> np.ndarray:
    """Kx2 float32 face-oval polygon in image pixels (mesh loop, else template ellipse)."""
    if face.landmarks is not None and len(face.landmarks) > max(FACE_OVAL):
        return np.asarray(face.landmarks, np.float32)[list(FACE_OVAL)]
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    uv = np.stack(
        [TEMPLATE_HALF_WIDTH * np.cos(t), TEMPLATE_CENTRE_V + TEMPLATE_HALF_HEIGHT * np.sin(t)],
        axis=1,
    )
    return from_frame(face, uv).astype(np.float32)


def beard_zone_polygons(face: Face) -> tuple[np.ndarray, np.ndarray]:
    """``(grown_oval, below_line)`` polygons in image pixels; the zone is their intersection."""
    oval_uv = to_frame(face, face_oval_polygon(face))
    c = oval_uv.mean(axis=0)
    grown = c + (oval_uv - c) * (1.0 + GROW)
    top_v = TOP_V
    if face.landmarks is not None and len(face.landmarks) > SUBNASALE:
        # Just under the nose, as the mesh sees it (bounded to stay sensible).
        sub_v = float(to_frame(face, face.landmarks[SUBNASALE][None])[0, 1])
        top_v = float(np.clip(sub_v + 0.04, 0.45, 0.8))
    u = np.linspace(-3.0, 3.0, 61)
    top = np.maximum(TOP_MIN, top_v - TOP_SLOPE * np.maximum(0.0, np.abs(u) - TOP_FLAT))
    below = np.concatenate(
        [np.stack([u, top], axis=1), np.array([[3.0, 4.0], [-3.0, 4.0]])], axis=0
    )
    return (
        from_frame(face, grown).astype(np.float32),
        from_frame(face, below).astype(np.float32),
    )


def _raster(polys: list[np.ndarray], shape: tuple[int, ...], clip_to: np.ndarray) -> Zone:
    """Intersection of filled ``polys``, rasterised inside the bounding box of ``clip_to``."""
    import cv2

    h, w = shape[:2]
    x0 = int(np.clip(np.floor(clip_to[:, 0].min()), 0, w))
    y0 = int(np.clip(np.floor(clip_to[:, 1].min()), 0, h))
    x1 = int(np.clip(np.ceil(clip_to[:, 0].max()) + 1, 0, w))
    y1 = int(np.clip(np.ceil(clip_to[:, 1].max()) + 1, 0, h))
    if x1 <= x0 or y1 <= y0:
        return Zone(x0, y0, np.zeros((0, 0), bool))
    acc = None
    for p in polys:
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        q = np.round((p - [x0, y0]) * 16).astype(np.int32)  # 4 fractional bits
        cv2.fillPoly(m, [q], 1, lineType=cv2.LINE_8, shift=4)
        acc = m if acc is None else acc & m
    return Zone(x0, y0, acc.astype(bool))


def face_region(face: Face, shape: tuple[int, ...]) -> Zone:
    """The face-oval mask of ``face`` in an image of ``shape``."""
    oval = face_oval_polygon(face)
    return _raster([oval], shape, oval)


def beard_zone(face: Face, shape: tuple[int, ...]) -> Zone:
    """The beard-zone mask of ``face`` in an image of ``shape`` (see module docstring)."""
    grown, below = beard_zone_polygons(face)
    return _raster([grown, below], shape, grown)


def beard_zone_in_crop(face: Face, M: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(beard_zone, face_oval)`` bool masks in the aligned crop that ``M`` (2x3, image ->
    crop) maps the face into."""
    A, t = np.asarray(M, np.float64)[:, :2], np.asarray(M, np.float64)[:, 2]
    grown, below = beard_zone_polygons(face)
    oval = face_oval_polygon(face)
    tr = [(p.astype(np.float64) @ A.T + t).astype(np.float32) for p in (grown, below, oval)]
    box = np.array([[0, 0], [size - 1, size - 1]], np.float32)
    zone = _raster(tr[:2], (size, size), box)
    ov = _raster(tr[2:], (size, size), box)
    return zone.full((size, size)), ov.full((size, size))


def beard_area_ratio(beard: np.ndarray | Zone, face: np.ndarray | Zone) -> float:
    """Beard area / face area (the patent's area ratio); ``beard`` may be a soft mask."""
    b = float(beard.area if isinstance(beard, Zone) else np.asarray(beard, np.float64).sum())
    f = float(face.area if isinstance(face, Zone) else np.asarray(face, np.float64).sum())
    return b / f if f > 0 else 0.0
