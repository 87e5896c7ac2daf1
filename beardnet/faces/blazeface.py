"""BlazeFace short-range (MediaPipe's ``face_detection_short_range.tflite``) in torch, batched.

The same model, pre- and post-processing as ``mp.solutions.face_detection.FaceDetection(
model_selection=0)`` (MediaPipe 0.10.21's ``FaceDetectionShortRange`` graph), but on a batch of
windows in one forward pass:

- **input**: each RGB uint8 window is letterboxed into 128x128 (aspect kept, centred, zero
  border: ``ImageToTensorCalculator`` with ``keep_aspect_ratio`` and ``BORDER_ZERO``; bilinear
  ``warpPerspective`` as its OpenCV converter does), then mapped to [-1, 1];
- **model**: the TFLite graph (read by :mod:`beardnet.faces.tflite_reader`, fp16 weights
  dequantized once) converted to NCHW torch ops at load;
- **output**: SSD anchors (4 layers, strides 8/16/16/16: 896 anchors), box and 6 keypoint
  decoding at scale 128, sigmoid scores clipped at +-100, the score threshold, MediaPipe's
  *weighted* NMS (IoU > 0.3 blends the boxes by score) and the letterbox undone, so boxes and
  keypoints are relative to each window like MediaPipe's ``Detection``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from beardnet.faces.tflite_reader import TfModel, read_tflite

#: Model input side (px).
INPUT = 128
#: ``FaceDetectionShortRange`` options (verified against the graph in the mediapipe wheel).
STRIDES = (8, 16, 16, 16)
SCALE = 128.0  # x/y/w/h scale of the box decoder
SCORE_CLIP = 100.0
NMS_IOU = 0.3
NUM_KEYPOINTS = 6


def default_model_path() -> str:
    """The short-range model shipped inside the installed mediapipe wheel."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("mediapipe is not installed: pass model_path")
    root = next(iter(spec.submodule_search_locations))
    return os.path.join(root, "modules", "face_detection", "face_detection_short_range.tflite")


@dataclass
class Detection:
    """One face: ``score``, ``box`` ``[xmin, ymin, xmax, ymax]`` and ``keypoints`` (6x2 x, y;
    right eye, left eye, nose tip, mouth, right ear, left ear), relative (0..1) to the window."""

    score: float
    box: np.ndarray
    keypoints: np.ndarray


def ssd_anchors() -> np.ndarray:
    """Anchor centres (896x2, x, y relative) as MediaPipe's ``SsdAnchorsCalculator`` makes them
    for this model (fixed anchor size, 2 anchors per layer, layers of equal stride merged)."""
    out, i = [], 0
    while i < len(STRIDES):
        j = i
        while j < len(STRIDES) and STRIDES[j] == STRIDES[i]:
            j += 1
        n = 2 * (j - i)  # aspect ratio 1.0 plus the interpolated scale, per layer
        side = math.ceil(INPUT / STRIDES[i])
        ys, xs = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        c = (np.stack([xs, ys], -1).reshape(-1, 1, 2) + 0.5) / side
        out.append(np.repeat(c, n, axis=1).reshape(-1, 2))
        i = j
    return np.concatenate(out).astype(np.float32)


