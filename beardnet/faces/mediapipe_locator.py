"""MediaPipe face locator: short-range FaceDetection over an image pyramid, FaceMesh per face.

Detection. BlazeFace (MediaPipe's short-range model, 128x128 input) finds a face reliably once
it is about a quarter of its input wide: on the synthetic scenes 99 % of faces at 32 px of its
128 px input, 88 % at 24 px, 6 % at 16 px (the full-range model, 192x192 input and 2.7x the cost
per call, is no better per pixel of input). So the smallest face the job must find, ``m`` =
:func:`beardnet.faces.min_face_for` (``min_face_px``, or ``min_face_frac`` of the photo's short
side, whichever is larger), sets the work:

- the image is reduced once (area averaging) so that ``m`` becomes ``det_face_px`` (28) pixels,
  and halved again per pyramid level;
- each level is scanned in ``128 x 128`` windows overlapping by a quarter (``WINDOW_OVERLAP``:
  a face of up to 32 px of a level lies whole inside one window; a larger one cut by every
  window of its level is whole in a window of the next level, at half the size), until a level
  fits one window, which is then scanned whole. Overlaps of 1/2, 3/8, 5/16 and 1/4 found the
  same 491 of 500 scene faces >= 48 px and the same 91 of 93 real faces >= 60 px; a quarter
  needs 18.4 detector calls per scene against 27.7 at a half (README, "Face location");
- the level that fits one window is also scanned by the full-range model (one call per photo,
  a second opinion on the largest faces; ``full_range=False`` skips it: on the 500 scene faces
  490 found instead of 491 at 6-8 ms less CPU per photo, the same 91 of 93 real faces);
- a detection touching a window edge that is not an image edge is dropped (another window sees
  that face whole), and duplicates across windows and levels are merged by NMS.

The number of detector calls is about ``W*H / (4 m^2) * (det_face_px / 32)^2`` (plus a third for
the coarser levels): it depends on how large the photo is relative to the smallest face, not on
its pixel count, so with ``min_face_frac`` a 24 MP photo costs about what a 1 MP one does.
:func:`beardnet.faces.locate_scale` tells a caller how much smaller it may decode the photo
before calling ``locate`` (the mesh then still sees the smallest face at ``MESH_MIN_PX`` pixels
or more).

Landmarks: FaceMesh (static image mode, ``refine_landmarks=True``, 478 points) runs on a square
crop of the given image around each face, padded to ``mesh_pad`` times the face size, turned
upright by the detector's eye line and resized so the face is ``mesh_face_px`` wide. Points are
mapped back to image pixels, and the face box becomes the extent of the mesh's face oval. Where
the mesh finds nothing (or something off the face) the detector's six keypoints give eyes and
mouth.

MediaPipe graphs are not thread-safe: one ``MediaPipeLocator`` serialises its calls with a lock;
use ``beardnet.faces.get_locator`` for one instance per process.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from beardnet.affine import invert, transform_points
from beardnet.faces import MIN_FACE_FRAC, MIN_FACE_PX, Face, min_face_for, nms
from beardnet.faces.align import warp
from beardnet.faces.regions import FACE_OVAL

# Mesh indices: the subject's right eye (image left in an upright, unmirrored photo) corners,
# the left eye corners, mouth corners and inner lip midpoints.
RIGHT_EYE_IDX = (33, 133)
LEFT_EYE_IDX = (362, 263)
MOUTH_IDX = (61, 291, 13, 14)
#: Detections scoring below this are kept only where the mesh finds a face in them.
CONFIRM_SCORE = 0.75
#: The face box is the mesh's face oval grown in the face's own frame by these fractions of
#: its extent (sides, top, bottom): the oval stops short of the hairline, the face box (the
#: renderer's face mask, which ``min_face_px`` is measured against) does not. Median offsets
#: of the renderer's boxes from the oval's on 75 scene faces: 0.02, 0.14, 0.04.
BOX_GROW = (0.025, 0.14, 0.045)
#: The short-range detector's input side (px).
DETECT_INPUT = 128
#: Overlap of neighbouring detection windows, as a fraction of their side (see the docstring).
WINDOW_OVERLAP = 0.25
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
        full_range: bool = True,
        mesh_face_px: int = 160,
        mesh_pad: float = 1.9,
        max_faces: int = 64,
    ) -> None:
        import mediapipe as mp  # local: heavy import

        if not 0.0 <= float(min_face_frac) < 1.0:
            raise ValueError(f"min_face_frac must be in [0, 1), got {min_face_frac}")
        if not 0.0 <= float(overlap) < 0.9:
            raise ValueError(f"overlap must be in [0, 0.9), got {overlap}")
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
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=self.min_score
        )
        # Once per photo, on the level that fits one window: the full-range model, which finds
        # strongly rolled faces (60 degrees) that the short-range one misses.
        self._full = (
            mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=self.min_score
            )
            if full_range
            else None
        )
        self._mesh = (
            mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=0.5,  # the mesh confirms the face: 0.3 meshed noise
            )
            if self.use_mesh
            else None
        )

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
            xs = _starts(lw, side, stride)
            ys = _starts(lh, side, stride)
            plan.append((min(1.0, scale), [(x0, y0, side) for y0 in ys for x0 in xs]))
            scale /= 2.0
        return plan

    def _detect(self, image: np.ndarray, min_face_px: float | None = None) -> list[Face]:
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
                dets = list(_solution_output(self._detector, tile, "detections") or [])
                if side < 0 and self._full is not None:  # the smallest level: full-range too
                    self.calls += 1
                    dets += list(_solution_output(self._full, tile, "detections") or [])
                for det in dets:
                    # MediaPipe's short-range graph applies its own fixed 0.5 and ignores
                    # ``min_detection_confidence``: the locator's threshold is applied here
                    if (float(det.score[0]) if det.score else 0.0) < self.min_score:
                        continue
                    rb = det.location_data.relative_bounding_box
                    box = np.array(
                        [rb.xmin * tw, rb.ymin * th, (rb.xmin + rb.width) * tw,
                         (rb.ymin + rb.height) * th],
                        np.float32,
                    )
                    off = np.array([x0, y0], np.float32)
                    box += np.tile(off, 2)
                    if side > 0 and _touches_edge(box, x0, y0, tw, th, lw_, lh_):
                        continue  # a face cut by the window edge: another window sees it whole
                    box /= scale
                    kp = (
                        np.array(
                            [[k.x * tw, k.y * th] for k in det.location_data.relative_keypoints],
                            np.float32,
                        )
                        + off
                    ) / scale
                    box[[0, 2]] = np.clip(box[[0, 2]], 0, w)
                    box[[1, 3]] = np.clip(box[[1, 3]], 0, h)
                    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                        continue
                    found.append(
                        Face(
                            box=box,
                            score=float(det.score[0]) if det.score else 0.0,
                            left_eye=kp[0],
                            right_eye=kp[1],
                            mouth=kp[3],
                            landmarks=None,
                            source="mediapipe",
                            extra={"keypoints": kp},
                        )
                    )
        return nms(found, 0.4)[: self.max_faces]

    # ------------------------------------------------------------------ mesh

    def _mesh_at(
        self, image: np.ndarray, cx: float, cy: float, scale: float, out: int, ang: float
    ) -> np.ndarray | None:
        """Mesh points (478x2, image pixels) from an ``out`` px crop centred on (cx, cy),
        rotated by ``-ang``; None where the mesh finds no face."""
        c, s = np.cos(-ang) * scale, np.sin(-ang) * scale
        A = np.array([[c, -s], [s, c]])
        M = np.hstack([A, (np.array([out / 2, out / 2]) - A @ np.array([cx, cy]))[:, None]])
        crop = np.ascontiguousarray(warp(image, M, out))
        faces = _solution_output(self._mesh, crop, "multi_face_landmarks")
        if not faces:
            return None
        lm = faces[0].landmark
        pts = np.array([[p.x * out, p.y * out] for p in lm], np.float64)
        return transform_points(invert(M), pts).astype(np.float32)

    def _refine(self, image: np.ndarray, face: Face) -> Face:
        h, w = image.shape[:2]
        cx = (face.box[0] + face.box[2]) / 2
        cy = (face.box[1] + face.box[3]) / 2
        side = max(8.0, face.size * self.mesh_pad)
        scale = self.mesh_face_px * self.mesh_pad / side  # crop pixels per image pixel
        out = round(side * scale)
        # Rotate the crop upright by the detector's eye line, so rolled faces get a good mesh;
        # the detector's keypoints can be off on rolled faces, so try unrotated if that fails.
        ev = np.asarray(face.right_eye, np.float64) - np.asarray(face.left_eye, np.float64)
        ang = float(np.arctan2(ev[1], ev[0])) if np.hypot(*ev) > 1e-6 else 0.0
        pts, used = None, 0.0
        tries = [(a, 1.0) for a in ((ang, 0.0) if abs(ang) > np.deg2rad(5) else (0.0,))]
        # A detector box that covers part of a rolled face: once more with twice the crop.
        tries += [(ang, 0.5), (0.0, 0.5)] if abs(ang) > np.deg2rad(5) else [(0.0, 0.5)]
        for a, k in tries:
            pts, used = self._mesh_at(image, cx, cy, scale * k, out, a), a
            if pts is not None:
                break
        if pts is None:
            return face
        # Once more, upright by the mesh's own eye line, where that differs by > 10 degrees.
        ev = pts[list(LEFT_EYE_IDX)].mean(axis=0) - pts[list(RIGHT_EYE_IDX)].mean(axis=0)
        mang = float(np.arctan2(ev[1], ev[0]))
        if abs(np.angle(np.exp(1j * (mang - used)))) > np.deg2rad(10):
            again = self._mesh_at(image, cx, cy, scale, out, mang)
            if again is not None:
                pts = again
        right_eye = pts[list(RIGHT_EYE_IDX)].mean(axis=0)  # subject's right = image left
        left_eye = pts[list(LEFT_EYE_IDX)].mean(axis=0)
        mouth = pts[list(MOUTH_IDX)].mean(axis=0)
        # The mesh must describe this face, not a neighbour inside the padded crop.
        centre = (right_eye + left_eye + mouth) / 3
        b = face.box
        if not (b[0] <= centre[0] <= b[2] and b[1] <= centre[1] <= b[3]):
            return face
        # The mesh's face-oval extent is a tighter box than the detector's (which is coarse for
        # small faces); keep the detector's in ``extra``.
        box = face_box(pts[list(FACE_OVAL)], right_eye, left_eye, mouth)
        box[[0, 2]] = np.clip(box[[0, 2]], 0, w)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, h)
        return Face(
            box=box,
            score=face.score,
            left_eye=right_eye,
            right_eye=left_eye,
            mouth=mouth,
            landmarks=pts,
            source="mediapipe",
            extra={**face.extra, "det_box": face.box},
        )

    # ------------------------------------------------------------------ API

    def locate(self, image: np.ndarray, min_face_px: float | None = None) -> list[Face]:
        """Faces in ``image`` (HxWx3 RGB uint8), best score first; ``min_face_px`` (pixels of
        ``image``) overrides the locator's own for this call (e.g. on a reduced decode)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8 RGB, got {image.dtype} {image.shape}")
        with self._lock:
            faces = self._detect(image, min_face_px)
            if self._mesh is not None:
                faces = [self._refine(image, f) for f in faces]
                # A weak detection the mesh cannot confirm is a blob, not a face (on the
                # synthetic scenes every such false face scored < CONFIRM_SCORE).
                faces = [f for f in faces if f.landmarks is not None or f.score >= CONFIRM_SCORE]
                # Two detections (a face and a loose box around it) can mesh onto one face.
                faces = nms(faces, 0.4)
        return faces

    def close(self) -> None:
        with self._lock:
            self._detector.close()
            if self._full is not None:
                self._full.close()
            if self._mesh is not None:
                self._mesh.close()


