"""MediaPipe face locator: FaceDetection (full range) over a tile pyramid, FaceMesh per face.

Detection: the full-range detector sees its input at 192x192 and misses faces narrower than about
a tenth of that input (and, oddly, some close-ups: the short-range model also runs on the whole
image for those). So the image is scanned at several scales: whole image, then overlapping
square tiles of side ``tile_px``, ``2*tile_px``, ... (only where the image is larger than the
tile), each tile downscaled to at most ``_DETECT_MAX`` px first. With ``tile_px = 16/3 *
min_face_px`` (256 px for 48 px faces) a face of ``min_face_px`` fills ~3/16 of its tile, ~36 px
of the detector's input: smaller tiles (384) missed ~7 % of 48-70 px faces with stubble on the
synthetic scenes; 256 found all of them, for ~25 % more detector time. Duplicates across tiles and
scales are merged by NMS.

Landmarks: FaceMesh (static image mode, ``refine_landmarks=True``, 478 points) runs on a square
crop around each face, padded to ``mesh_pad`` times the face size, turned upright by the
detector's eye line and resized so the face is ``mesh_face_px`` wide: small faces are upscaled,
large ones downscaled. Points are mapped back to
image pixels, and the face box becomes the extent of the mesh's face oval (tighter than the
detector's box, which is coarse for small faces). Where the mesh finds nothing (or something off the face) the detector's six
keypoints give eyes and mouth.

MediaPipe graphs are not thread-safe: one ``MediaPipeLocator`` serialises its calls with a lock;
use ``beardnet.faces.get_locator`` for one instance per process.
"""

from __future__ import annotations

import threading

import numpy as np

from beardnet.faces import Face, nms
from beardnet.faces.align import invert, transform_points, warp
from beardnet.faces.regions import FACE_OVAL

# Mesh indices: the subject's right eye (image left in an upright, unmirrored photo) corners,
# the left eye corners, mouth corners and inner lip midpoints.
RIGHT_EYE_IDX = (33, 133)
LEFT_EYE_IDX = (362, 263)
MOUTH_IDX = (61, 291, 13, 14)
_DETECT_MAX = 384


class MediaPipeLocator:
    """Face locator on MediaPipe 0.10.21 ``mp.solutions`` (models ship inside the wheel)."""

    kind = "mediapipe"

    def __init__(
        self,
        min_score: float = 0.5,
        min_face_px: int = 48,
        tile_px: int | None = None,
        mesh: bool = True,
        mesh_face_px: int = 160,
        mesh_pad: float = 1.9,
        max_faces: int = 64,
    ) -> None:
        import mediapipe as mp  # local: heavy import

        self.min_score = float(min_score)
        self.min_face_px = int(min_face_px)
        self.tile_px = int(tile_px or max(192, round(16 * self.min_face_px / 3)))
        self.use_mesh = bool(mesh)
        self.mesh_face_px = int(mesh_face_px)
        self.mesh_pad = float(mesh_pad)
        self.max_faces = int(max_faces)
        self._lock = threading.Lock()
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=self.min_score
        )
        # The full-range model misses some faces that fill most of the frame (close-ups); the
        # short-range model, run on the whole image only, finds those.
        self._close = mp.solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=self.min_score
        )
        self._mesh = (
            mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=0.3,
            )
            if self.use_mesh
            else None
        )

    # ------------------------------------------------------------------ detection

    def _windows(self, w: int, h: int) -> list[tuple[int, int, int]]:
        """(x0, y0, side) of every detection window, whole image first."""
        wins = [(0, 0, -1)]
        side = self.tile_px
        while side < max(w, h):
            stride = max(1, int(side * 0.7))
            xs = list(range(0, max(1, w - side) + 1, stride))
            ys = list(range(0, max(1, h - side) + 1, stride))
            if xs[-1] + side < w:
                xs.append(w - side)
            if ys[-1] + side < h:
                ys.append(h - side)
            for y0 in ys:
                for x0 in xs:
                    wins.append((max(0, x0), max(0, y0), side))
            side *= 2
        return wins

    def _detect(self, image: np.ndarray) -> list[Face]:
        import cv2

        h, w = image.shape[:2]
        found: list[Face] = []
        for x0, y0, side in self._windows(w, h):
            tile = image if side < 0 else image[y0 : y0 + side, x0 : x0 + side]
            th, tw = tile.shape[:2]
            scale = min(1.0, _DETECT_MAX / max(th, tw))
            if scale < 1.0:
                tile = cv2.resize(
                    tile,
                    (max(1, round(tw * scale)), max(1, round(th * scale))),
                    interpolation=cv2.INTER_AREA,
                )
            tile = np.ascontiguousarray(tile)
            dets = list(self._detector.process(tile).detections or [])
            if side < 0:
                dets += list(self._close.process(tile).detections or [])
            for det in dets:
                rb = det.location_data.relative_bounding_box
                box = np.array(
                    [
                        rb.xmin * tw,
                        rb.ymin * th,
                        (rb.xmin + rb.width) * tw,
                        (rb.ymin + rb.height) * th,
                    ],
                    np.float32,
                ) + np.array([x0, y0, x0, y0], np.float32)
                if side > 0 and _touches_edge(box, x0, y0, tw, th, w, h):
                    continue  # a face cut by the tile edge: another window sees it whole
                kp = np.array(
                    [[k.x * tw + x0, k.y * th + y0] for k in det.location_data.relative_keypoints],
                    np.float32,
                )
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
        res = self._mesh.process(np.ascontiguousarray(warp(image, M, out)))
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
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
        for a in (ang, 0.0) if abs(ang) > np.deg2rad(5) else (0.0,):
            pts, used = self._mesh_at(image, cx, cy, scale, out, a), a
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
        oval = pts[list(FACE_OVAL)]
        box = np.concatenate([oval.min(axis=0), oval.max(axis=0)]).astype(np.float32)
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

    def locate(self, image: np.ndarray) -> list[Face]:
        """Faces in ``image`` (HxWx3 RGB uint8), best score first."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8 RGB, got {image.dtype} {image.shape}")
        with self._lock:
            faces = self._detect(image)
            if self._mesh is not None:
                faces = [self._refine(image, f) for f in faces]
        return faces

    def close(self) -> None:
        with self._lock:
            self._detector.close()
            self._close.close()
            if self._mesh is not None:
                self._mesh.close()


def _touches_edge(box: np.ndarray, x0: int, y0: int, tw: int, th: int, w: int, h: int) -> bool:
    """True when ``box`` reaches a tile edge that is not also an image edge."""
    m = 2.0
    return bool(
        (box[0] <= x0 + m and x0 > 0)
        or (box[1] <= y0 + m and y0 > 0)
        or (box[2] >= x0 + tw - m and x0 + tw < w)
        or (box[3] >= y0 + th - m and y0 + th < h)
    )
