"""PairedCropDataset on a tiny cv2-drawn crop set (the synth layout), local and via the sampler."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pytest
import torch

from beardnet.categories import DEFAULT_CATEGORIES
from beardnet.data.paired import PairedCropDataset
from beardnet.data.sampler import RatioBatchSampler

SIZE = 32
BEARD_ROWS = {"none": 0, "stubble": 2, "mustache": 4, "goatee": 6, "full_beard": 10}


def make_crops(root: Path, identities: int = 6, split_of=lambda i: "train") -> Path:
    """``root/manifest.parquet`` + images/masks: face = disc, beard = a bar of category height."""
    from beardnet.manifest import write_manifest

    rows = []
    for i in range(identities):
        skin = ((60 + 25 * i) % 200, 120, (200 - 20 * i) % 200)
        for k, cat in enumerate(DEFAULT_CATEGORIES):
            img = np.full((SIZE, SIZE, 3), 30, np.uint8)
            face = np.zeros((SIZE, SIZE), np.uint8)
            cv2.circle(face, (16, 16), 13, 255, -1)
            img[face > 0] = skin
            beard = np.zeros((SIZE, SIZE), np.uint8)
            h = BEARD_ROWS[cat]
            if h:
                beard[28 - h : 28, 8:24] = 255
                beard &= face
                img[beard > 0] = (20 * k, 10, 10)
            d = root / "images" / str(i)
            m = root / "masks" / str(i)
            d.mkdir(parents=True, exist_ok=True)
            m.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(d / f"{cat}.png"), img[:, :, ::-1])  # RGB -> BGR on disk
            cv2.imwrite(str(m / f"{cat}_beard.png"), beard)
            cv2.imwrite(str(m / f"{cat}_face.png"), face)
            rows.append({
                "uri": f"images/{i}/{cat}.png", "identity": f"id{i}", "category": cat,
                "beard_mask_uri": f"masks/{i}/{cat}_beard.png",
                "face_mask_uri": f"masks/{i}/{cat}_face.png", "face_box": None,
                "split": split_of(i),
            })
    write_manifest(pa.Table.from_pylist(rows), str(root / "manifest.parquet"))
    return root


def test_pairs_shapes_and_values(tmp_path) -> None:
    root = make_crops(tmp_path, split_of=lambda i: "val" if i == 5 else "train")
    ds = PairedCropDataset(str(root), split="train", size=SIZE, augment=False)
    assert len(ds) == 25
    cats = ds.categories_array()
    assert np.bincount(cats, minlength=5).tolist() == [5] * 5
    item = ds[7]
    assert item["src"].shape == (3, SIZE, SIZE) and item["src"].dtype == torch.float32
    assert item["beard_tgt"].shape == (1, SIZE, SIZE) and item["face"].shape == (1, SIZE, SIZE)
    assert int(item["style"]) == int(cats[7])
    assert int(item["src_style"]) != int(item["style"])  # a different category
    src_row, tgt_row = ds.pair(7)
    assert ds._ident[src_row] == ds._ident[tgt_row]  # same identity
    # colours decoded as RGB: skin of identity inside face, off the beard
    for i in range(len(ds)):
        it = ds[i]
        outside = (it["face"][0] > 0.5) & (it["beard_src"][0] < 0.5) & (it["beard_tgt"][0] < 0.5)
        assert torch.allclose(it["src"][:, outside], it["tgt"][:, outside])
        if int(it["style"]) == 0:
            assert float(it["beard_tgt"].sum()) == 0
        else:
            assert float(it["beard_tgt"].sum()) > 0
    mx = float(ds[0]["src"].max())
    assert 0 < mx <= 1


def test_deterministic_per_epoch_and_augment_identical(tmp_path) -> None:
    root = make_crops(tmp_path)
    ds = PairedCropDataset(str(root / "manifest.parquet"), size=SIZE, augment=True, seed=1,
                           preload=True)
    a = ds[3]
    b = ds[3]
    assert torch.equal(a["src"], b["src"]) and torch.equal(a["tgt"], b["tgt"])
    pairs0 = [ds.pair(i)[0] for i in range(len(ds))]
    ds.set_epoch(1)
    pairs1 = [ds.pair(i)[0] for i in range(len(ds))]
    assert pairs0 != pairs1
    # the same jitter on both images: pixels outside the beards stay equal after augmentation
    for i in range(10):
        it = ds[i]
        keep = (it["beard_src"][0] == 0) & (it["beard_tgt"][0] == 0)
        # away from the soft mask border (bilinear warps blend neighbours)
        keep = torch.from_numpy(cv2.erode(keep.numpy().astype(np.uint8), np.ones((3, 3)))) > 0
        assert torch.allclose(it["src"][:, keep], it["tgt"][:, keep], atol=1e-5)


def test_with_sampler_and_dataloader(tmp_path) -> None:
    root = make_crops(tmp_path)
    ds = PairedCropDataset(str(root), size=SIZE, augment=True)
    sampler = RatioBatchSampler(ds.categories_array(), {c: 1 for c in DEFAULT_CATEGORIES}, 4)
    dl = torch.utils.data.DataLoader(ds, batch_sampler=sampler)
    n = 0
    for batch in dl:
        assert batch["src"].shape == (5, 3, SIZE, SIZE)
        assert sorted(batch["style"].tolist()) == [0, 1, 2, 3, 4]
        n += 1
    assert n == 4


def test_rows_repeat_and_errors(tmp_path) -> None:
    root = make_crops(tmp_path, identities=2)
    ds = PairedCropDataset(str(root), size=16, augment=False, rows=np.array([0, 0, 3]))
    assert len(ds) == 3 and ds[0]["src"].shape == (3, 16, 16)  # resized
    assert ds.categories_array().tolist() == [ds._cat[0]] * 2 + [ds._cat[3]]
    with pytest.raises(ValueError, match="split"):
        PairedCropDataset(str(root), split="test")
    with pytest.raises(IndexError):
        ds[3]


def test_epoch_travels_with_the_index_into_persistent_workers(tmp_path) -> None:
    """Pairing and augmentation are re-drawn per epoch inside persistent DataLoader workers:
    each batch element equals the main process's ``ds[(epoch, i)]``, and epochs differ."""
    from beardnet.train.data import EpochBatches, collate

    root = make_crops(tmp_path)
    ds = PairedCropDataset(str(root), size=SIZE, augment=True, seed=5)
    sampler = RatioBatchSampler(ds.categories_array(), {c: 1 for c in DEFAULT_CATEGORIES}, 6)
    dl = torch.utils.data.DataLoader(
        ds, batch_sampler=EpochBatches(sampler), num_workers=1, persistent_workers=True,
        collate_fn=collate,
    )
    seen = {}
    for epoch in (0, 1):
        sampler.set_epoch(epoch)  # the main process only: the worker never hears of it
        for batch in dl:
            assert (batch["epoch"] == epoch).all()
            for j, i in enumerate(batch["index"].tolist()):
                ref = ds[(epoch, i)]
                assert torch.equal(batch["src"][j], ref["src"])
                seen[(epoch, i)] = (int(batch["src_style"][j]), batch["src"][j])
    common = [i for (e, i) in seen if e == 0 and (1, i) in seen]
    assert common
    assert any(not torch.equal(seen[(0, i)][1], seen[(1, i)][1]) for i in common)


