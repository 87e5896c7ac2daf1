"""Does the default face detector find the synthetic faces? (issue 2, item 8)

MediaPipe FaceDetection, full range (``model_selection=1``), ``min_detection_confidence=0.5``,
run on each 128 px crop padded into a larger canvas (the crop in the middle of a
``pad_to`` square filled with the crop's edge colours), as the transform job sees faces inside
larger photos rather than cut tightly at the cheeks.

Measured (identities 1000-1199, 1000 crops at 128 px, replicate-padded to 320 px, i.e. the face
about a quarter of the frame width): 99.6 % overall; none 100 %, stubble 100 %, mustache 100 %,
goatee 99.5 %, full_beard 98.5 %. The detector is scale-sensitive on drawn faces: padded to
256 px the same crops give 97.4 % (full_beard 93 %), to 384 px 99.6 % (ids 0-99), and the bare
128 px crop (face filling the frame, cut at the chin) only ~63 %, mostly full beards missed.
Dense high-contrast beard strands were what lowered the rate; the renderer's strand opacity
and beard extent are tuned for it (``beard.STRAND_ALPHA``, ``beard_sideburn``).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from beardnet.categories import DEFAULT_CATEGORIES


def pad_crop(img: np.ndarray, pad_to: int = 320) -> np.ndarray:
    """Centre ``img`` in a ``pad_to`` square, extending its border pixels outwards."""
    import cv2

    h, w = img.shape[:2]
    if pad_to <= max(h, w):
        return img
    top = (pad_to - h) // 2
    left = (pad_to - w) // 2
    return cv2.copyMakeBorder(
        img, top, pad_to - h - top, left, pad_to - w - left, cv2.BORDER_REPLICATE
    )


class Detector:
    """A MediaPipe full-range face detector (context manager)."""

    def __init__(self, min_confidence: float = 0.5, model_selection: int = 1):
        import mediapipe as mp

        self._fd = mp.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=min_confidence
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fd.close()

    def detect(self, rgb: np.ndarray) -> list[tuple[float, list[float]]]:
        """(score, [x0, y0, x1, y1] in pixels) for each face in an RGB uint8 image."""
        h, w = rgb.shape[:2]
        res = self._fd.process(np.ascontiguousarray(rgb))
        out = []
        for d in res.detections or []:
            bb = d.location_data.relative_bounding_box
            box = [bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h]
            out.append((float(d.score[0]), box))
        return out


def detector_hit_rate(
    n_identities: int = 100,
    seed: int = 0,
    size: int = 128,
    pad_to: int = 320,
    categories: tuple[str, ...] = DEFAULT_CATEGORIES,
    min_confidence: float = 0.5,
) -> dict[str, Any]:
    """Fraction of synthetic crops in which MediaPipe finds a face, per category and overall.

    Identities ``seed .. seed + n_identities - 1`` are rendered in every category. A crop counts
    as a hit when a detection's centre lies inside the crop. ``pad_to=0`` runs on the bare crop.
    Returns ``{"per_category": {cat: rate}, "overall": rate, "n": crops, "misses": [(id, cat)],
    "mean_score": ...}``.
    """
    from beardnet.synth.render import render_identity

    hits = {c: 0 for c in categories}
    scores: list[float] = []
    misses: list[tuple[int, str]] = []
    with Detector(min_confidence) as det:
        for ident in range(seed, seed + n_identities):
            crops = render_identity(ident, size, categories)
            for cat in categories:
                img = crops[cat].image
                padded = pad_crop(img, pad_to) if pad_to else img
                off_y = (padded.shape[0] - size) // 2
                off_x = (padded.shape[1] - size) // 2
                found = False
                for score, (x0, y0, x1, y1) in det.detect(padded):
                    cx, cy = (x0 + x1) / 2 - off_x, (y0 + y1) / 2 - off_y
                    if 0 <= cx < size and 0 <= cy < size:
                        found = True
                        scores.append(score)
                        break
                if found:
                    hits[cat] += 1
                else:
                    misses.append((ident, cat))
    n = n_identities * len(categories)
    return {
        "per_category": {c: hits[c] / max(n_identities, 1) for c in categories},
        "overall": sum(hits.values()) / max(n, 1),
        "n": n,
        "misses": misses,
        "mean_score": float(np.mean(scores)) if scores else 0.0,
        "pad_to": pad_to,
        "size": size,
    }