def face_box(
    oval: np.ndarray, right_eye: np.ndarray, left_eye: np.ndarray, mouth: np.ndarray
) -> np.ndarray:
    """``[x0, y0, x1, y1]`` of the face: the oval points stretched in the face's frame (``u``
    along the eye line, ``v`` towards the mouth) by ``BOX_GROW``, so rolled faces grow along
    their own axes."""
    u = np.asarray(left_eye, np.float64) - np.asarray(right_eye, np.float64)
    n = float(np.hypot(*u))
    u = u / n if n > 1e-6 else np.array([1.0, 0.0])
    v = np.array([-u[1], u[0]])
    if float(np.dot(np.asarray(mouth, np.float64) - (right_eye + left_eye) / 2, v)) < 0:
        v = -v
    pts = np.asarray(oval, np.float64)
    c = pts.mean(axis=0)
    pu, pv = (pts - c) @ u, (pts - c) @ v
    side, top, bottom = BOX_GROW
    hv_top, hv_bot = max(1e-6, float(-pv.min())), max(1e-6, float(pv.max()))
    hv = hv_top + hv_bot
    pu = pu * (1 + 2 * side)
    pv = np.where(pv < 0, pv * (1 + top * hv / hv_top), pv * (1 + bottom * hv / hv_bot))
    grown = c + np.outer(pu, u) + np.outer(pv, v)
    return np.concatenate([grown.min(axis=0), grown.max(axis=0)]).astype(np.float32)


