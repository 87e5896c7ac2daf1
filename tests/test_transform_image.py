"""The per-image transform: edits only inside beard zones, formats kept, faces counted."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from beardnet.categories import DEFAULT
from beardnet.faces import get_locator
from beardnet.infer.codec import BadImage, decode
from beardnet.infer.transform import (
    Prepared,
    TransformOptions,
    apply,
    prepare,
    run_network,
    transform_image,
)
from beardnet.model import BeardNet, LoadedModel
from beardnet.synth.render import render_crop


class Paint(torch.nn.Module):
    """Stand-in with the BeardNet contract: paints the whole crop one colour (mask = 1)."""

    def forward(self, x: torch.Tensor, style: torch.Tensor):
        edit = torch.zeros_like(x)
        edit[:, 1] = 1.0  # pure green
        m = torch.ones_like(x[:, :1])
        return m * edit + (1 - m) * x, m


def _model(net: torch.nn.Module) -> LoadedModel:
    return LoadedModel(net=net.eval(), meta={}, categories=DEFAULT, input_size=128, model_id="test")


def _photo(sizes: list[int], h: int = 360, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = sum(sizes) + 20 * (len(sizes) + 1)
    img = (rng.random((h, w, 3)) * 30 + 100).astype(np.uint8)
    x = 20
    for i, s in enumerate(sizes):
        y = (h - s) // 2
        img[y : y + s, x : x + s] = render_crop(seed * 7 + i, "none", s).image
        x += s + 20
    return img


def _enc(img: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _zones_union(prep: Prepared, shape) -> np.ndarray:
    u = np.zeros(shape[:2], bool)
    for z in prep.zones:
        u |= z.full(shape)
    return u


@pytest.fixture(scope="module")
def locator():
    return get_locator("mediapipe")


def test_png_edits_only_inside_zones_bit_exact_outside(locator) -> None:
    img = _photo([140, 200])
    data = _enc(img, "PNG")
    opts = TransformOptions(style="full_beard")
    out, info = transform_image(data, "a/b.png", _model(Paint()), opts, locator=locator)
    assert info["status"] == "ok" and info["faces"] == 2 and info["faces_small"] == 0
    assert info["format"] == "png" and 0 < info["beard_area_ratio"] < 1.5
    for k in ("decode_s", "faces_s", "network_s", "encode_s"):
        assert info[k] >= 0 and info["timings"][k] == info[k]
    res = decode(out)
    assert res.format == "png" and res.image.shape == img.shape
    prep = prepare(data, "a/b.png", opts, locator)
    zones = _zones_union(prep, img.shape)
    assert np.array_equal(res.image[~zones], img[~zones])  # bit-exact outside
    changed = np.any(res.image != img, axis=2)
    assert changed.sum() > 0.5 * zones.sum()  # the painted edit landed in the zones
    # ... on the lower halves of the faces: nothing changed above the eyes.
    for f in prep.faces:
        top = int(min(f.left_eye[1], f.right_eye[1]))
        assert not changed[:top, int(f.box[0]) : int(f.box[2])].any()


def test_split_api_matches_convenience(locator) -> None:
    img = _photo([160])
    data = _enc(img, "PNG")
    model = _model(Paint())
    opts = TransformOptions(style="goatee")
    prep = prepare(data, "x.png", opts, locator)
    assert prep.n_faces == 1 and prep.crops.shape == (1, 128, 128, 3)
    edited, masks = run_network(model, prep.crops, DEFAULT.index("goatee"))
    assert edited.dtype == np.uint8 and masks.shape == (1, 128, 128)
    out1, info1 = apply(prep, edited, masks)
    out2, info2 = transform_image(data, "x.png", model, opts, locator=locator)
    assert out1 == out2 and info1["faces"] == info2["faces"] == 1
    with pytest.raises(ValueError):
        apply(prep, edited[:0])
    # Prepared survives pickling (the Ray job ships it between stages) without its crops.
    import dataclasses
    import pickle

    light = pickle.loads(pickle.dumps(dataclasses.replace(prep, crops=None)))
    out3, _ = apply(light, edited, masks)
    assert out3 == out1  # crops re-cut from the decoded image: the same result


def test_no_face_returns_input_unchanged(locator) -> None:
    rng = np.random.default_rng(4)
    img = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    data = _enc(img, "JPEG", quality=80)
    out, info = transform_image(data, "n.jpg", _model(Paint()), TransformOptions(), locator=locator)
    assert info["status"] == "no_face" and info["faces"] == 0
    assert out == data


def test_small_faces_counted_and_left_alone(locator) -> None:
    img = _photo([90, 220])
    data = _enc(img, "PNG")
    opts = TransformOptions(style="mustache", min_face_px=120)
    out, info = transform_image(data, "s.png", _model(Paint()), opts, locator=locator)
    assert info["faces"] == 1 and info["faces_small"] == 1 and info["faces_found"] == 2
    res = decode(out).image
    assert np.array_equal(res[:, :130], img[:, :130])  # the small face's strip is untouched
    assert np.any(res[:, 130:] != img[:, 130:])
    # Only small faces: nothing edited, the input comes back as is.
    out, info = transform_image(
        data, "s.png", _model(Paint()), TransformOptions(min_face_px=400), locator=locator
    )
    assert info["status"] == "no_face" and info["faces_small"] == 2 and out == data


def test_max_faces_and_multiple_faces(locator) -> None:
    img = _photo([110, 130, 150])
    data = _enc(img, "PNG")
    _, info = transform_image(data, "m.png", _model(Paint()), TransformOptions(), locator=locator)
    assert info["faces"] == 3
    _, info = transform_image(
        data, "m.png", _model(Paint()), TransformOptions(max_faces=1), locator=locator
    )
    assert info["faces"] == 1 and info["faces_skipped"] == 2


def test_jpeg_exif_rotated_and_quality(locator) -> None:
    img = _photo([180])
    stored = np.ascontiguousarray(np.rot90(img, 1))  # stored rotated; EXIF 6 turns it upright
    pil = Image.fromarray(stored)
    exif = pil.getexif()
    exif[0x0112] = 6
    data = _enc(stored, "JPEG", quality=95, exif=exif.tobytes())
    out, info = transform_image(
        data, "r.jpg", _model(Paint()), TransformOptions(jpeg_quality=90), locator=locator
    )
    assert info["status"] == "ok" and info["faces"] == 1  # found only after applying EXIF
    res = decode(out)
    assert res.format == "jpeg" and res.image.shape == img.shape
    assert res.exif_orientation_applied == 1


def test_rgba_and_grayscale_kept(locator) -> None:
    img = _photo([180])
    alpha = np.full(img.shape[:2], 255, np.uint8)
    alpha[:, :15] = 0
    out, info = transform_image(
        _enc(np.dstack([img, alpha]), "PNG"),
        "a.png",
        _model(Paint()),
        TransformOptions(),
        locator=locator,
    )
    back = Image.open(io.BytesIO(out))
    assert info["faces"] == 1 and back.mode == "RGBA"
    assert np.array_equal(np.asarray(back)[:, :, 3], alpha)
    gray = np.asarray(Image.fromarray(img).convert("L"))
    out, info = transform_image(
        _enc(gray, "PNG"), "g.png", _model(Paint()), TransformOptions(), locator=locator
    )
    back = Image.open(io.BytesIO(out))
    assert back.mode == "L" and back.size == (img.shape[1], img.shape[0])


def test_bad_input_raises_badimage(locator) -> None:
    with pytest.raises(BadImage) as ei:
        transform_image(b"", "e.jpg", _model(Paint()), TransformOptions(), locator=locator)
    assert ei.value.reason == "empty"
    with pytest.raises(ValueError):
        transform_image(
            _enc(_photo([100]), "PNG"),
            "x.png",
            _model(Paint()),
            TransformOptions(style="braids"),
            locator=locator,
        )


def test_random_beardnet_end_to_end(locator) -> None:
    torch.manual_seed(0)
    model = _model(BeardNet(categories=len(DEFAULT), size=128))
    img = _photo([150, 170])
    data = _enc(img, "PNG")
    out, info = transform_image(
        data, "r.png", model, TransformOptions(style="stubble"), locator=locator
    )
    assert info["status"] == "ok" and info["faces"] == 2 and info["network_s"] > 0
    res = decode(out).image
    prep = prepare(data, "r.png", TransformOptions(), locator)
    zones = _zones_union(prep, img.shape)
    assert np.array_equal(res[~zones], img[~zones])
    # With the network's soft mask (~0.02 at init) the area ratio is small but positive.
    assert 0 < info["beard_area_ratio"] < 0.2


class MaskOnly(torch.nn.Module):
    """Stand-in network: a dark-brown edit under a mask of constant ``level``."""

    def __init__(self, level: float) -> None:
        super().__init__()
        self.level = level

    def forward(self, x: torch.Tensor, style: torch.Tensor):
        brown = torch.tensor([0.25, 0.17, 0.12]).view(1, 3, 1, 1).expand_as(x)
        m = torch.full_like(x[:, :1], self.level)
        return m * brown + (1 - m) * x, m


def test_additions_are_hair_drawn_where_the_network_puts_the_beard() -> None:
    """On a real face (public-domain portrait), an addition is drawn as strands at native
    resolution where the network's mask is, in its colour: the beard zone gains fine texture
    (not a flat patch), the lips keep their pixels, and a network with no mask adds nothing."""
    from pathlib import Path

    import cv2

    from beardnet.synth.realface import LIPS_OUTER

    data = (Path(__file__).parent.parent / "beardnet/assets/real_pd/grace_hopper.jpg").read_bytes()
    opts = TransformOptions(style="full_beard")
    src = decode(data, "g.jpg").image
    out, info = transform_image(data, "g.jpg", _model(MaskOnly(1.0)), opts)
    img = decode(out, "g.jpg").image
    assert info["faces"] == 1
    prep = prepare(data, "g.jpg", opts)
    zone = _zones_union(prep, src.shape)
    face = prep.faces[0]
    lips = np.zeros(src.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(face.landmarks[list(LIPS_OUTER)]).astype(np.int32)], 1)
    lips = cv2.erode(lips, np.ones((5, 5), np.uint8)) > 0
    diff = np.abs(img.astype(int) - src.astype(int)).max(-1)
    assert (diff[zone & ~lips] > 8).mean() > 0.3  # the beard is there
    assert np.percentile(diff[lips], 90) <= 3  # lips untouched (JPEG re-encoding aside)

    def dog(a: np.ndarray) -> np.ndarray:
        g = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return cv2.GaussianBlur(g, (0, 0), 1) - cv2.GaussianBlur(g, (0, 0), 3)

    changed = zone & (diff > 8) & ~lips
    assert dog(img)[changed].std() > 4.0  # strands, where flat paint measures ~1-2
    darker = img[changed].astype(float).mean() < src[changed].astype(float).mean() - 10
    assert darker  # dark hair on lighter skin
    none_out, _ = transform_image(data, "g.jpg", _model(MaskOnly(0.0)), opts)
    none_diff = np.abs(decode(none_out, "g.jpg").image.astype(int) - src.astype(int)).max(-1)
    assert none_diff[zone].mean() < 2.0 and (none_diff[zone] > 8).mean() < 0.01  # re-encode only


def test_guide_growth_matches_a_full_resolution_dilation() -> None:
    """hair.grow works on a coarser grid for large radii: it must still cover what the exact
    dilation covers (thin guides keep full strength) and grow it by little more."""
    import cv2

    from beardnet.infer.hair import grow

    g = np.zeros((300, 400), np.float32)
    cv2.line(g, (50, 150), (350, 165), 1.0, 1)  # a 1 px guide: area-averaging would weaken it
    for radius in (3.0, 12.0, 30.0):
        r = round(radius)
        exact = cv2.dilate(g, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        got = grow(g, radius)
        assert got.shape == g.shape and got.dtype == np.float32
        # all but a rim of two grid cells of what the exact dilation covers, at full strength
        inner = max(0, r - 2 * int(np.ceil(radius / 6)))
        core = cv2.dilate(g, cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                       (2 * inner + 1, 2 * inner + 1)))
        assert got[core >= 0.999].min() > 0.9, radius
        assert (got > 0.5).sum() <= 1.15 * (exact > 0.5).sum(), radius
    assert grow(g, 0.2) is g


def test_per_photo_path_makes_no_lapack_calls(locator, monkeypatch) -> None:
    """Locate, align, network, hair drawing and paste-back never call numpy's LAPACK: OpenBLAS
    hands even a 2x2 inverse to its thread pool, whose threads then busy-wait (~45 ms CPU per
    photo in a plain process loop; ``beardnet.affine``)."""
    from pathlib import Path

    from beardnet.infer.photo import locate_photo, paste_photo

    def lapack(*_a, **_k):
        raise AssertionError("np.linalg called on the per-photo path")

    for name in ("inv", "det", "solve", "lstsq", "pinv", "svd", "eig"):
        monkeypatch.setattr(np.linalg, name, lapack)
    data = (Path(__file__).parent.parent / "beardnet/assets/real_pd/grace_hopper.jpg").read_bytes()
    opts = TransformOptions(style="full_beard")
    out, info = transform_image(data, "g.jpg", _model(MaskOnly(1.0)), opts, locator=locator)
    assert info["status"] == "ok" and info["faces"] == 1 and out != data
    geo, crops, _ = locate_photo(data, "g.jpg", opts, locator)
    edited, masks = run_network(_model(MaskOnly(1.0)), crops, 0)
    out2, info2 = paste_photo(data, "g.jpg", opts, geo, crops, edited, masks, "full_beard")
    assert info2["faces"] == 1 and out2 != data
