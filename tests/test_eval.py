"""Evaluation metrics on hand-made cases, and `beardnet eval` on a tiny rendered crop set."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from beardnet.evaluate.metrics import (
    MAX_PSNR,
    StyleMetrics,
    dilate,
    markdown_table,
    psnr,
    psnr_from_mse,
    regions,
    summarize,
)

STYLES = ("none", "stubble", "mustache", "goatee", "full_beard")


def test_psnr_hand_computed() -> None:
    a = np.zeros((1, 4, 4, 3), np.float32)
    b = np.full((1, 4, 4, 3), 0.1, np.float32)  # mse 0.01 -> 20 dB
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr_from_mse(1e-4) == pytest.approx(40.0)
    assert psnr(a, a) == MAX_PSNR
    # only the masked pixels count: error in one pixel of 16, mask on that pixel only
    c = a.copy()
    c[0, 1, 2] = 0.5
    m = np.zeros((1, 4, 4), bool)
    m[0, 1, 2] = True
    assert psnr(c, a, m) == pytest.approx(10 * math.log10(1 / 0.25))
    assert psnr(c, a, ~m) == MAX_PSNR
    with pytest.raises(ValueError, match="empty"):
        psnr(a, b, np.zeros((1, 4, 4), bool))


def test_uint8_and_torch_inputs_agree() -> None:
    import torch

    rng = np.random.default_rng(0)
    a8 = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    b8 = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    ta = torch.from_numpy(a8).permute(0, 3, 1, 2).float() / 255
    tb = torch.from_numpy(b8).permute(0, 3, 1, 2).float() / 255
    assert psnr(a8, b8) == pytest.approx(psnr(ta, tb), abs=1e-4)


def test_regions_union_and_margin() -> None:
    src = np.zeros((1, 9, 9), bool)
    tgt = np.zeros((1, 9, 9), bool)
    src[0, 4, 4] = True
    tgt[0, 4, 5] = True
    beard, outside = regions(src, tgt, margin=0)
    assert beard.sum() == 2 and outside.sum() == 81 - 2
    beard, outside = regions(src, tgt, margin=1)
    assert beard.sum() == 2
    assert outside.sum() == 81 - 3 * 4  # a 3x4 block around the two pixels is left out
    assert dilate(src, 2).sum() == 25


def test_style_metrics_per_style() -> None:
    """Two styles, hand-made: exact outside, known error inside, one wrong classification."""
    h = 8
    tgt = np.zeros((4, h, h, 3), np.float32)
    out = tgt.copy()
    beard = np.zeros((4, h, h), bool)
    beard[:, 2:4, 2:4] = True  # 4 pixels per sample
    out[:, 2:4, 2:4] = 0.1  # |err| 0.1 in the beard region -> mse 0.01 -> 20 dB, L1 0.1
    out[3, 2:4, 2:4] = 0.2  # sample 3 (style 4): mse 0.04 -> ~14 dB
    sm = StyleMetrics(STYLES, margin=0)
    sm.add([0, 0], out[:2], tgt[:2], beard[:2], np.zeros((2, h, h), bool), predicted_style=[0, 1])
    sm.add([4, 4], out[2:], tgt[2:], np.zeros((2, h, h), bool), beard[2:], predicted_style=[4, 4])
    r = sm.result()
    assert r["none"]["style_accuracy"] == 0.5
    assert r["none"]["beard_psnr"] == pytest.approx(20.0)
    assert r["none"]["beard_l1"] == pytest.approx(0.1)
    assert r["none"]["outside_psnr"] == MAX_PSNR
    assert r["none"]["samples"] == 2
    # pooled over the style: mse = (0.01 + 0.04) / 2
    assert r["full_beard"]["beard_psnr"] == pytest.approx(10 * math.log10(1 / 0.025))
    assert r["full_beard"]["beard_l1"] == pytest.approx(0.15)
    assert r["full_beard"]["style_accuracy"] == 1.0
    assert r["stubble"]["samples"] == 0 and r["stubble"]["beard_psnr"] is None
    mean = summarize(r)
    assert mean["style_accuracy"] == pytest.approx(0.75)
    table = markdown_table(r, "t")
    assert "| none | 50.0% | 20.00 |" in table and "| stubble | - |" in table


def test_outside_error_is_seen() -> None:
    h = 8
    tgt = np.full((1, h, h, 3), 0.5, np.float32)
    out = tgt.copy()
    out[0, 0, 0] = 0.6  # a corner pixel changed, far from the beard
    beard = np.zeros((1, h, h), bool)
    beard[0, 5:7, 3:5] = True
    sm = StyleMetrics(STYLES, margin=2)
    sm.add([2], out, tgt, beard, beard)
    r = sm.result()["mustache"]
    assert r["beard_psnr"] == MAX_PSNR
    n_out = h * h - 5 * 6  # minus the dilated block: rows 3..7 (clipped at 8), cols 1..6
    outside = ~dilate(beard, 2)
    assert outside.sum() == n_out
    assert r["outside_psnr"] == pytest.approx(
        10 * math.log10(1 / (3 * 0.01 / (n_out * 3))), rel=1e-4
    )


def _render_set(root: Path, ids: int, size: int = 64) -> None:
    import cv2
    import pyarrow as pa

    from beardnet.manifest import write_manifest
    from beardnet.synth.render import render_identity

    rows = []
    for i in range(ids):
        crops = render_identity(1000 + i, size)
        for cat, c in crops.items():
            (root / "images" / str(i)).mkdir(parents=True, exist_ok=True)
            (root / "masks" / str(i)).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "images" / str(i) / f"{cat}.png"), c.image[:, :, ::-1])
            cv2.imwrite(
                str(root / "masks" / str(i) / f"{cat}_beard.png"),
                c.beard_mask.astype(np.uint8) * 255,
            )
            rows.append(
                {
                    "uri": f"images/{i}/{cat}.png",
                    "identity": f"id{i}",
                    "category": cat,
                    "beard_mask_uri": f"masks/{i}/{cat}_beard.png",
                    "face_mask_uri": None,
                    "face_box": None,
                    "split": "test",
                }
            )
    write_manifest(pa.Table.from_pylist(rows), str(root / "manifest.parquet"))


def test_eval_cli_on_random_model(tmp_path) -> None:
    """`beardnet eval` end to end: a random (pass-through-ish) model scores close to copying
    the input, writes metrics.json with per-style keys and a contact sheet of the right shape."""
    import cv2
    import torch

    from beardnet.cli import main
    from beardnet.model import BeardNet, save_artifact

    data = tmp_path / "crops"
    _render_set(data, 3)
    torch.manual_seed(0)
    net = BeardNet(categories=5, base=8, size=64)
    save_artifact(net, str(tmp_path / "model"), {"categories": list(STYLES)})
    rc = main(
        [
            "eval",
            "--model",
            str(tmp_path / "model"),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "out"),
            "--max-identities",
            "0",
        ]
    )
    assert rc == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(m["per_style"]) == set(STYLES)
    for s in STYLES:
        assert set(m["per_style"][s]) >= {
            "style_accuracy",
            "beard_psnr",
            "beard_l1",
            "outside_psnr",
        }
        assert m["per_style"][s]["samples"] == 3 * 4
    assert m["pairs"] == 3 * 20
    # a fresh net's mask is ~0.02: the output is nearly the input, so outside PSNR is high and
    # beard PSNR near the copy-the-input reference
    for s in STYLES:
        assert m["per_style"][s]["outside_psnr"] > 30
        assert abs(m["per_style"][s]["beard_psnr"] - m["copy_input"][s]["beard_psnr"]) < 1.0
    sheet = cv2.imread(str(tmp_path / "out" / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 3 * 64 and sheet.shape[1] > 6 * 64
    assert m["quality_bars"]["style_accuracy_90"] is False


def test_beard_detail_ratio_tells_a_smear_from_hair() -> None:
    """beard_detail: output / target detail in the beard region; a flat smear of the target's
    mean colour scores near 0, the target itself 1, a brighter-contrast copy above 1."""
    rng = np.random.default_rng(0)
    n, h = 2, 32
    tgt = np.full((n, h, h, 3), 0.6, np.float32)
    hair = (rng.random((n, h, h)) > 0.5).astype(np.float32) * 0.3
    beard = np.zeros((n, h, h), bool)
    beard[:, 12:28, 6:26] = True
    tgt[beard] -= hair[beard][:, None]
    smear = tgt.copy()
    smear[beard] = tgt[beard].mean(0)
    contrast = tgt.copy()
    contrast[beard] = 0.6 + 1.5 * (tgt[beard] - 0.6)
    none_beard = np.zeros_like(beard)
    results = []
    for out in (tgt, smear, contrast):
        sm = StyleMetrics(STYLES, margin=0)
        sm.add([3, 3], out, tgt, none_beard, beard)
        results.append(sm.result()["goatee"]["beard_detail"])
    same, flat, strong = results
    assert same == pytest.approx(1.0)
    assert flat < 0.5 and 1.3 < strong < 1.7  # (the flat patch keeps its edge)
