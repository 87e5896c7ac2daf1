"""BlazeFace short-range over whole pyramid levels, with onnxruntime.

MediaPipe's FaceDetection graph takes one fixed 128x128 input per call, so finding small faces
in a photo meant many overlapping windows (18 a scene), each paying the graph's own per-call
work (~0.6 ms of the ~1.6 ms) and each pixel scanned ~1.8 times. The network itself is fully
convolutional (no pooling over the whole input; boxes are regressed in pixels from anchors on a
stride-8 and a stride-16 grid), so this module runs MediaPipe's own short-range model, converted
to ONNX (``beardnet/assets/models/blazeface_short_range.onnx``; how: ``infra/models/``), over a
whole pyramid level in one call: each pixel once, one call per level.

Decoding follows MediaPipe's ``face_detection_short_range`` graph: scores are
``sigmoid(logit)``, boxes and the six keypoints (subject's right eye, left eye, nose tip, mouth,
right ear, left ear) are offsets in input pixels from the anchor centres, and overlapping
detections (IoU > 0.3) are blended by score (MediaPipe's weighted non-max suppression).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

#: The stride (px) of each anchor grid and the anchors per cell, in the network's output order.
ANCHOR_GRIDS = ((8, 2), (16, 6))
#: Input sides are padded to a multiple of this (the coarsest grid's stride).
PAD_TO = 16
#: The input side MediaPipe resizes a whole (small) image to; the smallest level is letterboxed
#: to it, as MediaPipe does, so faces that fill the photo are seen at the size it was trained on.
INPUT_SIDE = 128
#: Overlapping detections (IoU above this) are blended into one (MediaPipe's setting).
SUPPRESS_IOU = 0.3
#: Levels larger than this (px per side) are scanned in overlapping tiles of this size, to
#: bound the activations' memory (~24 floats per pixel of the largest layer).
MAX_TILE = 1024
#: The overlap of those tiles (px): a face up to this size lies whole inside one of them.
TILE_OVERLAP = 192
MODEL_FILE = "blazeface_short_range.onnx"


@dataclass(frozen=True)
class Detections:
    """Detections in the pixels of the image given: ``scores`` (n), ``boxes`` (n x 4,
    ``x0, y0, x1, y1``) and ``keypoints`` (n x 6 x 2)."""

    scores: np.ndarray
    boxes: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, keep: np.ndarray) -> Detections:
        """The detections where ``keep`` (a boolean mask) is True."""
        return Detections(self.scores[keep], self.boxes[keep], self.keypoints[keep])

    def shifted(self, dx: float, dy: float) -> Detections:
        """The same detections moved by ``(dx, dy)`` pixels (a tile's offset in its image)."""
        off = np.array([dx, dy], np.float32)
        return Detections(self.scores, self.boxes + np.tile(off, 2), self.keypoints + off)


def empty() -> Detections:
    """No detections."""
    return Detections(np.zeros(0, np.float32), np.zeros((0, 4), np.float32),
                      np.zeros((0, 6, 2), np.float32))


@cache
def anchor_centres(height: int, width: int) -> np.ndarray:
    """Anchor centres (px, ``x, y``) for an input of ``height`` x ``width`` (multiples of 16),
    in the network's output order: row-major cells of each grid, its anchors per cell."""
    out = []
    for stride, per_cell in ANCHOR_GRIDS:
        ys, xs = np.mgrid[0 : height // stride, 0 : width // stride]
        c = (np.stack([xs, ys], axis=-1).reshape(-1, 2) + 0.5) * stride
        out.append(np.repeat(c, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def decode(regressors: np.ndarray, logits: np.ndarray, height: int, width: int,
           min_score: float) -> Detections:
    """Boxes, keypoints and scores of the anchors scoring at least ``min_score`` (one input's
    outputs: ``regressors`` anchors x 16, ``logits`` anchors)."""
    keep = logits >= np.log(min_score / (1.0 - min_score))
    if not keep.any():
        return empty()
    raw, centres = regressors[keep], anchor_centres(height, width)[keep]
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep], -100.0, 100.0)))
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centres + raw[:, 0:2] - half, centres + raw[:, 0:2] + half], axis=1)
    keypoints = raw[:, 4:16].reshape(-1, 6, 2) + centres[:, None, :]
    return Detections(scores.astype(np.float32), boxes.astype(np.float32),
                      keypoints.astype(np.float32))


def weighted_nms(d: Detections, iou: float = SUPPRESS_IOU) -> Detections:
    """MediaPipe's weighted non-max suppression: the best detection left takes every detection
    overlapping it by more than ``iou``; its box and keypoints become their score-weighted mean,
    its score stays its own."""
    if len(d) < 2:
        return d
    order = np.argsort(-d.scores, kind="stable")
    boxes, kps, scores = d.boxes[order], d.keypoints[order], d.scores[order]
    area = np.maximum(0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0, boxes[:, 3] - boxes[:, 1])
    left = np.arange(len(order))
    out_b, out_k, out_s = [], [], []
    while left.size:
        b = boxes[left[0]]
        ix = np.maximum(0, np.minimum(b[2], boxes[left, 2]) - np.maximum(b[0], boxes[left, 0]))
        iy = np.maximum(0, np.minimum(b[3], boxes[left, 3]) - np.maximum(b[1], boxes[left, 1]))
        inter = ix * iy
        overlap = inter / np.maximum(1e-9, area[left[0]] + area[left] - inter)
        take = left[overlap > iou]
        take = take if take.size else left[:1]
        w = scores[take][:, None]
        out_b.append((boxes[take] * w).sum(0) / w.sum())
        out_k.append((kps[take] * w[:, :, None]).sum(0) / w.sum())
        out_s.append(scores[left[0]])
        left = left[overlap <= iou]
        if left.size and left[0] == take[0]:  # a degenerate box overlapping nothing, itself
            left = left[1:]
    return Detections(np.array(out_s, np.float32), np.array(out_b, np.float32),
                      np.array(out_k, np.float32))