def _same_pad(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) along one axis: the extra pixel goes after."""
    total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _act_(x: torch.Tensor, name: str | None) -> torch.Tensor:
    """Activation ``name`` applied to ``x`` in place."""
    if name is None:
        return x
    if name == "TANH":
        return x.tanh_()
    lo, hi = {"RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}[name]
    return x.clamp_(lo, hi)


class TfliteNet(torch.nn.Module):
    """A float TFLite graph as torch ops on NCHW (channels-last) activations; the graph is
    NHWC, so RESHAPE/CONCATENATION/PAD translate axes. A conv absorbs a following ADD and
    RELU, done in place (fresh allocations cost page faults); tensors are freed after last use."""

    def __init__(self, model: TfModel) -> None:
        super().__init__()
        self.inputs, self.outputs = model.inputs, model.outputs
        consts = {i: t.data for i, t in enumerate(model.tensors) if t.data is not None}
        shapes = {i: t.shape for i, t in enumerate(model.tensors)}
        ops = model.ops
        users: dict[int, list[int]] = {}
        for n, op in enumerate(ops):
            for i in op.inputs:
                users.setdefault(i, []).append(n)
        # A zero PAD of trailing channels read only by an ADD with a conv: never materialised,
        # the conv adds the unpadded tensor to its first channels instead.
        made = {op.outputs[0]: op for op in ops}
        virtual: dict[int, int] = {}
        for op in (op for op in ops if op.op == "ADD"):
            for a, b in (op.inputs[:2], op.inputs[1::-1]):
                p, c = made.get(a), made.get(b)
                if (p is None or c is None or p.op != "PAD" or not c.op.endswith("CONV_2D")
                        or c.options.get("activation") or len(users[a]) + len(users[b]) != 2):
                    continue
                rows = consts[p.inputs[1]]
                if not rows[:3].any() and rows[3][0] == 0:
                    virtual[a] = p.inputs[0]
        fresh: set[int] = set()  # tensors owned by one step (no views): may be summed into
        done: set[int] = set()
        steps: list[tuple[int, Callable[..., torch.Tensor], list[int], int]] = []
        for n, op in enumerate(ops):
            if n in done:
                continue
            ins, out, o = op.inputs, op.outputs[0], op.options
            if op.op == "DEQUANTIZE":
                consts[out] = consts[ins[0]].astype(np.float32)
                continue
            if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                act, other, inplace, final, at = o.get("activation"), None, False, out, n
                nxt = users.get(out, [])
                if act is None and len(nxt) == 1 and ops[nxt[0]].op == "ADD":
                    add = ops[nxt[0]]
                    other = add.inputs[1] if add.inputs[0] == out else add.inputs[0]
                    act, final = add.options.get("activation"), add.outputs[0]
                    inplace = other in fresh and max(users[other]) == nxt[0]
                    if other in virtual:
                        other, inplace = virtual[other], "slice"
                    done.add(nxt[0])
                    at, nxt = nxt[0], users.get(final, [])
                if act is None and len(nxt) == 1 and ops[nxt[0]].op in ("RELU", "RELU6"):
                    act, final, at = ops[nxt[0]].op, ops[nxt[0]].outputs[0], nxt[0]
                    done.add(nxt[0])
                fn = self._conv(f"w{n}", op.op == "DEPTHWISE_CONV_2D", consts[ins[1]],
                                consts.get(ins[2]) if len(ins) > 2 else None,
                                shapes[ins[0]], o, act, inplace)
                # runs where the last op it absorbs ran (``other`` may be made after the conv)
                steps.append((at, fn, [ins[0]] + ([other] if other is not None else []), final))
                fresh.add(final)
                continue
            if out in virtual:
                continue
            act = o.get("activation")
            if op.op == "MAX_POOL_2D":
                fn = self._pool(shapes[ins[0]], o)
            elif op.op == "ADD":
                fn = lambda a, b, act=act: _act_(a + b, act)
            elif op.op in ("RELU", "RELU6"):
                fn = lambda x, act=op.op: _act_(x.clone(), act)
            elif op.op == "PAD":
                p = consts[ins[1]].astype(int)  # NHWC rows of (before, after)
                if p[0].any():
                    raise NotImplementedError("PAD on the batch axis")
                fn = lambda x, pads=[*p[2], *p[1], *p[3]]: F.pad(x, pads)
            elif op.op == "RESHAPE":
                tail, four = tuple(shapes[out][1:]), len(shapes[ins[0]]) == 4
                fn = lambda x, tail=tail, four=four: (
                    x.permute(0, 2, 3, 1) if four else x).reshape(x.shape[0], *tail)
            elif op.op == "CONCATENATION":
                axis = o.get("axis", 0) % len(shapes[out])
                axis = (0, 2, 3, 1)[axis] if len(shapes[out]) == 4 else axis
                fn = lambda *xs, axis=axis, act=act: _act_(torch.cat(xs, axis), act)
            else:
                raise NotImplementedError(f"TFLite op {op.op}")
            steps.append((n, fn, list(ins[:1] if op.op == "PAD" else ins), out))
            if op.op not in ("RESHAPE",):
                fresh.add(out)
        self.steps = [s[1:] for s in sorted(steps, key=lambda s: s[0])]
        # free each activation after the step that last reads it
        last = {i: k for k, (_, ins, _) in enumerate(self.steps) for i in ins}
        keep = set(self.outputs)
        self.free = [[i for i in set(ins) if last[i] == k and i not in keep]
                     for k, (_, ins, _) in enumerate(self.steps)]

    def _conv(self, name: str, depthwise: bool, w: np.ndarray, b: np.ndarray | None,
              in_shape: tuple[int, ...], o: dict, act: str | None,
              inplace: bool | str) -> Callable[..., torch.Tensor]:
        """One conv step: ``f(x[, other])`` = act(conv(x) [+ other]); ``other`` is summed into
        in place when ``inplace`` is True, added to the first channels when it is "slice"."""
        # TFLite: conv [out, kh, kw, in]; depthwise [1, kh, kw, out] -> torch OIHW.
        w = w.astype(np.float32)
        wt = w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)
        self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(wt)))
        bias = None if b is None else torch.from_numpy(b.astype(np.float32))
        self.register_buffer(name + "b", bias)
        groups = wt.shape[0] if depthwise else 1
        kh, kw = wt.shape[2:]
        s, d = [o["stride_h"], o["stride_w"]], [o["dilation_h"], o["dilation_w"]]
        pad = (0, 0, 0, 0)
        if o["padding"] == "SAME":
            pad = (*_same_pad(in_shape[2], kw, s[1], d[1]), *_same_pad(in_shape[1], kh, s[0], d[0]))
        sym = pad[0] == pad[1] and pad[2] == pad[3]
        cpad = [pad[2], pad[0]] if sym else [0, 0]

        def conv(x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
            if not sym:
                x = F.pad(x, pad)
            wgt, bb = getattr(self, name), getattr(self, name + "b")
            y = F.conv2d(x, wgt, bb, s, cpad, d, groups)
            if inplace == "slice":  # other zero-padded along channels: add to the first ones
                y[:, : other.shape[1]].add_(other)
            elif other is not None:
                y = other.add_(y) if inplace else y.add_(other)
            return _act_(y, act)

        return conv

    def _pool(self, in_shape: tuple[int, ...], o: dict) -> Callable[[torch.Tensor], torch.Tensor]:
        k, s = (o["filter_h"], o["filter_w"]), (o["stride_h"], o["stride_w"])
        pad = (0, 0, 0, 0)
        if o["padding"] == "SAME":
            pad = (*_same_pad(in_shape[2], k[1], s[1]), *_same_pad(in_shape[1], k[0], s[0]))
        act = o.get("activation")
        # padded cells never win the max (TFLite ignores them)
        return lambda x: _act_(F.max_pool2d(
            F.pad(x, pad, value=-math.inf) if any(pad) else x, k, s), act)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x``: N x 3 x H x W float input; returns the graph's outputs."""
        env: dict[int, torch.Tensor] = {self.inputs[0]: x.contiguous(
            memory_format=torch.channels_last)}
        for (fn, ins, out), free in zip(self.steps, self.free):
            env[out] = fn(*[env[i] for i in ins])
            for i in free:
                del env[i]
        return [env[i] for i in self.outputs]