def test_target_column_and_self_pairs(tmp_path) -> None:
    """Rows with ``target = false`` are sources only; ``self_pair_share`` sets how often a
    target pairs with itself, and the report counts forced self-pairs."""
    from beardnet.data.paired import target_rows
    from beardnet.manifest import read_manifest, write_manifest

    root = make_crops(tmp_path, identities=4)
    t = read_manifest(str(root / "manifest.parquet"))
    flags = [c == "mustache" or i % 5 == 0 for i, c in enumerate(t.column("category").to_pylist())]
    t = t.append_column("target", pa.array(flags))
    write_manifest(t, str(root / "manifest.parquet"))
    t = read_manifest(str(root / "manifest.parquet"))
    assert target_rows(t).tolist() == [i for i, f in enumerate(flags) if f]
    ds = PairedCropDataset(str(root), size=SIZE, augment=False, self_pair_share=0.0)
    assert len(ds) == sum(flags)
    pairs = [ds.pair(i) for i in range(len(ds))]
    assert all(s != t for s, t in pairs)  # every identity has other styles: no self-pairs
    sources = {s for s, _ in pairs}
    assert sources - set(np.flatnonzero(flags).tolist())  # source-only rows serve as sources
    rep = ds.pairing_report()
    assert rep["forced_self_pairs"] == 0 and rep["expected_self_pairs_per_epoch"] == 0
    all_self = PairedCropDataset(str(root), size=SIZE, augment=False, self_pair_share=1.0)
    assert all(s == t for s, t in (all_self.pair(i) for i in range(len(all_self))))
    half = PairedCropDataset(str(root), size=SIZE, augment=False, self_pair_share=0.5)
    n_self = sum(s == t for e in range(20) for s, t in (half.pair(i, e) for i in range(len(half))))
    assert 0.3 < n_self / (20 * len(half)) < 0.7
    lonely = PairedCropDataset(str(root), size=SIZE, augment=False, rows=np.array([0]))
    lonely._cat[:] = 0  # one category only: every pair is forced onto itself
    assert lonely.pairing_report()["forced_self_pairs"] == 1
    with pytest.raises(ValueError, match="self_pair_share"):
        PairedCropDataset(str(root), size=SIZE, self_pair_share=1.5)


