"""Faces: one small interface, ``locate(image_rgb) -> list[Face]``, over two detectors.

- ``mediapipe`` (default): MediaPipe's short-range BlazeFace (run by onnxruntime over whole
  levels) over an image pyramid sized from the smallest face to find (:func:`min_face_for`),
  then FaceMesh (478 points, static image mode) on each face's padded crop, scaled so the face
  is ~``mesh_face_px`` wide.
- ``haar``: OpenCV's frontal-face Haar cascade; eyes and mouth are estimated from the box.
  A fallback only: it misses many drawn/bearded faces.

Every ``Face`` has eye centres and a mouth centre (from the mesh where it ran, else from the
detector), which is all the aligner needs; ``landmarks`` (478x2, image pixels) is None where no
mesh is available, and ``beardnet.faces.regions`` then falls back to a template face oval.
**The smallest face** to find in a photo is ``min_face_for(w, h, min_face_px, min_face_frac)``:
``min_face_px`` pixels, or ``min_face_frac`` of the photo's short side, whichever is larger
(the cost of finding faces grows with (photo size / smallest face)^2, so a fraction keeps
large photos as cheap as small ones). :func:`locate_scale` is how much smaller a photo may be
decoded for ``locate`` with faces of that size still found and meshed well; ``locate(image,
min_face_px=...)`` takes the smallest face in the given image's pixels and
``Face.scaled(factor)`` maps a face back to the full photo.

Locators are not thread-safe in MediaPipe; ``get_locator`` keeps one instance per process and
kind, each guarding its graphs with a lock.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

KINDS = ("mediapipe", "haar")
#: Default smallest face (px, larger side of the face box) and share of the photo's short side.
MIN_FACE_PX = 48
MIN_FACE_FRAC = 1 / 16
#: Smallest face (px in the image given to ``locate``) whose mesh still aligns well: the floor
#: of :func:`locate_scale`'s reduced decode.
MESH_MIN_PX = 48


def min_face_for(
    width: int, height: int, min_face_px: float = MIN_FACE_PX, min_face_frac: float = MIN_FACE_FRAC
) -> float:
    """The smallest face (px) to find in a ``width`` x ``height`` photo: ``min_face_px`` or
    ``min_face_frac`` of its short side, whichever is larger (at least 1)."""
    return max(1.0, float(min_face_px), float(min_face_frac) * min(int(width), int(height)))


def locate_scale(
    width: int,
    height: int,
    min_face_px: int = MIN_FACE_PX,
    min_face_frac: float = MIN_FACE_FRAC,
) -> float:
    """The largest downscale factor (>= 1) of a ``width`` x ``height`` photo at which its
    smallest faces (:func:`min_face_for`) are still found and meshed reliably: they keep
    ``MESH_MIN_PX`` pixels. Decode at ``1/factor`` (or less reduction: JPEG DCT scaling gives
    1/2, 1/4, 1/8), call ``locate(small, min_face_px=min_face_px * small_w / width)`` and map
    faces back with ``Face.scaled(width / small_w)``."""
    if width < 1 or height < 1:
        raise ValueError(f"photo size must be positive, got {width}x{height}")
    return max(1.0, min_face_for(width, height, min_face_px, min_face_frac) / MESH_MIN_PX)


@dataclass
class Face:
    """One face in image pixel coordinates.

    ``box`` is ``[x0, y0, x1, y1]``; ``left_eye``/``right_eye`` are the eyes on the image's left
    and right; ``mouth`` is the mouth centre; ``landmarks`` the 478 mesh points or None.
    """

    box: np.ndarray
    score: float
    left_eye: np.ndarray
    right_eye: np.ndarray
    mouth: np.ndarray
    landmarks: np.ndarray | None = None
    source: str = "mediapipe"
    extra: dict = field(default_factory=dict)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def size(self) -> float:
        """Face size in pixels (the larger box side), compared with ``min_face_px``."""
        return max(self.width, self.height)

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.right_eye - self.left_eye))

    def scaled(self, factor: float) -> Face:
        """This face with every coordinate multiplied by ``factor`` (e.g. from a reduced decode
        back to the full photo)."""
        k = float(factor)
        extra = {
            key: (np.asarray(v, np.float32) * k if key in _POINT_EXTRAS else v)
            for key, v in self.extra.items()
        }
        return Face(
            box=np.asarray(self.box, np.float32) * k,
            score=self.score,
            left_eye=np.asarray(self.left_eye, np.float32) * k,
            right_eye=np.asarray(self.right_eye, np.float32) * k,
            mouth=np.asarray(self.mouth, np.float32) * k,
            landmarks=None if self.landmarks is None else np.asarray(self.landmarks) * k,
            source=self.source,
            extra=extra,
        )

    def points(self) -> np.ndarray:
        """3x2 float32: left eye, right eye, mouth centre (the aligner's input)."""
        return np.stack([self.left_eye, self.right_eye, self.mouth]).astype(np.float32)


#: ``Face.extra`` entries that are points or boxes in image pixels (scaled by ``Face.scaled``).
_POINT_EXTRAS = ("keypoints", "det_box")


@runtime_checkable
class FaceLocator(Protocol):
    """Anything that finds faces in an RGB uint8 image."""

    kind: str

    def locate(self, image: np.ndarray, min_face_px: float | None = None) -> list[Face]:
        """Faces in ``image`` (HxWx3 RGB uint8), best score first; ``min_face_px`` (pixels of
        ``image``) overrides the locator's own smallest face for this call."""
        ...


_CACHE: dict[tuple, FaceLocator] = {}
_CACHE_LOCK = threading.Lock()


def get_locator(kind: str = "mediapipe", **kwargs) -> FaceLocator:
    """The process-wide locator of ``kind`` and settings (created on first use, once per
    process; keyword arguments such as ``min_face_px`` or ``min_score`` go to its constructor)."""
    if kind not in KINDS:
        raise ValueError(f"unknown face locator {kind!r}; choose one of {', '.join(KINDS)}")
    key = (os.getpid(), kind, tuple(sorted(kwargs.items())))
    with _CACHE_LOCK:
        loc = _CACHE.get(key)
        if loc is None:
            loc = _CACHE[key] = _make(kind, **kwargs)
    return loc


def _make(kind: str, **kwargs) -> FaceLocator:
    if kind == "mediapipe":
        from beardnet.faces.mediapipe_locator import MediaPipeLocator

        return MediaPipeLocator(**kwargs)
    from beardnet.faces.haar import HaarLocator

    return HaarLocator(**kwargs)


def locate(image: np.ndarray, kind: str = "mediapipe", **kwargs: Any) -> list[Face]:
    """Faces in an RGB uint8 image, using the process-wide locator of ``kind``."""
    return get_locator(kind, **kwargs).locate(image)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def nms(faces: list[Face], iou: float = 0.4) -> list[Face]:
    """Greedy non-maximum suppression, best score first; also drops boxes mostly inside a kept
    one (a tile that saw half a face)."""
    kept: list[Face] = []
    for f in sorted(faces, key=lambda f: -f.score):
        ok = True
        for k in kept:
            if box_iou(f.box, k.box) > iou or _inside(f.box, k.box) > 0.7:
                ok = False
                break
        if ok:
            kept.append(f)
    return kept


def _inside(a: np.ndarray, b: np.ndarray) -> float:
    """Share of box ``a``'s area that lies inside box ``b``."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = max(1e-9, (a[2] - a[0]) * (a[3] - a[1]))
    return float(ix * iy / area)


__all__ = [
    "KINDS",
    "MESH_MIN_PX",
    "MIN_FACE_FRAC",
    "MIN_FACE_PX",
    "Face",
    "FaceLocator",
    "box_iou",
    "get_locator",
    "locate",
    "locate_scale",
    "min_face_for",
    "nms",
]
