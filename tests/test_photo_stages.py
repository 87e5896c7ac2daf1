"""The transform's pixel halves without Ray: reduced decode for locating, full-size paste back,
the watchdog sandbox (crash, hang, bad input), ContentType of encoded bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from beardnet.infer import codec, photo
from beardnet.infer.sandbox import PhotoFailed, RemoteError, Sandbox, parse_poison
from beardnet.infer.transform import TransformOptions, prepare
from beardnet.infer.writer import content_type


def _photo(w: int, h: int, face_px: int, fmt: str = "JPEG", **kw) -> bytes:
    from beardnet.synth.render import render_crop

    crop = render_crop(5, "none", 128).image
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (110, 130, 150)
    img[(h - face_px) // 2 : (h + face_px) // 2, (w - face_px) // 2 : (w + face_px) // 2] = (
        np.asarray(Image.fromarray(crop).resize((face_px, face_px), Image.BILINEAR))
    )
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_reduction_rule_keeps_long_side_and_small_faces() -> None:
    assert photo.locate_reduction(1600, 1200, 48) == 1  # smallest face 75 px: no room
    # 24 MP: smallest face 250 px (1/16 of 4000) -> 1/2 keeps it >= 64 px for the 128 px crop
    assert photo.locate_reduction(6000, 4000, 48) == 2
    assert photo.locate_reduction(6000, 4000, 48, crop_size=64) == 4  # mesh bound: >= 48 px
    assert photo.locate_reduction(16000, 12000, 400) == 8
    assert photo.locate_reduction(800, 600, 48) == 1
    assert photo.locate_reduction(800, 600, 400) == 4  # only 400 px faces wanted


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_reduced_decode_sizes(fmt: str) -> None:
    data = _photo(1001, 603, 300, fmt)
    d = codec.decode(data, "x", reduce=4)
    assert (d.width, d.height) == (251, 151)
    assert d.full_size == (1001, 603)
    full = codec.decode(data, "x")
    assert full.full_size == (1001, 603) and full.width == 1001


def test_reduced_decode_applies_orientation_and_checks_pixels_from_header() -> None:
    img = Image.open(io.BytesIO(_photo(800, 400, 200)))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    d = codec.decode(buf.getvalue(), reduce=2)
    assert d.full_size == (400, 800) and (d.width, d.height) == (200, 400)
    with pytest.raises(codec.BadImage) as e:
        photo.locate_photo(buf.getvalue(), "big.jpg", TransformOptions(max_pixels=1000))
    assert e.value.reason == "too_large"


def test_located_on_reduced_photo_matches_full_size_and_pastes_back() -> None:
    data = _photo(3600, 2400, 900)
    opts = TransformOptions(faces="mediapipe")
    geo, crops, _ = photo.locate_photo(data, "p.jpg", opts)
    assert geo.reduction == pytest.approx(2.0) and (geo.width, geo.height) == (3600, 2400)
    assert len(geo.faces) == 1 and crops.shape == (1, opts.crop_size, opts.crop_size, 3)
    ref = prepare(data, "p.jpg", opts)  # full-size decode and locate
    f, r = geo.faces[0], ref.faces[0]
    assert np.abs(f.left_eye - r.left_eye).max() < 8 and np.abs(f.mouth - r.mouth).max() < 8
    # crops from the reduced photo look like the full-size ones
    diff = np.abs(crops[0].astype(int) - ref.crops[0].astype(int)).mean()
    assert diff < 12, diff
    edited = np.zeros_like(crops)  # a loud edit: black everywhere in the crop
    out, info = photo.paste_photo(data, "p.jpg", opts, geo, crops, edited, None, "goatee")
    assert info["status"] == "ok" and info["faces"] == 1
    a, b = codec.decode(data).image, codec.decode(out).image
    assert a.shape == b.shape
    changed = np.abs(a.astype(int) - b.astype(int)).sum(axis=2) > 40
    ys, xs = np.nonzero(changed)
    assert len(ys) > 1000  # the beard zone got darker ...
    assert xs.min() > 1300 and xs.max() < 2300 and ys.min() > 1000  # ... and only there


def test_content_type_from_bytes() -> None:
    small = np.full((8, 8, 3), 100, np.uint8)
    for fmt, mime in (("jpeg", "image/jpeg"), ("png", "image/png"), ("webp", "image/webp"),
                      ("bmp", "image/bmp"), ("tiff", "image/tiff")):
        assert content_type(codec.encode(small, fmt)) == mime
    assert content_type(b"hello") == "application/octet-stream"


def test_sandbox_records_crash_and_hang_and_keeps_going() -> None:
    data = _photo(64, 48, 32)
    box = Sandbox(4.0, poison=parse_poison("crash=CRASH,hang=HANG"))
    try:
        assert box.call(codec.image_size, data, "a", key="ok-1") == (64, 48)
        with pytest.raises(PhotoFailed) as e:
            box.call(codec.image_size, data, "b", key="x/CRASH.jpg")
        assert e.value.reason == "worker_crash" and "signal 11" in str(e.value)
        with pytest.raises(PhotoFailed) as e:
            box.call(codec.image_size, data, "c", key="x/HANG.jpg")
        assert e.value.reason == "timeout"
        with pytest.raises(RemoteError) as e:  # bad input comes back with its reason
            box.call(codec.image_size, b"", "d", key="empty")
        assert e.value.reason == "empty"
        assert box.call(codec.image_size, data, "e", key="ok-2") == (64, 48)
        assert box.restarts == 2  # one retry each for the crash and the hang
    finally:
        box.close()