def test_extra_crop_sets_join_the_training_set(tmp_path) -> None:
    """``data.extra_uris``: a second crop set's rows join the first, with absolute image URIs
    and identities that cannot pair across sets (same names in both sets stay apart)."""
    from beardnet.config import load_config
    from beardnet.train.config import TrainConfig
    from beardnet.train.data import build_training_set

    a, b = make_crops(tmp_path / "a", identities=3), make_crops(tmp_path / "b", identities=2)
    cfg = load_config(TrainConfig, None, [f"data.uri={a}", f"data.size={SIZE}",
                                          f"data.extra_uris=[\"{b}\"]", "data.augment=false"])
    ds, report = build_training_set(cfg, None)
    assert len(ds) == 5 * 5 and report["source_counts"]["none"] == 5
    in_b = [str(tmp_path / "b") in u for u in ds._uri]  # manifest rows, URIs made absolute
    assert sum(in_b) == 10 and all(u.startswith(str(tmp_path)) for u in ds._uri)
    for i in range(len(ds)):
        s, t = ds.pair(i)
        assert in_b[s] == in_b[t]  # never a pair across sets
    item = ds[(0, len(ds) - 1)]
    assert item["src"].shape == (3, SIZE, SIZE)


def test_degrade_makes_both_sides_a_small_jpeg_face_alike(tmp_path) -> None:
    """data.degrade: a self-pair stays identical on both sides, the crop loses its sharp
    edges (JPEG here: 32 px crops are under the smallest face width), the draw is the same for
    the same seed and epoch, and degrade=0 leaves the pair as it was."""
    root = make_crops(tmp_path)
    plain = PairedCropDataset(str(root), size=SIZE, augment=False, self_pair_share=1.0)
    deg = PairedCropDataset(str(root), size=SIZE, augment=False, self_pair_share=1.0, degrade=1.0)
    again = PairedCropDataset(str(root), size=SIZE, augment=False, self_pair_share=1.0,
                              degrade=1.0)
    a, b, c = plain[(0, 3)], deg[(0, 3)], again[(0, 3)]
    assert torch.equal(b["src"], b["tgt"])
    assert torch.equal(b["src"], c["src"])
    assert not torch.equal(a["src"], b["src"])

    def edge(x: torch.Tensor) -> float:
        return float((x[:, :, 1:] - x[:, :, :-1]).abs().max())

    assert edge(b["src"]) < edge(a["src"])
    with pytest.raises(ValueError, match="degrade"):
        PairedCropDataset(str(root), size=SIZE, degrade=1.5)


def test_degrade_at_crop_size_blurs_fine_detail_like_a_small_face() -> None:
    from beardnet.data.paired import degrade_like_a_small_photo

    yy, xx = np.mgrid[:128, :128]
    fine = np.repeat((((yy // 2) + (xx // 2)) % 2).astype(np.float32)[:, :, None], 3, axis=2)
    for seed in range(5):
        out = degrade_like_a_small_photo(np.random.default_rng(seed), [fine, fine.copy()])
        assert np.array_equal(out[0], out[1])
        assert float(np.abs(np.diff(out[0], axis=1)).mean()) < 0.5 * float(
            np.abs(np.diff(fine, axis=1)).mean())
