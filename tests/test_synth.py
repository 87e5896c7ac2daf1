"""Synthetic faces: determinism, pairing, masks, scenes, dataset writers (local and S3), CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from beardnet.categories import DEFAULT_CATEGORIES
from beardnet.geometry import canonical_points
from beardnet.synth.render import render_crop, render_identity


@pytest.fixture(scope="module")
def identities() -> dict[int, dict]:
    return {i: render_identity(i) for i in range(6)}


def test_same_seed_same_bytes() -> None:
    a = render_crop(11, "goatee")
    b = render_crop(11, "goatee")
    assert a.image.tobytes() == b.image.tobytes()
    assert np.array_equal(a.beard_mask, b.beard_mask)
    assert np.array_equal(a.face_mask, b.face_mask)
    assert a.image.dtype == np.uint8 and a.image.shape == (128, 128, 3)
    c = render_crop(12, "goatee")
    assert a.image.tobytes() != c.image.tobytes()


def test_render_crop_matches_render_identity(identities) -> None:
    for cat in ("none", "mustache", "full_beard"):
        assert np.array_equal(render_crop(3, cat).image, identities[3][cat].image)


def test_pairing_non_beard_pixels_identical(identities) -> None:
    for crops in identities.values():
        base = crops["none"].image
        assert not crops["none"].beard_mask.any()
        for cat in DEFAULT_CATEGORIES[1:]:
            c = crops[cat]
            outside = ~c.beard_mask
            assert np.array_equal(c.image[outside], base[outside]), cat
            # and the mask is not a lazy superset: most of it really changed
            changed = np.any(c.image != base, axis=2)
            assert changed[c.beard_mask].mean() > 0.6, cat
            assert np.array_equal(c.face_mask, crops["none"].face_mask)


def test_mask_sanity(identities) -> None:
    for crops in identities.values():
        area = {c: int(crops[c].beard_mask.sum()) for c in DEFAULT_CATEGORIES}
        face = crops["none"].face_mask
        assert 0.3 < face.mean() < 0.75
        for cat in DEFAULT_CATEGORIES[1:]:
            m = crops[cat].beard_mask
            assert area[cat] > 20, cat
            assert not (m & ~face).any(), f"{cat} beard outside the face mask"
        assert area["stubble"] < area["full_beard"]
        assert area["mustache"] < area["goatee"] < area["full_beard"]
        lm = crops["none"].landmarks
        mouth_y = lm["mouth"][1]
        ys, xs = np.nonzero(crops["mustache"].beard_mask)
        assert ys.mean() < mouth_y, "mustache above the mouth line"
        assert ys.min() > lm["nose"][1] - 6, "mustache starts below the nose"
        ys_g, _ = np.nonzero(crops["goatee"].beard_mask)
        assert ys_g.max() > mouth_y + 10, "goatee covers the chin"
        ys_f, xs_f = np.nonzero(crops["full_beard"].beard_mask)
        assert np.ptp(xs_f) > np.ptp(xs), "full beard wider than the mustache"
        assert ys_f.min() < lm["mouth"][1] - 15, "full beard climbs the cheeks"


def test_canonical_geometry(identities) -> None:
    pts = canonical_points(128)
    for crops in identities.values():
        lm = crops["none"].landmarks
        got = np.array([lm["left_eye"], lm["right_eye"], lm["mouth"]])
        assert np.abs(got - pts).max() < 6.0  # small jitter only


def test_other_sizes() -> None:
    c = render_crop(5, "full_beard", size=64)
    assert c.image.shape == (64, 64, 3) and c.beard_mask.shape == (64, 64)
    assert c.beard_mask.sum() > 0
    with pytest.raises(KeyError):
        render_crop(5, "braids")


def test_scenes_boxes_inside_image() -> None:
    from beardnet.synth.scenes import render_scene

    widths = []
    for seed in range(10):
        sc = render_scene(seed, max_size=360)
        h, w = sc.image.shape[:2]
        assert max(h, w) <= 360 and sc.image.dtype == np.uint8
        assert len(sc.faces) <= 3
        for f in sc.faces:
            x0, y0, x1, y1 = f["box"]
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert f["style"] in DEFAULT_CATEGORIES
            mx, my = f["landmarks"]["mouth"]
            assert x0 <= mx <= x1 and y0 <= my <= y1
            widths.append(x1 - x0)
    two = render_scene(3, max_size=420, n_faces=2)
    assert len(two.faces) == 2
    a = render_scene(4, max_size=300).image
    assert a.tobytes() == render_scene(4, max_size=300).image.tobytes()
    assert widths and min(widths) < 48


def test_splits_deterministic() -> None:
    from beardnet.synth.dataset import assign_splits

    s = assign_splits(50, seed=1)
    assert s == assign_splits(50, seed=1)
    assert s.count("train") == 40 and s.count("val") == 5 and s.count("test") == 5
    assert set(assign_splits(3)) == {"train", "val", "test"}


def test_write_crops_dataset_local(tmp_path) -> None:
    from beardnet.manifest import read_manifest, resolve_uri
    from beardnet.synth.dataset import write_crops_dataset

    out = str(tmp_path / "crops")
    summary = write_crops_dataset(out, identities=4, size=64, seed=2, use_ray=False)
    assert summary["images"] == 20
    assert summary["per_category"] == {c: 4 for c in DEFAULT_CATEGORIES}
    table = read_manifest(f"{out}/manifest.parquet", check_uris=True)
    rows = table.to_pylist()
    assert len(rows) == 20
    by_id: dict[str, set] = {}
    for r in rows:
        by_id.setdefault(r["identity"], set()).add(r["split"])
        x0, y0, x1, y1 = r["face_box"]
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
    assert all(len(s) == 1 for s in by_id.values()), "one split per identity"
    import cv2

    r = next(r for r in rows if r["category"] == "full_beard")
    img = cv2.imread(resolve_uri(f"{out}/manifest.parquet", r["uri"]), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(
        resolve_uri(f"{out}/manifest.parquet", r["beard_mask_uri"]), cv2.IMREAD_UNCHANGED
    )
    assert img.shape == (64, 64, 3) and mask.shape == (64, 64)
    assert set(np.unique(mask)) <= {0, 255} and mask.max() == 255
    # same seed -> same bytes
    out2 = str(tmp_path / "again")
    write_crops_dataset(out2, identities=1, size=64, seed=2, use_ray=False)
    a = (tmp_path / "crops" / "images" / "id2000000" / "goatee.png").read_bytes()
    assert a == (tmp_path / "again" / "images" / "id2000000" / "goatee.png").read_bytes()


def test_write_scenes_dataset_local(tmp_path) -> None:
    import pyarrow.parquet as pq

    from beardnet.synth.dataset import write_scenes_dataset

    out = tmp_path / "scenes"
    summary = write_scenes_dataset(
        str(out), count=4, seed=1, min_size=200, max_size=300, use_ray=False
    )
    assert summary["scenes"] == 4
    t = pq.read_table(out / "manifest.parquet").to_pylist()
    assert [r["uri"] for r in t] == [
        f"images/scene_{i:05d}.{'png' if i == 3 else 'jpg'}" for i in range(4)
    ]
    for r in t:
        assert (out / r["uri"]).stat().st_size > 1000
        faces = json.loads(r["faces"])
        assert len(faces) == r["n_faces"]


def test_synth_cli_help_and_run(tmp_path, capsys) -> None:
    from beardnet.cli import main

    with pytest.raises(SystemExit) as e:
        main(["synth", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--out", "--mode", "--identities", "--count", "--size", "--seed"):
        assert opt in text
    assert (
        main(
            ["synth", "--out", str(tmp_path / "c"), "--identities", "2", "--size", "48", "--no-ray"]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 10
    assert (tmp_path / "c" / "manifest.parquet").exists()


def test_write_crops_dataset_s3(s3, bucket) -> None:
    from beardnet import storage
    from beardnet.manifest import read_manifest
    from beardnet.synth.dataset import write_crops_dataset

    out = f"s3://{bucket}/synth/crops"
    summary = write_crops_dataset(out, identities=2, size=64, seed=5, s3=s3.settings, use_ray=False)
    assert summary["images"] == 10
    table = read_manifest(f"{out}/manifest.parquet", check_uris=True, s3=s3.settings)
    assert table.num_rows == 10
    keys = sorted(storage.list_keys(out, s3=s3.settings))
    assert len(keys) == 1 + 10 * 3
    assert "images/id5000000/full_beard.png" in keys


@pytest.mark.slow
def test_write_crops_dataset_over_ray(ray_session, s3, bucket) -> None:
    from beardnet.manifest import read_manifest
    from beardnet.synth.dataset import write_crops_dataset

    out = f"s3://{bucket}/synth/ray"
    summary = write_crops_dataset(out, identities=6, size=48, seed=9, s3=s3.settings, use_ray=True)
    assert summary["ray"] and summary["images"] == 30
    assert read_manifest(f"{out}/manifest.parquet", check_uris=True, s3=s3.settings).num_rows == 30


def test_detector_finds_synthetic_faces() -> None:
    pytest.importorskip("mediapipe")
    from beardnet.synth.check import detector_hit_rate

    r = detector_hit_rate(3, seed=0)
    assert r["n"] == 15
    assert r["overall"] >= 14 / 15, r["misses"]
    assert set(r["per_category"]) == set(DEFAULT_CATEGORIES)
