"""Face locator on MediaPipe's models: short-range BlazeFace over an image pyramid, FaceMesh per
face.

Detection. BlazeFace (MediaPipe's short-range model) finds a face reliably once it is about 28
px or more (on the synthetic scenes 99 % of faces at 32 px, 88 % at 24 px, 6 % at 16 px). So
the smallest face the job must find, ``m`` = :func:`beardnet.faces.min_face_for`
(``min_face_px``, or ``min_face_frac`` of the photo's short side, whichever is larger), sets
the work:

- the image is reduced once (area averaging) so that ``m`` becomes ``det_face_px`` (28) pixels,
  and halved again per pyramid level, until a level fits the detector's 128 px input;
- ``detector="map"`` (default): each level is scanned whole, in one onnxruntime call
  (:class:`beardnet.faces.blazeface.BlazeFaceMap`; the network is fully convolutional), and the
  smallest level is letterboxed to 128x128 as MediaPipe's graph does. On the 500 scene faces
  >= 48 px it found the same 491 as the windows at 21.7 instead of 37.4 ms CPU per photo
  (README, "Face location");
- ``detector="windows"``: MediaPipe's graph on ``128 x 128`` windows of each level overlapping
  by a quarter (``WINDOW_OVERLAP``: a face of up to 32 px of a level lies whole inside one
  window; a larger one is whole in a window of the next level), 18.4 calls per scene; a
  detection touching a window edge that is not an image edge is dropped;
- ``full_range`` (default: with ``windows`` only) also scans the smallest level with the
  full-range model, one call per photo: with windows it found strongly rolled faces and one
  dark scene face the windows missed; with ``map`` it found no face more (the same 491 scene
  faces, 91 of 93 real faces, rolled faces at 0-90 degrees) at 7 ms more CPU per photo;
- duplicates across levels are merged by NMS.

The work depends on how large the photo is relative to the smallest face, not on its pixel
count, so with ``min_face_frac`` a 24 MP photo costs about what a 1 MP one does.
:func:`beardnet.faces.locate_scale` tells a caller how much smaller it may decode the photo
before calling ``locate`` (the mesh then still sees the smallest face at ``MESH_MIN_PX`` pixels
or more).

Landmarks: :class:`beardnet.faces.mesh.FaceMesh` on each face (478 points; the face box becomes
the extent of the mesh's face oval). Where the mesh finds nothing (or something off the face)
the detector's six keypoints give eyes and mouth. A detection scoring under ``CONFIRM_SCORE`` is
kept only where the mesh finds a face in it that is not a flat blob.

MediaPipe graphs are not thread-safe: one ``MediaPipeLocator`` serialises its calls with a lock;
use ``beardnet.faces.get_locator`` for one instance per process.
"""

from __future__ import annotations

import threading

import numpy as np

from beardnet.faces import MIN_FACE_FRAC, MIN_FACE_PX, Face, min_face_for, nms
from beardnet.faces.blazeface import BlazeFaceMap, Detections, clear_of_cuts, tile_starts
from beardnet.faces.mesh import FLAT_FACE, FaceMesh, oval_variation
from beardnet.faces.mp_graph import detections_from, solution_output

#: Detections scoring below this are kept only where the mesh finds a face in them that is
#: not a flat blob (``beardnet.faces.mesh.FLAT_FACE``).
CONFIRM_SCORE = 0.75
#: The short-range detector's input side (px).
DETECT_INPUT = 128
#: Overlap of neighbouring detection windows, as a fraction of their side (see the docstring).
WINDOW_OVERLAP = 0.25
#: How the short-range detector scans a level: ``map`` runs it over the whole level in one
#: onnxruntime call (:mod:`beardnet.faces.blazeface`), ``windows`` calls MediaPipe's graph on
#: each overlapping 128 px window.
DETECTORS = ("map", "windows")
#: Pixels of the detector's input the smallest face is reduced to: 28 found as many scene faces
#: as 32 (0.984 of 500 faces >= 48 px) with 25 % fewer calls; 24 found 0.976 (README).
DET_FACE_PX = 28


