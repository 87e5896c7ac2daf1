"""Faces: one small interface, ``locate(image_rgb) -> list[Face]``, over two detectors.

- ``mediapipe`` (default): MediaPipe FaceDetection full-range finds faces of any size (the image
  is also scanned in overlapping tiles when it is large, so small faces in big photos are
  found), then FaceMesh (478 points, static image mode) runs on each face's padded crop, scaled
  so the face is ~``mesh_face_px`` wide whatever its size in the photo.
- ``haar``: OpenCV's frontal-face Haar cascade; eyes and mouth are estimated from the box.
  A fallback only: it misses many drawn/bearded faces (see DESIGN.md §9).

Every ``Face`` has eye centres and a mouth centre (from the mesh where it ran, else from the
detector), which is all the aligner needs; ``landmarks`` (478x2, image pixels) is None where no
mesh is available, and ``beardnet.faces.regions`` then falls back to a template face oval.
Locators are not thread-safe in MediaPipe; ``get_locator`` keeps one instance per process and
kind, each guarding its graphs with a lock.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

KINDS = ("mediapipe", "haar")


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

    def points(self) -> np.ndarray:
        """3x2 float32: left eye, right eye, mouth centre (the aligner's input)."""
        return np.stack([self.left_eye, self.right_eye, self.mouth]).astype(np.float32)


@runtime_checkable
class FaceLocator(Protocol):
    """Anything that finds faces in an RGB uint8 image."""

    kind: str

    def locate(self, image: np.ndarray) -> list[Face]:
        """Faces in ``image`` (HxWx3 RGB uint8), best score first."""
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


def locate(image: np.ndarray, kind: str = "mediapipe", **kwargs) -> list[Face]:
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


__all__ = ["KINDS", "Face", "FaceLocator", "box_iou", "get_locator", "locate", "nms"]
