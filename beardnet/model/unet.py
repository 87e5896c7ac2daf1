"""BeardNet: a small conditional U-Net G(image, target style) with a mask-and-blend output.

Layout (``size`` = 128, ``base`` = b):

* the RGB crop is folded 2x2 into channels (pixel-unshuffle: 12 x 64 x 64) and concatenated with
  one-hot planes of the target style, so the whole net works at 64x64 and below;
* encoder 64 -> 32 -> 16 -> 8 with channels ``b, 2b, 4b, 4b`` (residual blocks, GroupNorm, SiLU);
  every block is FiLM-modulated by a learned style embedding (style injected at every scale);
* decoder back to 64 with skip connections, then a head that also sees the folded input and
  predicts, per output pixel after pixel-shuffle, 3 edit channels (sigmoid) and a mask logit;
* ``out = m * edit + (1 - m) * x``. The mask-logit bias starts at ``mask_bias`` (-4: m ≈ 0.02),
  so a fresh net is nearly a pass-through.

``forward(x [B,3,H,W] in 0..1, style long[B]) -> (out [B,3,H,W], mask [B,1,H,W])``; H and W must be
multiples of 16.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _groups(c: int) -> int:
    for g in (8, 4, 2):
        if c % g == 0:
            return g
    return 1


class FiLMBlock(nn.Module):
    """Residual block: conv-norm-act, FiLM by the style embedding, conv-norm, + skip, act."""

    def __init__(self, cin: int, cout: int, emb_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.film = nn.Linear(emb_dim, 2 * cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        g, b = self.film(emb).chunk(2, dim=1)
        h = h * (1 + g[:, :, None, None]) + b[:, :, None, None]
        h = self.norm2(self.conv2(h))
        return F.silu(h + self.skip(x))


class BeardNet(nn.Module):
    """Conditional U-Net beard editor (see module docstring)."""

    def __init__(
        self,
        categories: int = 5,
        base: int = 24,
        size: int = 128,
        emb_dim: int = 64,
        mask_bias: float = -4.0,
    ) -> None:
        super().__init__()
        if size % 16:
            raise ValueError(f"size must be a multiple of 16, got {size}")
        self.config: dict[str, Any] = {
            "categories": int(categories),
            "base": int(base),
            "size": int(size),
            "emb_dim": int(emb_dim),
            "mask_bias": float(mask_bias),
        }
        self.categories = int(categories)
        self.size = int(size)
        c0, c1, c2, c3 = base, 2 * base, 4 * base, 4 * base
        self.embed = nn.Sequential(
            nn.Embedding(categories, emb_dim), nn.Linear(emb_dim, emb_dim), nn.SiLU()
        )
        cin = 12 + categories
        self.stem = nn.Conv2d(cin, c0, 3, padding=1)
        self.e0 = FiLMBlock(c0, c0, emb_dim)
        self.d1 = nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.e1 = FiLMBlock(c1, c1, emb_dim)
        self.d2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.e2 = FiLMBlock(c2, c2, emb_dim)
        self.d3 = nn.Conv2d(c2, c3, 3, stride=2, padding=1)
        self.mid1 = FiLMBlock(c3, c3, emb_dim)
        self.mid2 = FiLMBlock(c3, c3, emb_dim)
        self.u2 = FiLMBlock(c3 + c2, c2, emb_dim)
        self.u1 = FiLMBlock(c2 + c1, c1, emb_dim)
        self.u0 = FiLMBlock(c1 + c0, c0, emb_dim)
        self.head = nn.Conv2d(c0 + 12, 16, 3, padding=1)
        with torch.no_grad():
            # channels after pixel_shuffle(2): 4 groups of 4 sub-pixels; group 3 = mask logit
            self.head.weight[12:].mul_(0.1)
            self.head.bias[12:].fill_(mask_bias)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Edit ``x`` towards ``style``; returns ``(out, mask)``."""
        b, _, h, w = x.shape
        if h % 16 or w % 16:
            raise ValueError(f"input size {h}x{w}: both sides must be multiples of 16")
        emb = self.embed(style)
        xf = F.pixel_unshuffle(x, 2)
        onehot = F.one_hot(style, self.categories).to(x.dtype)[:, :, None, None]
        h0 = self.stem(torch.cat([xf, onehot.expand(b, self.categories, h // 2, w // 2)], 1))
        s0 = self.e0(h0, emb)
        s1 = self.e1(self.d1(s0), emb)
        s2 = self.e2(self.d2(s1), emb)
        m = self.mid2(self.mid1(self.d3(s2), emb), emb)
        y = self.u2(torch.cat([F.interpolate(m, scale_factor=2.0, mode="nearest"), s2], 1), emb)
        y = self.u1(torch.cat([F.interpolate(y, scale_factor=2.0, mode="nearest"), s1], 1), emb)
        y = self.u0(torch.cat([F.interpolate(y, scale_factor=2.0, mode="nearest"), s0], 1), emb)
        o = F.pixel_shuffle(self.head(torch.cat([y, xf], 1)), 2)
        edit = torch.sigmoid(o[:, :3])
        mask = torch.sigmoid(o[:, 3:4])
        out = mask * edit + (1 - mask) * x
        return out, mask


def count_params(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def count_flops(net: BeardNet, size: int | None = None) -> int:
    """FLOPs of one forward pass for a single ``size`` crop (torch's FlopCounterMode: 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    s = size or net.size
    x = torch.rand(1, 3, s, s)
    st = torch.zeros(1, dtype=torch.long)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(x, st)
    return int(fc.get_total_flops())