class MediaPipeLocator:
    """Face locator on MediaPipe 0.10.21 ``mp.solutions`` (models ship inside the wheel)."""

    kind = "mediapipe"

    def __init__(
        self,
        min_score: float = 0.5,
        min_face_px: int = MIN_FACE_PX,
        min_face_frac: float = MIN_FACE_FRAC,
        det_face_px: float = DET_FACE_PX,
        overlap: float = WINDOW_OVERLAP,
        tile_px: int | None = None,
        mesh: bool = True,
        full_range: bool | None = None,
        detector: str = "map",
        mesh_face_px: int = 160,
        mesh_pad: float = 1.9,
        max_faces: int = 64,
    ) -> None:
        import mediapipe as mp  # local: heavy import

        if not 0.0 <= float(min_face_frac) < 1.0:
            raise ValueError(f"min_face_frac must be in [0, 1), got {min_face_frac}")
        if not 0.0 <= float(overlap) < 0.9:
            raise ValueError(f"overlap must be in [0, 0.9), got {overlap}")
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
        if float(det_face_px) <= 0:
            raise ValueError(f"det_face_px must be > 0, got {det_face_px}")
        self.min_score = float(min_score)
        self.min_face_px = int(min_face_px)
        self.min_face_frac = float(min_face_frac)
        # ``tile_px`` (older setting: detection window side for a ``min_face_px`` face, in image
        # pixels) maps onto the same ratio: det_face_px = min_face_px * DETECT_INPUT / tile_px.
        self.det_face_px = (
            float(det_face_px)
            if tile_px is None
            else self.min_face_px * DETECT_INPUT / float(tile_px)
        )
        self.overlap = float(overlap)
        self.use_mesh = bool(mesh)
        self.mesh_face_px = int(mesh_face_px)
        self.mesh_pad = float(mesh_pad)
        self.max_faces = int(max_faces)
        self.calls = 0  # detector calls so far (benchmarks)
        self._lock = threading.Lock()
        self.detector = detector
        self._map = BlazeFaceMap() if detector == "map" else None
        self._detector = (
            mp.solutions.face_detection.FaceDetection(
                model_selection=0, min_detection_confidence=self.min_score
            )
            if detector == "windows"
            else None
        )
        # Once per photo, on the level that fits one window: the full-range model, which finds
        # strongly rolled faces (60 degrees) that the short-range one misses in windows.
        if full_range is None:
            full_range = detector == "windows"
        self._full = (
            mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=self.min_score
            )
            if full_range
            else None
        )
        self._mesh = FaceMesh(mesh_face_px, mesh_pad) if self.use_mesh else None

    # ------------------------------------------------------------------ detection

    def windows(
        self, w: int, h: int, min_face_px: float | None = None
    ) -> list[tuple[float, list[tuple[int, int, int]]]]:
        """The detection plan for a ``w`` x ``h`` image: per pyramid level, its scale (level
        pixels per image pixel) and its windows ``(x0, y0, side)`` in level pixels (side -1:
        the whole level)."""
        base = self.min_face_px if min_face_px is None else min_face_px
        m = min_face_for(w, h, base, self.min_face_frac)
        scale = self.det_face_px / m
        plan = []
        while True:
            lw, lh = max(1, round(w * min(1.0, scale))), max(1, round(h * min(1.0, scale)))
            side = max(8, round(DETECT_INPUT * min(1.0, scale) / scale))
            if max(lw, lh) <= side or scale <= 0:
                plan.append((min(1.0, scale), [(0, 0, -1)]))
                break
            stride = max(1, round(side * (1.0 - self.overlap)))
            xs = tile_starts(lw, side, stride)
            ys = tile_starts(lh, side, stride)
            plan.append((min(1.0, scale), [(x0, y0, side) for y0 in ys for x0 in xs]))
            scale /= 2.0
        return plan

    def _detect(self, image: np.ndarray, min_face_px: float | None = None) -> list[Face]:
        if self._map is not None:
            return self._detect_map(image, min_face_px)
        return self._detect_windows(image, min_face_px)

    def _detect_map(self, image: np.ndarray, min_face_px: float | None) -> list[Face]:
        """The pyramid of ``windows``'s plan, each level scanned whole by ``BlazeFaceMap``; the
        level that fits one window is letterboxed to the detector's input (and seen by the
        full-range model too)."""
        import cv2

        h, w = image.shape[:2]
        base = self.min_face_px if min_face_px is None else min_face_px
        scale = self.det_face_px / min_face_for(w, h, base, self.min_face_frac)
        found: list[Face] = []
        level, level_scale = image, 1.0
        while True:
            lw, lh = max(1, round(w * scale)), max(1, round(h * scale))
            if scale != level_scale:
                src = level if scale < level_scale else image
                interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
                level, level_scale = cv2.resize(src, (lw, lh), interpolation=interp), scale
            last = max(lw, lh) <= DETECT_INPUT
            before = self._map.calls
            found += _faces(self._map.detect_whole(level) if last else self._map.detect(level),
                            scale, w, h, self.min_score)
            self.calls += self._map.calls - before
            if last:
                if self._full is not None:
                    self.calls += 1
                    dets = solution_output(self._full, np.ascontiguousarray(level), "detections")
                    found += _faces(detections_from(dets or [], lw, lh), scale, w, h,
                                    self.min_score)
                break
            scale /= 2.0
        return nms(found, 0.4)[: self.max_faces]

    def _detect_windows(self, image: np.ndarray, min_face_px: float | None = None) -> list[Face]:
        import cv2

        h, w = image.shape[:2]
        found: list[Face] = []
        level, level_scale = image, 1.0
        for scale, wins in self.windows(w, h, min_face_px):
            if scale != level_scale:
                lw, lh = max(1, round(w * scale)), max(1, round(h * scale))
                # halve from the previous level where possible (cheap), else from the image
                src = level if scale < level_scale else image
                level = cv2.resize(src, (lw, lh), interpolation=cv2.INTER_AREA)
                level_scale = scale
            lh_, lw_ = level.shape[:2]
            for x0, y0, side in wins:
                tile = level if side < 0 else level[y0 : y0 + side, x0 : x0 + side]
                th, tw = tile.shape[:2]
                self.calls += 1
                tile = np.ascontiguousarray(tile)
                dets = list(solution_output(self._detector, tile, "detections") or [])
                if side < 0 and self._full is not None:  # the smallest level: full-range too
                    self.calls += 1
                    dets += list(solution_output(self._full, tile, "detections") or [])
                # MediaPipe's short-range graph applies its own fixed 0.5 and ignores
                # ``min_detection_confidence``: ``_faces`` applies the locator's threshold
                d = detections_from(dets, tw, th)
                if side > 0:  # a face cut by the window edge: another window sees it whole
                    d = d.take(clear_of_cuts(d.boxes, x0 > 0, y0 > 0, x0 + tw < lw_,
                                             y0 + th < lh_, tw, th))
                found += _faces(d.shifted(x0, y0), scale, w, h, self.min_score)
        return nms(found, 0.4)[: self.max_faces]

    # ------------------------------------------------------------------ API

    def locate(self, image: np.ndarray, min_face_px: float | None = None) -> list[Face]:
        """Faces in ``image`` (HxWx3 RGB uint8), best score first; ``min_face_px`` (pixels of
        ``image``) overrides the locator's own for this call (e.g. on a reduced decode)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8 RGB, got {image.dtype} {image.shape}")
        with self._lock:
            faces = self._detect(image, min_face_px)
            if self._mesh is not None:
                faces = [self._mesh.refine(image, f) for f in faces]
                # A weak detection is a face only where the mesh finds one in it that is not a
                # flat blob (on the synthetic scenes every false face scored < CONFIRM_SCORE).
                faces = [f for f in faces if f.score >= CONFIRM_SCORE or (
                    f.landmarks is not None and oval_variation(image, f) >= FLAT_FACE)]
                # Two detections (a face and a loose box around it) can mesh onto one face.
                faces = nms(faces, 0.4)
        return faces

    def close(self) -> None:
        with self._lock:
            if self._detector is not None:
                self._detector.close()
            if self._full is not None:
                self._full.close()
            if self._mesh is not None:
                self._mesh.close()


def _faces(d: Detections, scale: float, w: int, h: int, min_score: float) -> list[Face]:
    """``Face``s in the pixels of a ``w`` x ``h`` image from detections on a level ``scale``
    times its size; those under ``min_score`` or (clipped to the image) under 2 px are dropped."""
    out = []
    for score, box, kp in zip(d.scores, d.boxes / scale, d.keypoints / scale, strict=True):
        if score < min_score:
            continue
        box[[0, 2]] = np.clip(box[[0, 2]], 0, w)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, h)
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            continue
        out.append(Face(box=box, score=float(score), left_eye=kp[0], right_eye=kp[1],
                        mouth=kp[3], landmarks=None, source="mediapipe",
                        extra={"keypoints": kp}))
    return out