class BlazeFaceMap:
    """MediaPipe's short-range BlazeFace run by onnxruntime on one thread over images of any
    size. ``detect`` is serialised by a lock (one session per instance)."""

    def __init__(self, min_score: float = 0.5, threads: int = 1) -> None:
        import onnxruntime as ort  # local: heavy import

        if not 0.0 < float(min_score) < 1.0:
            raise ValueError(f"min_score must be in (0, 1), got {min_score}")
        self.min_score = float(min_score)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # no per-call shape warnings
        model = resources.files("beardnet").joinpath("assets", "models", MODEL_FILE).read_bytes()
        self._session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._lock = threading.Lock()
        self.calls = 0  # network calls so far (benchmarks)

    def _run(self, image: np.ndarray) -> Detections:
        """Detections on ``image`` (HxWx3 uint8 RGB), padded right and bottom to whole grids
        by repeating its last row and column (a flat band, not an edge a face could end at)."""
        h, w = image.shape[:2]
        ph, pw = -(-h // PAD_TO) * PAD_TO, -(-w // PAD_TO) * PAD_TO
        x = np.empty((1, ph, pw, 3), np.float32)
        np.multiply(image, np.float32(1 / 127.5), out=x[0, :h, :w])
        x[0, :h, :w] -= 1.0
        x[0, h:, :w] = x[0, h - 1 : h, :w]
        x[0, :, w:] = x[0, :, w - 1 : w]
        with self._lock:
            self.calls += 1
            reg, cls = self._session.run(None, {self._input: x})
        return decode(reg[0], cls[0, :, 0], ph, pw, self.min_score)

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in ``image`` (HxWx3 uint8 RGB) at the sizes the network finds (about 20 to 120
        px), in its pixels. Images larger than ``MAX_TILE`` are scanned in overlapping tiles;
        a detection cut by an inner tile edge is left to the tile that holds it whole."""
        h, w = image.shape[:2]
        if max(h, w) <= MAX_TILE:
            return weighted_nms(self._run(image))
        parts = []
        stride = MAX_TILE - TILE_OVERLAP
        for y0 in tile_starts(h, MAX_TILE, stride):
            for x0 in tile_starts(w, MAX_TILE, stride):
                d = self._run(image[y0 : y0 + MAX_TILE, x0 : x0 + MAX_TILE])
                tw, th = min(MAX_TILE, w - x0), min(MAX_TILE, h - y0)
                keep = clear_of_cuts(d.boxes, x0 > 0, y0 > 0, x0 + tw < w, y0 + th < h, tw, th)
                parts.append(d.take(keep).shifted(x0, y0))
        return weighted_nms(Detections(*(np.concatenate(a) for a in zip(
            *((p.scores, p.boxes, p.keypoints) for p in parts), strict=True))))

    def detect_whole(self, image: np.ndarray) -> Detections:
        """Detections on a small ``image`` letterboxed into the network's 128x128 input (as
        MediaPipe's graph does with a whole image), in ``image``'s pixels."""
        import cv2

        h, w = image.shape[:2]
        k = INPUT_SIDE / max(h, w)
        rw, rh = max(1, round(w * k)), max(1, round(h * k))
        interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
        small = cv2.resize(image, (rw, rh), interpolation=interp)
        canvas = np.zeros((INPUT_SIDE, INPUT_SIDE, 3), np.uint8)
        ox, oy = (INPUT_SIDE - rw) // 2, (INPUT_SIDE - rh) // 2
        canvas[oy : oy + rh, ox : ox + rw] = small
        d = weighted_nms(self._run(canvas))
        off = np.array([ox, oy], np.float32)
        sx, sy = w / rw, h / rh
        scale = np.array([sx, sy], np.float32)
        return Detections(d.scores, ((d.boxes.reshape(-1, 2, 2) - off) * scale).reshape(-1, 4),
                          (d.keypoints - off) * scale)


def tile_starts(n: int, side: int, stride: int) -> list[int]:
    """Tile starts along an axis of ``n`` pixels: every ``stride``, the last flush with the end."""
    if n <= side:
        return [0]
    xs = list(range(0, n - side + 1, stride))
    if xs[-1] + side < n:
        xs.append(n - side)
    return xs


def clear_of_cuts(boxes: np.ndarray, left: bool, top: bool, right: bool, bottom: bool, tw: int,
                  th: int, margin: float = 2.0) -> np.ndarray:
    """Which boxes (pixels of a ``tw`` x ``th`` tile) stay clear of the tile's edges that cut
    the image (those flagged True): a face touching one is left to a tile that holds it whole."""
    keep = np.ones(len(boxes), bool)
    if left:
        keep &= boxes[:, 0] > margin
    if top:
        keep &= boxes[:, 1] > margin
    if right:
        keep &= boxes[:, 2] < tw - margin
    if bottom:
        keep &= boxes[:, 3] < th - margin
    return keep