def _solution_output(solution: Any, image: np.ndarray, stream: str) -> Any:
    """``solution.process(image).<stream>`` of a MediaPipe ``mp.solutions`` graph, without the
    new ``namedtuple`` class that ``SolutionBase.process`` builds on every call (0.16 ms: 3 ms a
    photo at 18 detector calls). Falls back to ``process`` where the internals differ from the
    pinned version's."""
    try:
        graph, outputs = solution._graph, solution._graph_outputs
        ((name, kind),) = solution._input_stream_type_info.items()
        out_kind = solution._output_stream_type_info[stream]
        make_packet, packet_content = solution._make_packet, solution._get_packet_content
        stamp = int(solution._simulated_timestamp)
    except (AttributeError, KeyError, TypeError, ValueError):
        return getattr(solution.process(image), stream)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("Input image must contain three channel rgb data.")
    outputs.clear()
    solution._simulated_timestamp = stamp + 33333  # as process(): a 30 fps stream of stills
    graph.add_packet_to_input_stream(
        stream=name, packet=make_packet(kind, image).at(stamp + 33333))
    graph.wait_until_idle()
    packet = outputs.get(stream)
    return None if packet is None else packet_content(out_kind, packet)


def _starts(n: int, side: int, stride: int) -> list[int]:
    """Window starts along an axis of ``n`` pixels: every ``stride``, the last flush with the end."""
    if n <= side:
        return [0]
    xs = list(range(0, n - side + 1, stride))
    if xs[-1] + side < n:
        xs.append(n - side)
    return xs


def _touches_edge(box: np.ndarray, x0: int, y0: int, tw: int, th: int, w: int, h: int) -> bool:
    """True when ``box`` reaches a tile edge that is not also an image edge."""
    m = 2.0
    return bool(
        (box[0] <= x0 + m and x0 > 0)
        or (box[1] <= y0 + m and y0 > 0)
        or (box[2] >= x0 + tw - m and x0 + tw < w)
        or (box[3] >= y0 + th - m and y0 + th < h)
    )
