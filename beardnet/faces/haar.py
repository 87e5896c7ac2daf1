"""OpenCV Haar-cascade face locator: the fallback (``--faces haar``).

Boxes come from ``haarcascade_frontalface_default.xml`` (shipped inside the OpenCV wheel). Eyes
and mouth are not detected: they are placed at fixed fractions of the box, measured from
MediaPipe's mesh points on the same faces (Haar boxes are square, from mid-forehead to just
below the mouth). No mesh, so ``landmarks`` is None and regions use the template oval.
Haar misses many bearded and drawn faces; prefer MediaPipe.
"""

from __future__ import annotations

import threading

import numpy as np

from beardnet.faces import Face, nms

#: Eye and mouth centres as fractions of a Haar box (x, y).
HAAR_LEFT_EYE = (0.32, 0.40)
HAAR_RIGHT_EYE = (0.68, 0.40)
HAAR_MOUTH = (0.50, 0.78)


class HaarLocator:
    """Frontal-face Haar cascade; thread-safe (one lock per instance)."""

    kind = "haar"

    def __init__(
        self,
        min_face_px: int = 48,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        max_side: int = 1600,
        cascade: str = "haarcascade_frontalface_default.xml",
    ) -> None:
        import cv2  # local: heavy import

        path = cv2.data.haarcascades + cascade
        self._clf = cv2.CascadeClassifier(path)
        if self._clf.empty():
            raise RuntimeError(f"cannot load Haar cascade {path}")
        self.min_face_px = int(min_face_px)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.max_side = int(max_side)
        self._lock = threading.Lock()

    def locate(self, image: np.ndarray, min_face_px: float | None = None) -> list[Face]:
        """Faces in ``image`` (HxWx3 RGB uint8), largest first; ``min_face_px`` overrides the
        locator's own for this call."""
        import cv2

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8 RGB, got {image.dtype} {image.shape}")
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        # Large photos: search a downscaled copy, but never so small that min_face_px < 24 px.
        scale = min(1.0, self.max_side / max(h, w))
        min_face = float(self.min_face_px if min_face_px is None else min_face_px)
        scale = max(scale, min(1.0, 24.0 / max(1.0, min_face)))
        if scale < 1.0:
            gray = cv2.resize(
                gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
            )
        gray = cv2.equalizeHist(gray)
        min_size = max(20, int(min_face * scale * 0.8))
        with self._lock:
            rects, _, weights = self._clf.detectMultiScale3(
                gray,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(min_size, min_size),
                outputRejectLevels=True,
            )
        faces: list[Face] = []
        for (x, y, bw, bh), wt in zip(np.asarray(rects).reshape(-1, 4), np.ravel(weights)):
            x0, y0, x1, y1 = np.array([x, y, x + bw, y + bh], np.float32) / scale
            box = np.array([x0, y0, x1, y1], np.float32)
            fw, fh = x1 - x0, y1 - y0

            def at(fx: float, fy: float, x0=x0, y0=y0, fw=fw, fh=fh) -> np.ndarray:
                return np.array([x0 + fx * fw, y0 + fy * fh], np.float32)

            faces.append(
                Face(
                    box=box,
                    score=float(1.0 / (1.0 + np.exp(-float(wt)))),
                    left_eye=at(*HAAR_LEFT_EYE),
                    right_eye=at(*HAAR_RIGHT_EYE),
                    mouth=at(*HAAR_MOUTH),
                    landmarks=None,
                    source="haar",
                )
            )
        return nms(faces, 0.3)
