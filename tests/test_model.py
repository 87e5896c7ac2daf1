"""BeardNet shapes, pass-through, budget; artifact round trip; training step and EMA."""

from __future__ import annotations

import json

import pytest
import torch

from beardnet.model import ArtifactError, BeardNet, count_flops, count_params, load, save_artifact
from beardnet.train.step import LossConfig, ModelEMA, compute_losses


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread avoids oversubscription stalls on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _batch(b: int = 4, size: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    src = torch.rand(b, 3, size, size, generator=g)
    beard_src = torch.zeros(b, 1, size, size)
    beard_src[:, :, size // 2 :, size // 4 : 3 * size // 4] = 1
    beard_tgt = torch.zeros(b, 1, size, size)
    face = torch.zeros(b, 1, size, size)
    face[:, :, size // 8 :, size // 8 : 7 * size // 8] = 1
    tgt = src * (1 - beard_src) + 0.7 * beard_src
    return {
        "src": src,
        "tgt": tgt,
        "style": torch.zeros(b, dtype=torch.long),
        "beard_src": beard_src,
        "beard_tgt": beard_tgt,
        "face": face,
    }


@torch.no_grad()
def test_shapes_and_sizes() -> None:
    net = BeardNet().eval()
    for size in (64, 128, 96):
        x = torch.rand(2, 3, size, size)
        out, m = net(x, torch.tensor([0, 3]))
        assert out.shape == x.shape and m.shape == (2, 1, size, size)
        assert float(out.detach().min()) >= 0 and float(out.detach().max()) <= 1
    with pytest.raises(ValueError, match="multiple"):
        net(torch.rand(1, 3, 72, 72), torch.tensor([0]))


@torch.no_grad()
def test_fresh_net_mostly_passes_through() -> None:
    torch.manual_seed(0)
    net = BeardNet().eval()
    x = torch.rand(2, 3, 64, 64)
    out, m = net(x, torch.tensor([1, 4]))
    assert float(m.mean()) < 0.05
    assert float((out - x).abs().mean()) < 0.03


def test_blend_exact_where_mask_is_zero() -> None:
    net = BeardNet().eval()
    with torch.no_grad():
        net.head.bias[12:].fill_(-60.0)  # mask -> 0 everywhere
        net.head.weight[12:].zero_()
    x = torch.rand(1, 3, 64, 64)
    out, _m = net(x, torch.tensor([2]))
    assert torch.allclose(out, x, atol=1e-6)


def test_style_changes_output() -> None:
    torch.manual_seed(1)
    net = BeardNet()
    with torch.no_grad():
        net.head.bias[12:].fill_(0.0)
        for p in net.parameters():  # make the FiLM paths live
            if p.dim() == 2:
                p.normal_(0, 0.2)
    x = torch.rand(1, 3, 64, 64)
    a, _ = net(x, torch.tensor([0]))
    b, _ = net(x, torch.tensor([4]))
    assert float((a - b).abs().max()) > 1e-3


def test_budget() -> None:
    net = BeardNet()
    assert 0.5e6 <= count_params(net) <= 2e6
    assert count_flops(net, 128) <= 1.0e9


def test_compute_losses_and_backward() -> None:
    net = BeardNet()
    batch = _batch()
    total, logs = compute_losses(net, batch, LossConfig())
    total.backward()
    assert set(logs) >= {"loss", "l1", "mask_bce", "beard_l1", "outside_l1", "area_ratio"}
    assert logs["area_ratio"] == pytest.approx((32 * 32) / (56 * 48), rel=1e-4)
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    _off, logs_off = compute_losses(net, batch, LossConfig(area_weighting=False))
    assert logs_off["l1"] < logs["l1"]  # the error sits in the beard: weighting raises it
    with pytest.raises(ValueError):
        LossConfig(bogus=1)  # type: ignore[call-arg]


def test_a_few_steps_reduce_loss_and_ema_follows() -> None:
    torch.manual_seed(0)
    net = BeardNet(base=8)
    ema = ModelEMA(net, decay=0.9)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    batch = _batch(4, 32)
    first = None
    for _ in range(20):
        loss, _ = compute_losses(net, batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(net)
    assert loss.item() < 0.7 * first
    w_net = net.head.bias.detach()
    w_ema = ema.module.head.bias
    assert not torch.equal(w_net, w_ema)
    assert float((w_net - w_ema).abs().max()) < 1.0
    st = ema.state_dict()
    ema2 = ModelEMA(BeardNet(base=8))
    ema2.load_state_dict(st)
    assert ema2.updates == 20 and torch.equal(ema2.module.head.bias, w_ema)


def test_artifact_round_trip_local(tmp_path) -> None:
    net = BeardNet(base=16, size=64)
    meta = save_artifact(net, str(tmp_path / "m"), {"metrics": {"x": 1.0}, "training": {"a": 2}})
    assert (tmp_path / "m" / "model.safetensors").is_file()
    js = json.loads((tmp_path / "m" / "model.json").read_text())
    assert js["kwargs"]["base"] == 16 and js["input_size"] == 64 and len(js["model_id"]) == 12
    lm = load(str(tmp_path / "m"))
    assert lm.model_id == meta["model_id"] and lm.input_size == 64
    assert lm.categories.names[0] == "none" and not lm.net.training
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net.eval()(x, torch.tensor([3]))[0], lm.net(x, torch.tensor([3]))[0])
    with pytest.raises(ArtifactError, match="model.json"):
        load(str(tmp_path / "nothing"))


def test_artifact_round_trip_s3(s3, bucket) -> None:
    net = BeardNet(base=16, size=64)
    uri = f"s3://{bucket}/models/a"
    meta = save_artifact(net, uri, {})
    lm = load(uri)
    assert lm.model_id == meta["model_id"]
    for k, v in net.state_dict().items():
        assert torch.equal(v, lm.net.state_dict()[k])
