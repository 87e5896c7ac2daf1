"""One training step's losses, and an EMA of the weights.

``compute_losses(net, batch, cfg)`` with ``batch`` from :class:`beardnet.data.paired.
PairedCropDataset` (``src``, ``tgt`` float ``[B,3,H,W]`` in 0..1, ``style`` long ``[B]``,
``beard_src``, ``beard_tgt``, ``face`` float ``[B,1,H,W]``)::

    U     = max(beard_src, beard_tgt)                     beard region (union)
    r     = |U| / |face ∪ U|                              area ratio (claim 2c)
    W     = area_weights(r, U)                            1 outside, clamp(1/r, 1, w_max) in U
    total = l1_weight       * weighted_l1(out, tgt, W)
          + mask_bce_weight * BCE(mask, U)                edit-mask supervision
          + grad_weight     * weighted_l1(∇out, ∇tgt, W)  edges / hair texture (finite diffs)
          + lowres_weight   * weighted_l1(pool2(out), pool2(tgt), pool2(W))
          + texture_weight  * weighted_l1(E(out), E(tgt), W * U)  detail energy in the beard

``E`` is :func:`beardnet.losses.local_detail_energy` (local RMS of the fine detail): a pixel loss
averages random hair into a smear; matching the *amount* of detail per neighbourhood does not
ask which pixel holds a strand, so it rewards hair without rewarding a copy of the target's.

See :mod:`beardnet.losses` for the weighting formula. ``area_weighting=False`` makes W = 1.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from beardnet.losses import (
    DEFAULT_W_MAX,
    area_ratio,
    area_weights,
    beard_union,
    local_detail_energy,
    mask_bce,
    region_l1,
    weighted_l1,
)


class LossConfig(BaseModel):
    """Loss terms and their weights (``loss`` section of the training config)."""

    model_config = ConfigDict(extra="forbid")

    area_weighting: bool = Field(True, description="claim 2c: weight beard pixels by 1/r")
    w_max: float = Field(DEFAULT_W_MAX, ge=1.0, description="clamp of the beard-pixel weight")
    weight_power: float = Field(1.0, gt=0, description="w_b = (1/r)**power before the clamp")
    l1_weight: float = Field(1.0, ge=0)
    mask_bce_weight: float = Field(0.1, ge=0, description="edit-mask BCE towards the beard union")
    grad_weight: float = Field(0.5, ge=0, description="L1 on image gradients (hair texture)")
    lowres_weight: float = Field(0.0, ge=0, description="L1 at half resolution")
    texture_weight: float = Field(
        0.0, ge=0, description="L1 between local detail energies in the beard region"
    )


def _grads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def compute_losses(
    net: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: LossConfig | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Forward ``net`` on ``batch`` and return ``(total_loss, {name: float})``."""
    cfg = cfg or LossConfig()
    src, tgt, style = batch["src"], batch["tgt"], batch["style"]
    out, mask = net(src, style)
    out = out.float()
    tgt = tgt.float()
    u = beard_union(batch["beard_src"].float(), batch["beard_tgt"].float())
    r = area_ratio(batch["beard_src"].float(), batch["beard_tgt"].float(), batch["face"].float())
    w = area_weights(r, u, enabled=cfg.area_weighting, w_max=cfg.w_max, power=cfg.weight_power)
    l1 = weighted_l1(out, tgt, w)
    total = cfg.l1_weight * l1
    logs: dict[str, float] = {"l1": float(l1.detach())}
    if cfg.mask_bce_weight > 0:
        bce = mask_bce(mask, u)
        total = total + cfg.mask_bce_weight * bce
        logs["mask_bce"] = float(bce.detach())
    if cfg.grad_weight > 0:
        gox, goy = _grads(out)
        gtx, gty = _grads(tgt)
        g = 0.5 * (
            weighted_l1(gox, gtx, torch.minimum(w[..., :, 1:], w[..., :, :-1]))
            + weighted_l1(goy, gty, torch.minimum(w[..., 1:, :], w[..., :-1, :]))
        )
        total = total + cfg.grad_weight * g
        logs["grad"] = float(g.detach())
    if cfg.lowres_weight > 0:
        lo = weighted_l1(F.avg_pool2d(out, 2), F.avg_pool2d(tgt, 2), F.avg_pool2d(w, 2))
        total = total + cfg.lowres_weight * lo
        logs["lowres"] = float(lo.detach())
    if cfg.texture_weight > 0:
        tex = weighted_l1(local_detail_energy(out), local_detail_energy(tgt), w * u)
        total = total + cfg.texture_weight * tex
        logs["texture"] = float(tex.detach())
    with torch.no_grad():
        logs["beard_l1"] = float(region_l1(out, tgt, u))
        logs["outside_l1"] = float(region_l1(out, tgt, 1 - u))
        logs["mask_mean"] = float(mask.float().mean())
        logs["area_ratio"] = float(r.mean())
    logs["loss"] = float(total.detach())
    return total, logs


class ModelEMA:
    """Exponential moving average of a model's weights (buffers copied).

    ``decay`` ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates so an early
    EMA is not dominated by the random initialisation. ``module`` is the averaged copy (eval mode).
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.999) -> None:
        base = getattr(model, "module", model)
        self.module = copy.deepcopy(base).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold the current weights of ``model`` (DDP-wrapped or not) into the average."""
        base = getattr(model, "module", model)
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = base.state_dict()
        for k, v in self.module.state_dict().items():
            s = src[k].detach()
            if v.dtype.is_floating_point:
                v.lerp_(s.to(v.dtype), 1.0 - d)
            else:
                v.copy_(s)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["weights"])
