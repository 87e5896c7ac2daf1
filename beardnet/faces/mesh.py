"""FaceMesh landmarks for a detected face, the face box they give, and a check for flat blobs.

The mesh (MediaPipe FaceMesh, static image mode, ``refine_landmarks=True``, 478 points) runs on
a square crop of the image around each face, padded to ``pad`` times the face size, turned
upright by the detector's eye line and resized so the face is ``face_px`` wide. Points are mapped
back to image pixels, and the face box becomes the extent of the mesh's face oval, grown by
``BOX_GROW``.
"""

from __future__ import annotations

import numpy as np

from beardnet.affine import invert, transform_points
from beardnet.faces import Face
from beardnet.faces.align import warp
from beardnet.faces.mp_graph import solution_output
from beardnet.faces.regions import FACE_OVAL

# Mesh indices: the subject's right eye (image left in an upright, unmirrored photo) corners,
# the left eye corners, mouth corners and inner lip midpoints.
RIGHT_EYE_IDX = (33, 133)
LEFT_EYE_IDX = (362, 263)
MOUTH_IDX = (61, 291, 13, 14)
#: The face box is the mesh's face oval grown in the face's own frame by these fractions of
#: its extent (sides, top, bottom): the oval stops short of the hairline, the face box (the
#: renderer's face mask, which ``min_face_px`` is measured against) does not. Median offsets
#: of the renderer's boxes from the oval's on 75 scene faces: 0.02, 0.14, 0.04.
BOX_GROW = (0.025, 0.14, 0.045)
#: A face whose oval's grey levels vary less than this (standard deviation over mean) is a flat
#: blob (a bokeh disc, a balloon), not a face: eyes, brows, nostrils and lips vary them by more.
#: Chosen on synthetic scenes apart from the benchmark's (seed 7000 on, 400 faces): weak
#: detections that were faces 0.11 and up, the false one 0.02; the lowest of the 92 located
#: real faces is 0.13 (README, "Face location").
FLAT_FACE = 0.08


class FaceMesh:
    """FaceMesh on padded, upright crops of detected faces. Not thread-safe (MediaPipe)."""

    def __init__(self, face_px: int = 160, pad: float = 1.9) -> None:
        import mediapipe as mp  # local: heavy import

        self.face_px = int(face_px)
        self.pad = float(pad)
        self._graph = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=0.5,  # the mesh confirms the face: 0.3 meshed noise
        )

    def _mesh_at(
        self, image: np.ndarray, cx: float, cy: float, scale: float, out: int, ang: float
    ) -> np.ndarray | None:
        """Mesh points (478x2, image pixels) from an ``out`` px crop centred on (cx, cy),
        rotated by ``-ang``; None where the mesh finds no face."""
        c, s = np.cos(-ang) * scale, np.sin(-ang) * scale
        A = np.array([[c, -s], [s, c]])
        M = np.hstack([A, (np.array([out / 2, out / 2]) - A @ np.array([cx, cy]))[:, None]])
        crop = np.ascontiguousarray(warp(image, M, out))
        faces = solution_output(self._graph, crop, "multi_face_landmarks")
        if not faces:
            return None
        lm = faces[0].landmark
        pts = np.array([[p.x * out, p.y * out] for p in lm], np.float64)
        return transform_points(invert(M), pts).astype(np.float32)

    def refine(self, image: np.ndarray, face: Face) -> Face:
        """``face`` with the mesh's landmarks, eyes, mouth and face box; ``face`` unchanged
        (``landmarks`` None) where the mesh finds no face there."""
        h, w = image.shape[:2]
        cx = (face.box[0] + face.box[2]) / 2
        cy = (face.box[1] + face.box[3]) / 2
        side = max(8.0, face.size * self.pad)
        scale = self.face_px * self.pad / side  # crop pixels per image pixel
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

    def close(self) -> None:
        self._graph.close()


def oval_variation(image: np.ndarray, face: Face) -> float:
    """Standard deviation over mean of the grey levels inside ``face``'s mesh oval (0 without
    landmarks or pixels); see ``FLAT_FACE``."""
    import cv2

    if face.landmarks is None:
        return 0.0
    oval = np.round(face.landmarks[list(FACE_OVAL)]).astype(np.int32)
    h, w = image.shape[:2]
    x0, y0 = np.clip(oval.min(axis=0), 0, [w, h])
    x1, y1 = np.clip(oval.max(axis=0) + 1, 0, [w, h])
    if x1 <= x0 or y1 <= y0:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    mask = np.zeros(grey.shape, np.uint8)
    cv2.fillPoly(mask, [oval - np.array([x0, y0])], 1)
    values = grey[mask > 0].astype(np.float32)
    if values.size == 0:
        return 0.0
    return float(values.std() / max(1.0, float(values.mean())))


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
