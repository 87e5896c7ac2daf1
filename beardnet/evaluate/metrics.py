"""Per-style evaluation figures for beard transformation (issue 3, item 8).

For a sample (source image, target style t, ground-truth target image, model output):

- **beard region** = union of the source's and the target's beard masks (what may change);
- **outside region** = every other pixel, less a ``margin``-pixel band around the beard region
  (edge pixels of a hair boundary belong to neither; ``margin=0`` uses the exact complement);
- **beard PSNR / L1**: output vs ground truth inside the beard region;
- **outside PSNR**: output vs ground truth outside it (identity and background kept);
- **style accuracy**: share of outputs the style classifier assigns to ``t``;
- **beard detail**: how much fine detail the output carries in the beard region against the
  ground truth: std of a difference of Gaussians (sigma 1 minus sigma 3, grey) over the region,
  output / target, pooled per style (1 = as much hair texture as the target; a smear < 1).

PSNR is pooled per style: the squared error is summed over every region pixel (all channels) of
every sample of that style, divided by the pixel count, then ``10 log10(1 / mse)`` for images in
[0, 1]; it is capped at :data:`MAX_PSNR` (an exact match would be infinite, which JSON cannot hold).
L1 is the pooled mean absolute error in [0, 1] units. A style with no region pixels gets ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_PSNR = 100.0


def _nhwc(x: Any) -> np.ndarray:
    """Float32 [B,H,W,C] in [0,1] from numpy (uint8 or float, NHWC/HWC) or torch [B,C,H,W]."""
    if hasattr(x, "detach"):  # torch tensor, [B,C,H,W] or [C,H,W]
        x = x.detach().float().cpu().numpy()
        x = np.moveaxis(x, -3, -1)
    a = np.asarray(x)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    a = a.astype(np.float32, copy=False)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"expected an image batch, got shape {a.shape}")
    return a


def _mask(x: Any) -> np.ndarray:
    """Bool [B,H,W] from bool/uint8/float numpy or torch masks ([B,1,H,W], [B,H,W], [H,W])."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    m = np.asarray(x)
    if m.ndim == 4:
        m = m[:, 0] if m.shape[1] == 1 else m[..., 0]
    if m.ndim == 2:
        m = m[None]
    if m.dtype == np.bool_:
        return m
    return m > (127 if m.dtype == np.uint8 else 0.5)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a [B,H,W] bool mask by a square of side ``2*radius+1``."""
    if radius <= 0:
        return mask
    out = mask.copy()
    h, w = mask.shape[1:]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            ys, yd = (
                (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
            )
            xs, xd = (
                (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
            )
            out[:, yd, xd] |= mask[:, ys, xs]
    return out


def detail_band(grey: np.ndarray) -> np.ndarray:
    """The hair-detail band of a 2-D grey image: difference of Gaussians, sigma 1 minus sigma 3
    (the texture measure of the synthetic and the real-photo metrics alike)."""
    import cv2

    return cv2.GaussianBlur(grey, (0, 0), 1.0) - cv2.GaussianBlur(grey, (0, 0), 3.0)


def _dog_grey(x: np.ndarray) -> np.ndarray:
    """:func:`detail_band` of the grey of each image of ``x`` [B,H,W,C] in [0,1], in grey
    levels (0..255)."""
    g = x[..., :3].mean(-1) * 255.0 if x.shape[-1] >= 3 else x[..., 0] * 255.0
    out = np.empty_like(g)
    for i in range(g.shape[0]):
        out[i] = detail_band(g[i])
    return out


def regions(src_beard: Any, tgt_beard: Any, margin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(beard region, outside region) as bool [B,H,W]: union of masks, and its complement
    less a ``margin``-pixel band."""
    b = _mask(src_beard) | _mask(tgt_beard)
    return b, ~dilate(b, margin)


def psnr_from_mse(mse: float, max_db: float = MAX_PSNR) -> float:
    """PSNR in dB of a mean squared error on [0, 1] images, capped at ``max_db``."""
    if mse <= 0:
        return max_db
    return float(min(max_db, 10.0 * math.log10(1.0 / mse)))


def psnr(pred: Any, target: Any, mask: Any | None = None) -> float:
    """Pooled PSNR of ``pred`` vs ``target`` over ``mask`` pixels (all pixels when None)."""
    p, t = _nhwc(pred), _nhwc(target)
    m = np.ones(p.shape[:3], bool) if mask is None else _mask(mask)
    n = int(m.sum()) * p.shape[-1]
    if n == 0:
        raise ValueError("psnr: empty mask")
    return psnr_from_mse(float(((p - t) ** 2)[m].sum()) / n)


