"""Area-weighted loss (claim 2c) on hand-computed tensors."""

from __future__ import annotations

import pytest
import torch

from beardnet.losses import area_ratio, area_weights, mask_bce, region_l1, weighted_l1


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).view(1, 1, 2, 2)


def test_area_ratio_union_over_face() -> None:
    src = t([[1, 0], [0, 0]])
    tgt = t([[0, 1], [0, 0]])
    face = t([[1, 1], [1, 1]])
    assert area_ratio(src, tgt, face).tolist() == [0.5]
    # beard outside the face mask still counts in the face region: |U| = 2, |F ∪ U| = 3
    face2 = t([[0, 1], [1, 0]])
    assert area_ratio(src, tgt, face2).item() == pytest.approx(2 / 3)
    # empty face and beard: 0, not NaN
    z = t([[0, 0], [0, 0]])
    assert area_ratio(z, z, z).tolist() == [0.0]


def test_area_weights_formula_and_clamp() -> None:
    u = t([[1, 0], [0, 0]])
    w = area_weights(torch.tensor([0.25]), u)
    assert w.flatten().tolist() == [4.0, 1.0, 1.0, 1.0]  # 1/r = 4
    w = area_weights(torch.tensor([0.01]), u, w_max=20)
    assert w.flatten().tolist() == [20.0, 1.0, 1.0, 1.0]  # clamped to w_max
    w = area_weights(torch.tensor([0.0]), u, w_max=5)
    assert w.flatten().tolist() == [5.0, 1.0, 1.0, 1.0]  # r = 0 is safe
    w = area_weights(torch.tensor([1.0]), u)
    assert w.flatten().tolist() == [1.0, 1.0, 1.0, 1.0]  # beard fills the face: no boost
    w = area_weights(torch.tensor([0.25]), u, power=0.5)
    assert w.flatten().tolist() == [2.0, 1.0, 1.0, 1.0]
    # soft masks interpolate
    w = area_weights(torch.tensor([0.25]), t([[0.5, 0], [0, 0]]))
    assert w.flatten().tolist() == [2.5, 1.0, 1.0, 1.0]
    # off switch
    assert area_weights(torch.tensor([0.25]), u, enabled=False).flatten().tolist() == [1.0] * 4


def test_weighted_l1_hand_computed() -> None:
    pred = torch.zeros(1, 1, 2, 2)
    target = t([[1, 0], [0, 0.5]])
    w = t([[4, 1], [1, 1]])
    # (4*1 + 0 + 0 + 1*0.5) / (4+1+1+1) = 4.5/7
    assert weighted_l1(pred, target, w).item() == pytest.approx(4.5 / 7)
    # unweighted = plain mean
    assert weighted_l1(pred, target, torch.ones_like(w)).item() == pytest.approx(1.5 / 4)
    # a uniform error e gives e whatever the weights (scale independent of beard size)
    assert weighted_l1(pred, torch.full_like(pred, 0.3), w).item() == pytest.approx(0.3)


def test_weighted_l1_per_sample_normalisation_and_channels() -> None:
    # two samples, 3 channels: per-sample normalisation then batch mean
    pred = torch.zeros(2, 3, 2, 2)
    target = torch.zeros(2, 3, 2, 2)
    target[0, :, 0, 0] = 1.0  # sample 0: error 1 on the heavy pixel in all channels
    target[1, 0, 1, 1] = 0.6  # sample 1: error 0.6 on one channel of one pixel
    w = torch.ones(2, 1, 2, 2)
    w[0, 0, 0, 0] = 5.0
    s0 = (5 * 3) / (8 * 3)
    s1 = 0.6 / (4 * 3)
    assert weighted_l1(pred, target, w).item() == pytest.approx((s0 + s1) / 2)


def test_small_beard_weighs_like_whole_face() -> None:
    # 1 beard pixel in a 4-pixel face: r = 1/4, w_b = 4: the beard carries half the weight
    u = t([[1, 0], [0, 0]])
    face = torch.ones(1, 1, 2, 2)
    r = area_ratio(u, u, face)
    w = area_weights(r, u)
    beard_share = (w * u).sum() / w.sum()
    assert beard_share.item() == pytest.approx(4 / 7)


def test_mask_bce_and_region_l1() -> None:
    m = t([[0.5, 0.5], [0.5, 0.5]])
    u = t([[1, 0], [0, 0]])
    assert mask_bce(m, u).item() == pytest.approx(0.6931472, rel=1e-5)  # ln 2
    assert mask_bce(u, u).item() < 1e-5
    pred = torch.zeros(1, 1, 2, 2)
    assert region_l1(pred, t([[1, 0], [0, 3]]), u).item() == pytest.approx(1.0)
    assert region_l1(pred, t([[1, 0], [0, 3]]), 1 - u).item() == pytest.approx(1.0)
    assert region_l1(pred, pred, torch.zeros_like(u)).item() == 0.0


def test_detail_energy_tells_hair_from_smear_wherever_the_strands_are() -> None:
    """The texture term: a smear (the pixel-loss optimum for random hair) is far from hair;
    the same hair shifted by 2 px is close, though its pixel L1 is as large as the smear's."""
    from beardnet.losses import local_detail_energy

    g = torch.Generator().manual_seed(0)
    hair = 0.4 + 0.2 * (torch.rand(1, 3, 32, 32, generator=g) > 0.5).float()
    smear = torch.full_like(hair, float(hair.mean()))
    shifted = torch.roll(hair, shifts=2, dims=-1)
    e = local_detail_energy
    inner = (..., slice(4, -4), slice(4, -4))
    d_smear = float((e(smear) - e(hair))[inner].abs().mean())
    d_shift = float((e(shifted) - e(hair))[inner].abs().mean())
    assert d_shift < 0.2 * d_smear
    assert float((shifted - hair).abs().mean()) >= float((smear - hair).abs().mean())


def test_texture_weight_adds_the_term_and_its_gradient() -> None:
    from beardnet.model import BeardNet
    from beardnet.train.step import LossConfig, compute_losses

    torch.manual_seed(0)
    net = BeardNet(base=8, size=32)
    b, s = 2, 32
    beard = torch.zeros(b, 1, s, s)
    beard[..., 16:28, 8:24] = 1.0
    batch = {"src": torch.rand(b, 3, s, s), "tgt": torch.rand(b, 3, s, s),
             "style": torch.tensor([1, 3]), "beard_src": beard, "beard_tgt": beard,
             "face": torch.ones(b, 1, s, s)}
    off, logs_off = compute_losses(net, batch, LossConfig(texture_weight=0.0))
    on, logs_on = compute_losses(net, batch, LossConfig(texture_weight=1.0))
    assert "texture" not in logs_off and logs_on["texture"] > 0
    assert abs(float(on - off) - logs_on["texture"]) < 1e-4
