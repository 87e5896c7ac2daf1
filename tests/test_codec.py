"""Decode/encode: every bad-input kind gets its reason; good oddities decode correctly."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from beardnet.infer.codec import BadImage, decode, encode, encode_like, extension_format


def _gradient(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) % 256], axis=2).astype(
        np.uint8
    )


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _reason(data: bytes, **kw) -> str:
    with pytest.raises(BadImage) as ei:
        decode(data, "k/x.jpg", **kw)
    assert ei.value.key == "k/x.jpg"
    return ei.value.reason


# ---------------------------------------------------------------- bad input


def test_empty_object() -> None:
    assert _reason(b"") == "empty"


def test_text_named_jpg() -> None:
    assert _reason(b"this is not a photo, just text\n" * 10) == "not_an_image"


def test_truncated_jpeg() -> None:
    data = _save(Image.fromarray(_gradient(200, 200)), "JPEG", quality=90)
    assert _reason(data[: len(data) // 2]) == "truncated"


def test_png_bad_crc() -> None:
    data = bytearray(_save(Image.fromarray(_gradient()), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF  # flip a byte inside the IDAT data; CRC no longer matches
    assert _reason(bytes(data)) == "bad_crc"


def test_truncated_png() -> None:
    data = _save(Image.fromarray(_gradient()), "PNG")
    assert _reason(data[: len(data) - 30]) == "truncated"


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))
        + ctype
        + body
        + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)
    )


def test_decompression_bomb_refused_before_decoding() -> None:
    # A valid PNG header claiming 30000x30000 (900 Mpx) with almost no data: refused from the
    # header alone, without allocating or inflating anything.
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 100))
        + _png_chunk(b"IEND", b"")
    )
    assert _reason(data, max_pixels=50_000_000) == "too_large"
    assert _reason(data, max_pixels=10**12) in ("too_large", "truncated", "corrupt")
    # The limit is configurable, and checked from the header alone.
    small = _save(Image.fromarray(_gradient(100, 100)), "PNG")
    assert _reason(small, max_pixels=5_000) == "too_large"
    assert decode(small, max_pixels=10_000).image.shape == (100, 100, 3)


def test_unsupported_and_animated() -> None:
    gif = _save(Image.fromarray(_gradient()).convert("P"), "GIF")
    assert _reason(gif) == "unsupported"
    frames = [Image.fromarray(_gradient()), Image.fromarray(255 - _gradient())]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert _reason(buf.getvalue()) == "animated"


def test_garbage_after_valid_header() -> None:
    data = bytearray(_save(Image.fromarray(_gradient(120, 120)), "JPEG"))
    sos = data.index(b"\xff\xda")
    data[sos + 20 :] = b"\x00" * (len(data) - sos - 20)  # scan data replaced by zeros, no EOI
    with pytest.raises(BadImage) as ei:
        decode(bytes(data))
    assert ei.value.reason in ("truncated", "corrupt")


# ---------------------------------------------------------------- good oddities


def test_jpeg_and_png_decode() -> None:
    arr = _gradient()
    png = decode(_save(Image.fromarray(arr), "PNG"))
    assert png.format == "png" and png.alpha is None
    assert np.array_equal(png.image, arr)
    jpg = decode(_save(Image.fromarray(arr), "JPEG", quality=95))
    assert jpg.format == "jpeg" and jpg.image.shape == arr.shape
    assert np.abs(jpg.image.astype(int) - arr).mean() < 4


def test_exif_rotated_jpeg() -> None:
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :40] = (255, 0, 0)  # left half red, right half blue
    arr[:, 40:] = (0, 0, 255)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    d = decode(_save(img, "JPEG", quality=95, exif=exif.tobytes()))
    assert d.exif_orientation_applied == 6
    assert d.image.shape == (80, 40, 3)  # portrait after rotation
    # Orientation 6: the stored left edge becomes the top.
    assert d.image[5, 20, 0] > 200 and d.image[5, 20, 2] < 60
    assert d.image[75, 20, 2] > 200 and d.image[75, 20, 0] < 60
    out = decode(encode_like(d, d.image))
    assert out.exif_orientation_applied == 1 and out.image.shape == (80, 40, 3)


def test_cmyk_jpeg() -> None:
    arr = _gradient()
    cmyk = Image.fromarray(arr).convert("CMYK")
    d = decode(_save(cmyk, "JPEG", quality=95))
    assert d.original_mode == "CMYK" and d.format == "jpeg"
    assert d.image.shape == arr.shape and d.image.dtype == np.uint8
    assert np.abs(d.image.astype(int) - arr).mean() < 6
    out = decode(encode_like(d, d.image))
    assert out.original_mode == "RGB" and out.format == "jpeg"


def test_16bit_png_grayscale_and_rgb() -> None:
    g16 = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    d = decode(_save(Image.fromarray(g16), "PNG"))
    assert d.bit_depth == 16 and d.grayscale
    expect = np.rint(g16 / 257.0).astype(np.uint8)
    assert np.abs(d.image[:, :, 0].astype(int) - expect).max() <= 1
    assert np.array_equal(d.image[:, :, 0], d.image[:, :, 2])

    import cv2

    rgb16 = (_gradient().astype(np.uint16) * 257 + 100).astype(np.uint16)
    ok, buf = cv2.imencode(".png", rgb16[:, :, ::-1])
    assert ok
    d = decode(buf.tobytes())
    assert d.bit_depth == 16 and d.format == "png" and not d.grayscale
    assert np.abs(d.image.astype(int) - np.rint(rgb16 / 257.0)).max() <= 1


def test_grayscale_roundtrip_stays_grayscale() -> None:
    g = _gradient()[:, :, 0]
    d = decode(_save(Image.fromarray(g, "L"), "PNG"))
    assert d.grayscale and d.image.shape == (48, 64, 3)
    assert np.array_equal(d.image[:, :, 1], g)
    back = Image.open(io.BytesIO(encode_like(d, d.image)))
    assert back.mode == "L" and np.array_equal(np.asarray(back), g)


def test_rgba_png_alpha_kept() -> None:
    arr = _gradient()
    alpha = np.full(arr.shape[:2], 255, np.uint8)
    alpha[:, :10] = 0
    alpha[:, 10:20] = 128
    d = decode(_save(Image.fromarray(np.dstack([arr, alpha]), "RGBA"), "PNG"))
    assert d.alpha is not None and np.array_equal(d.alpha, alpha)
    assert np.array_equal(d.image, arr)
    back = Image.open(io.BytesIO(encode_like(d, d.image)))
    assert back.mode == "RGBA" and np.array_equal(np.asarray(back)[:, :, 3], alpha)
    assert np.array_equal(np.asarray(back)[:, :, :3], arr)


def test_palette_png() -> None:
    arr = _gradient()
    pal = Image.fromarray(arr).quantize(colors=16)
    d = decode(_save(pal, "PNG"))
    assert d.original_mode == "P" and d.image.shape == arr.shape
    assert np.array_equal(d.image, np.asarray(pal.convert("RGB")))
    # palette with a transparent index -> alpha plane
    pal.info["transparency"] = 0
    d = decode(_save(pal, "PNG", transparency=0))
    assert d.alpha is not None and set(np.unique(d.alpha)) <= {0, 255}
    assert (d.alpha == 0).any()


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "bmp", "tiff"])
def test_roundtrip_keeps_format(fmt: str) -> None:
    arr = _gradient()
    data = encode(arr, fmt, quality=100 if fmt == "webp" else 95)
    d = decode(data)
    assert d.format == fmt
    if fmt in ("png", "bmp", "tiff", "webp"):
        assert np.array_equal(d.image, arr)
    again = encode_like(d, d.image)
    assert decode(again).format == fmt


def test_extension_format() -> None:
    assert extension_format("a/b/Photo.JPG") == "jpeg"
    assert extension_format("x.png") == "png"
    assert extension_format("x.txt") is None


def test_png_compress_level_is_lossless_and_configurable() -> None:
    """Every level decodes to the same pixels; a lower level writes a larger file; the job's
    config default is the codec's and an out-of-range level fails naming the field."""
    from beardnet.infer.codec import PNG_COMPRESS_LEVEL, encode
    from beardnet.infer.config import ImageSection

    rng = np.random.default_rng(0)
    img = (np.cumsum(rng.integers(-3, 4, (96, 128, 3)), axis=1) % 256).astype(np.uint8)
    sizes = {}
    for level in (0, 1, PNG_COMPRESS_LEVEL, 9):
        data = encode(img, "png", png_level=level)
        assert np.array_equal(decode(data, "x.png").image, img)
        sizes[level] = len(data)
    assert sizes[0] > sizes[1] > sizes[9]
    assert ImageSection().png_compress_level == PNG_COMPRESS_LEVEL
    with pytest.raises(ValueError, match="png_compress_level"):
        ImageSection(png_compress_level=10)