@dataclass
class _Acc:
    beard_sse: float = 0.0
    beard_abs: float = 0.0
    beard_n: int = 0
    out_sse: float = 0.0
    out_n: int = 0
    detail_out: float = 0.0
    detail_tgt: float = 0.0
    correct: int = 0
    classified: int = 0
    samples: int = 0


@dataclass
class StyleMetrics:
    """Accumulates per-target-style figures over batches; :meth:`result` gives the table."""

    styles: Sequence[str]
    margin: int = 2
    _acc: dict[str, _Acc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._acc = {s: _Acc() for s in self.styles}

    def add(
        self,
        target_style: Sequence[int] | np.ndarray,
        output: Any,
        target: Any,
        src_beard: Any,
        tgt_beard: Any,
        predicted_style: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        """Add a batch. ``target_style``/``predicted_style`` are category indices per sample."""
        out, tgt = _nhwc(output), _nhwc(target)
        if out.shape != tgt.shape:
            raise ValueError(f"output {out.shape} and target {tgt.shape} differ in shape")
        beard, outside = regions(src_beard, tgt_beard, self.margin)
        err2 = ((out - tgt) ** 2).sum(-1)
        err1 = np.abs(out - tgt).sum(-1)
        c = out.shape[-1]
        dog_out, dog_tgt = _dog_grey(out), _dog_grey(tgt)
        ts = np.asarray(target_style).reshape(-1)
        ps = None if predicted_style is None else np.asarray(predicted_style).reshape(-1)
        for i, t in enumerate(ts):
            a = self._acc[self.styles[int(t)]]
            a.samples += 1
            a.beard_sse += float(err2[i][beard[i]].sum())
            a.beard_abs += float(err1[i][beard[i]].sum())
            a.beard_n += int(beard[i].sum()) * c
            if beard[i].sum() >= 4:
                a.detail_out += float(dog_out[i][beard[i]].std())
                a.detail_tgt += float(dog_tgt[i][beard[i]].std())
            a.out_sse += float(err2[i][outside[i]].sum())
            a.out_n += int(outside[i].sum()) * c
            if ps is not None:
                a.classified += 1
                a.correct += int(ps[i] == t)

    def result(self) -> dict[str, dict[str, float | int | None]]:
        """``{style: {style_accuracy, beard_psnr, beard_l1, beard_detail, outside_psnr,
        samples}}``."""
        res: dict[str, dict[str, float | int | None]] = {}
        for s, a in self._acc.items():
            res[s] = {
                "style_accuracy": (a.correct / a.classified) if a.classified else None,
                "beard_psnr": psnr_from_mse(a.beard_sse / a.beard_n) if a.beard_n else None,
                "beard_l1": (a.beard_abs / a.beard_n) if a.beard_n else None,
                "beard_detail": (a.detail_out / a.detail_tgt) if a.detail_tgt > 0 else None,
                "outside_psnr": psnr_from_mse(a.out_sse / a.out_n) if a.out_n else None,
                "samples": a.samples,
            }
        return res


def summarize(per_style: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Means over styles (unweighted) of each figure, ignoring ``None``."""
    keys = ("style_accuracy", "beard_psnr", "beard_l1", "outside_psnr")
    out: dict[str, float | None] = {}
    for k in keys:
        vals = [v[k] for v in per_style.values() if v.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def markdown_table(per_style: dict[str, dict[str, Any]], title: str | None = None) -> str:
    """A Markdown table of the per-style figures."""
    lines = [f"**{title}**", ""] if title else []
    lines += [
        (
            "| target style | style acc. | beard PSNR (dB) | beard L1 | beard detail | "
            "outside PSNR (dB) | n |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for s, m in per_style.items():
        lines.append(
            f"| {s} | {f(m.get('style_accuracy'), '.1%')} | {f(m.get('beard_psnr'), '.2f')} | "
            f"{f(m.get('beard_l1'), '.4f')} | {f(m.get('beard_detail'), '.2f')} | "
            f"{f(m.get('outside_psnr'), '.2f')} | "
            f"{m.get('samples', '-')} |"
        )
    return "\n".join(lines) + "\n"