def letterbox(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``window`` (HxWx3 uint8) fitted into 128x128 (centred, aspect kept, zero border) as
    MediaPipe's ``ImageToTensorCalculator`` does; also ``(ox, oy, sx, sy)`` mapping relative
    tensor coordinates back to relative window ones: ``u_win = u * sx + ox``."""
    h, w = window.shape[:2]
    if h == INPUT and w == INPUT:
        return window, np.array([0.0, 0.0, 1.0, 1.0], np.float32)
    import cv2

    side = float(max(h, w))  # the ROI grows to the tensor's (square) aspect, centred
    x0, y0 = w / 2.0 - side / 2.0, h / 2.0 - side / 2.0
    k = INPUT / side
    m = np.array([[k, 0, -x0 * k], [0, k, -y0 * k], [0, 0, 1]], np.float64)
    out = cv2.warpPerspective(np.ascontiguousarray(window), m, (INPUT, INPUT),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
    return out, np.array([x0 / w, y0 / h, side / w, side / h], np.float32)


def weighted_nms(scores: np.ndarray, boxes: np.ndarray, kps: np.ndarray,
                 thresh: float = NMS_IOU) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """MediaPipe's WEIGHTED non-max suppression: the best remaining detection takes every
    detection overlapping it by IoU > ``thresh`` (itself included) and becomes their
    score-weighted mean box and keypoints, keeping its own score."""
    order = np.argsort(-scores, kind="stable")
    out = []
    while order.size:
        top = boxes[order[0]]
        b = boxes[order]
        iw = np.clip(np.minimum(b[:, 2], top[2]) - np.maximum(b[:, 0], top[0]), 0, None)
        ih = np.clip(np.minimum(b[:, 3], top[3]) - np.maximum(b[:, 1], top[1]), 0, None)
        inter = iw * ih
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        union = area + (top[2] - top[0]) * (top[3] - top[1]) - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        take = iou > thresh
        cand = order[take]
        if cand.size:
            wts = scores[cand][:, None]
            box = (boxes[cand] * wts).sum(0) / wts.sum()
            kp = (kps[cand] * wts[:, :, None]).sum(0) / wts.sum()
        else:
            box, kp = top.copy(), kps[order[0]].copy()
        out.append((float(scores[order[0]]), box, kp))
        if not cand.size:  # nothing removed: MediaPipe stops here
            break
        order = order[~take]
    return out


class BlazeFace:
    """MediaPipe's short-range face detector on a batch of windows (torch, CPU, float32)."""

    def __init__(self, model_path: str | None = None, min_score: float = 0.5) -> None:
        self.min_score = float(min_score)
        self.net = TfliteNet(read_tflite(model_path or default_model_path())).eval()
        self.anchors = ssd_anchors()

    @torch.inference_mode()
    def raw(self, windows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Model outputs for ``windows``: regressors (N x 896 x 16), logits (N x 896) and the
        letterbox maps (N x 4, see :func:`letterbox`)."""
        boxed = [letterbox(w) for w in windows]
        x = torch.from_numpy(np.stack([b[0] for b in boxed]))
        x = x.permute(0, 3, 1, 2).float().mul_(2.0 / 255.0).sub_(1.0)
        outs = self.net(x)
        reg = next(o for o in outs if o.shape[-1] == 4 + 2 * NUM_KEYPOINTS)
        cls = next(o for o in outs if o.shape[-1] == 1)
        return reg.numpy(), cls[..., 0].numpy(), np.stack([b[1] for b in boxed])

    def detect(self, windows: list[np.ndarray]) -> list[list[Detection]]:
        """Faces in each window (HxWx3 RGB uint8; 128x128, or any size: letterboxed), best
        first, with boxes and keypoints relative to that window."""
        if not windows:
            return []
        for w in windows:
            if w.ndim != 3 or w.shape[2] != 3 or w.dtype != np.uint8:
                raise ValueError(f"expected HxWx3 uint8 RGB, got {w.dtype} {w.shape}")
        reg, logits, maps = self.raw(windows)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
        result = []
        for i in range(len(windows)):
            keep = np.nonzero(scores[i] >= self.min_score)[0]
            r, a = reg[i, keep], self.anchors[keep]
            c = r[:, :2] / SCALE + a  # fixed anchor size: anchor w = h = 1
            half = r[:, 2:4] / SCALE / 2
            boxes = np.concatenate([c - half, c + half], 1)
            kps = r[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) / SCALE + a[:, None, :]
            ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            ox, oy, sx, sy = maps[i]
            dets = []
            for s, box, kp in weighted_nms(scores[i, keep][ok], boxes[ok], kps[ok]):
                box = box * np.array([sx, sy, sx, sy], np.float32) + np.array([ox, oy, ox, oy])
                kp = kp * np.array([sx, sy], np.float32) + np.array([ox, oy], np.float32)
                dets.append(Detection(s, box.astype(np.float32), kp.astype(np.float32)))
            result.append(dets)
        return result
