"""Decode and encode photos, with a named reason for every kind of bad input.

``decode`` turns the bytes of one object into an RGB uint8 array plus what is needed to write the
result back in the same format (alpha, grayscale, ICC profile, EXIF with orientation applied).
Bad input raises :class:`BadImage` with a short machine-friendly ``reason``:

==================  ==============================================================
``empty``           zero-byte object
``not_an_image``    no image format recognised (e.g. a text file named ``.jpg``)
``unsupported``     an image format beardnet does not write back (GIF, ICO, ...)
``animated``        more than one frame (writing one frame back would lose data)
``too_large``       width x height above ``max_pixels``, checked from the header
                    before any pixel is decoded (decompression bombs)
``bad_crc``         a PNG chunk whose CRC does not match
``truncated``       the pixel data ends early
``corrupt``         the decoder failed in another way
==================  ==============================================================

Conversions (never errors): 16-bit -> 8-bit, grayscale -> RGB (written back as grayscale),
palette -> RGB(A), RGBA -> RGB plus a separate alpha plane (re-attached on encode), CMYK/YCCK
JPEG -> RGB (written back as RGB JPEG), EXIF orientation applied (written back as 1).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFile

from beardnet.infer import png

# We check the pixel count ourselves (``max_pixels``) before decoding; PIL's own global check
# would only warn, or raise a differently typed error above 2x its limit (mapped below).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

#: PIL format name -> beardnet format name, for the formats that can be written back.
FORMATS: dict[str, str] = {
    "JPEG": "jpeg",
    "MPO": "jpeg",  # multi-picture JPEG from cameras; the first picture is the photo
    "PNG": "png",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tiff",
}
#: zlib level of PNG outputs: 158 ms CPU per megapixel of real photos against 280 ms for PIL's
#: default 6, for files 3 % larger (README, "Benchmarks").
PNG_COMPRESS_LEVEL = 4
_PIL_SAVE = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP", "tiff": "TIFF"}
#: file extensions per format (first is canonical)
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "jpeg": (".jpg", ".jpeg", ".jpe"),
    "png": (".png",),
    "webp": (".webp",),
    "bmp": (".bmp",),
    "tiff": (".tif", ".tiff"),
}
DEFAULT_MAX_PIXELS = 50_000_000
_ORIENTATION_TAG = 0x0112


class BadImage(ValueError):
    """An object that cannot be processed as an image; ``reason`` is a short stable code."""

    def __init__(self, reason: str, message: str = "", key: str = "") -> None:
        self.reason = reason
        self.message = message or reason
        self.key = key
        super().__init__(f"{reason}: {self.message}" + (f" ({key})" if key else ""))


@dataclass
class Decoded:
    """A decoded photo: ``image`` is HxWx3 RGB uint8; the rest describes how to write it back."""

    image: np.ndarray
    format: str
    exif_orientation_applied: int = 1
    original_mode: str = "RGB"
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    icc_profile: bytes | None = None
    exif: bytes | None = None
    info: dict = field(default_factory=dict)
    #: ``(width, height)`` of the photo at full size (orientation applied); differs from the
    #: image's size only when decoded with ``reduce > 1``.
    full_size: tuple[int, int] | None = None

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def grayscale(self) -> bool:
        return self.original_mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def _to_uint8(arr: np.ndarray, sixteen_bit: bool) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        # 16-bit data (PIL's "I;16" or "I"): scale 0..65535 to 0..255, rounded.
        top = 65535.0 if sixteen_bit or arr.max(initial=0) > 255 else 255.0
        return np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    f = arr.astype(np.float64)
    top = 1.0 if f.max(initial=0.0) <= 1.0 else 255.0
    return np.clip(np.rint(f * (255.0 / top)), 0, 255).astype(np.uint8)


def _open(data: bytes, key: str) -> Image.Image:
    """``Image.open`` on the bytes (header only), failures as BadImage (``empty``,
    ``too_large``, ``not_an_image``, ``corrupt``)."""
    if data is None or len(data) == 0:
        raise BadImage("empty", "the object has zero bytes", key)
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise BadImage("too_large", str(e), key) from None
    except Image.UnidentifiedImageError:
        raise BadImage("not_an_image", "no image format recognised", key) from None
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        raise BadImage("corrupt", f"header unreadable: {e}", key) from None


def image_size(data: bytes, key: str = "") -> tuple[int, int]:
    """``(width, height)`` from the header alone (as stored, before EXIF orientation); raises
    BadImage (``empty``, ``not_an_image``, ``corrupt``) without decoding any pixel."""
    with _open(data, key) as img:
        return int(img.size[0]), int(img.size[1])


def decode(
    data: bytes, key: str = "", max_pixels: int = DEFAULT_MAX_PIXELS, *, reduce: int = 1
) -> Decoded:
    """Decode ``data`` (one object's bytes; ``key`` is only used in messages) or raise BadImage.

    ``reduce`` > 1 decodes at about 1/``reduce`` of the size on each side: JPEGs through the
    decoder's DCT scaling (the full-size pixels are never materialised), other formats by an
    area resize after decoding. ``full_size`` keeps the full size; the pixel limit is always
    checked against the full size, from the header.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone changed the global: truncation must be an error
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    img = _open(data, key)
    fmt = FORMATS.get(img.format or "")
    if fmt is None:
        raise BadImage("unsupported", f"format {img.format} is not supported", key)
    w, h = img.size
    if w <= 0 or h <= 0:
        raise BadImage("corrupt", f"image size {w}x{h}", key)
    if w * h > max_pixels:
        raise BadImage("too_large", f"{w}x{h} = {w * h} pixels > limit {max_pixels}", key)
    if getattr(img, "n_frames", 1) > 1 and fmt != "jpeg":
        raise BadImage("animated", f"{img.n_frames} frames", key)
    if fmt == "png":
        problem = png.chunk_problem(data)
        if problem is not None:
            raise BadImage(*problem, key)
    reduce = max(1, int(reduce))
    target = (max(1, -(-w // reduce)), max(1, -(-h // reduce)))
    if reduce > 1 and fmt == "jpeg":
        try:
            img.draft(img.mode, target)  # DCT scaling: decodes at 1/2, 1/4 or 1/8 size
        except (OSError, ValueError):
            pass
    try:
        img.load()
    except Image.DecompressionBombError as e:
        raise BadImage("too_large", str(e), key) from None
    except (OSError, SyntaxError, ValueError, struct.error, zlib.error, EOFError) as e:
        text = str(e)
        reason = "truncated" if "truncat" in text.lower() or isinstance(e, EOFError) else "corrupt"
        raise BadImage(reason, text or type(e).__name__, key) from None
    except Exception as e:  # noqa: BLE001 - any decoder failure is bad input, not a crash
        raise BadImage("corrupt", f"{type(e).__name__}: {e}", key) from None

    mode = img.mode
    icc = img.info.get("icc_profile")
    exif_obj = img.getexif()
    orientation = int(exif_obj.get(_ORIENTATION_TAG, 1) or 1)
    png16 = fmt == "png" and data[24:25] == b"\x10"  # IHDR bit-depth byte
    bit_depth = 16 if mode.startswith("I;16") or png16 else 8
    info = {k: v for k, v in img.info.items() if k in ("dpi", "gamma")}
    arr16 = None
    if png16 and mode in ("RGB", "RGBA"):
        # IHDR bit depth byte is 16: PIL already truncated to 8 bits; re-read with rounding.
        bit_depth = 16
        arr16 = png.read_16bit(data)

    alpha: np.ndarray | None = None
    if arr16 is not None:
        rgb = arr16[:, :, :3] if arr16.ndim == 3 else np.repeat(arr16[:, :, None], 3, axis=2)
        if arr16.ndim == 3 and arr16.shape[2] == 4:
            alpha = np.ascontiguousarray(arr16[:, :, 3])
    elif mode in ("RGB",):
        rgb = np.asarray(img, dtype=np.uint8)
    elif mode == "RGBA":
        a = np.asarray(img, dtype=np.uint8)
        rgb, alpha = a[:, :, :3], np.ascontiguousarray(a[:, :, 3])
    elif mode in ("L", "1"):
        g = np.asarray(img.convert("L"), dtype=np.uint8)
        rgb = np.repeat(g[:, :, None], 3, axis=2)
    elif mode == "LA":
        a = np.asarray(img, dtype=np.uint8)
        rgb = np.repeat(a[:, :, :1], 3, axis=2)
        alpha = np.ascontiguousarray(a[:, :, 1])
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        conv = img.convert("RGBA" if has_alpha else "RGB")
        a = np.asarray(conv, dtype=np.uint8)
        rgb = a[:, :, :3]
        if has_alpha:
            alpha = np.ascontiguousarray(a[:, :, 3])
    elif mode.startswith("I") or mode == "F":
        g = _to_uint8(np.asarray(img), bit_depth == 16)
        rgb = np.repeat(g[:, :, None], 3, axis=2)
    elif mode == "CMYK" and fmt == "jpeg":
        # Adobe CMYK JPEGs are stored inverted; PIL reads them as-is. Convert via PIL which
        # handles the common (Adobe, inverted) case through its own CMYK->RGB conversion.
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
        icc = None  # a CMYK profile does not describe the RGB output
    else:
        try:
            conv = img.convert("RGBA" if "A" in mode else "RGB")
        except Exception as e:  # noqa: BLE001
            raise BadImage("unsupported", f"mode {mode}: {e}", key) from None
        a = np.asarray(conv, dtype=np.uint8)
        rgb = a[:, :, :3]
        if a.shape[2] == 4:
            alpha = np.ascontiguousarray(a[:, :, 3])
        if mode == "CMYK":
            icc = None

    if alpha is not None and bool((alpha == 255).all()):
        alpha = None if mode not in ("RGBA", "LA", "PA") else alpha
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if reduce > 1 and (rgb.shape[1] > target[0] or rgb.shape[0] > target[1]):
        rgb = _area_resize(rgb, target)
        if alpha is not None:
            alpha = _area_resize(alpha, target)
    full = (w, h) if orientation not in (5, 6, 7, 8) else (h, w)

    if orientation != 1 and 2 <= orientation <= 8:
        rgb = _apply_orientation(rgb, orientation)
        if alpha is not None:
            alpha = _apply_orientation(alpha, orientation)
    exif_bytes: bytes | None = None
    if len(exif_obj):
        if orientation != 1:
            exif_obj[_ORIENTATION_TAG] = 1
        try:
            exif_bytes = exif_obj.tobytes()
        except Exception:  # noqa: BLE001 - unwritable EXIF is dropped, not fatal
            exif_bytes = None
    return Decoded(
        image=rgb,
        format=fmt,
        exif_orientation_applied=orientation if 2 <= orientation <= 8 else 1,
        original_mode=mode,
        alpha=alpha,
        bit_depth=bit_depth,
        icc_profile=icc,
        exif=exif_bytes,
        info=info,
        full_size=full,
    )


def _area_resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2  # local: heavy import

    return np.ascontiguousarray(cv2.resize(arr, size, interpolation=cv2.INTER_AREA))


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (2..8) to an HxW[xC] array, as ``ImageOps.exif_transpose``."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1, :],
    }
    return np.ascontiguousarray(ops[orientation](arr))


def encode(
    image: np.ndarray,
    fmt: str,
    quality: int = 95,
    alpha: np.ndarray | None = None,
    *,
    grayscale: bool = False,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    dpi: tuple | None = None,
    png_level: int = PNG_COMPRESS_LEVEL,
) -> bytes:
    """Encode an RGB uint8 image as ``fmt`` (PNG/BMP/TIFF lossless, WebP lossless when
    ``quality >= 100``; ``png_level``: zlib level 0-9 of PNG outputs); ``alpha`` is
    re-attached where the format allows."""
    fmt = fmt.lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in _PIL_SAVE:
        raise ValueError(f"cannot encode format {fmt!r}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8, got {image.dtype} {image.shape}")
    if grayscale:
        # Written back as grayscale: edits are in colour, so take the luma (exact where R=G=B).
        if (image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all():
            g = image[:, :, 0]
        else:
            g = np.asarray(Image.fromarray(image, "RGB").convert("L"))
        if alpha is not None and fmt != "jpeg":
            pil = Image.fromarray(np.dstack([g, alpha]), "LA")
        else:
            pil = Image.fromarray(np.ascontiguousarray(g), "L")
    elif alpha is not None and fmt != "jpeg":
        pil = Image.fromarray(np.dstack([image, alpha]), "RGBA")
    else:
        pil = Image.fromarray(image, "RGB")
    kw: dict = {}
    if icc_profile:
        kw["icc_profile"] = icc_profile
    if exif and fmt in ("jpeg", "png", "webp", "tiff"):
        kw["exif"] = exif
    if dpi and fmt in ("jpeg", "png", "tiff"):
        kw["dpi"] = dpi
    if fmt == "jpeg":
        kw.update(quality=int(quality), optimize=False)
    elif fmt == "png":
        kw.update(compress_level=int(png_level))
    elif fmt == "webp":
        kw.update(quality=int(min(quality, 100)), lossless=quality >= 100)
    buf = io.BytesIO()
    try:
        pil.save(buf, format=_PIL_SAVE[fmt], **kw)
    except (OSError, ValueError, TypeError):
        # Metadata the writer refuses (odd EXIF/ICC) must not lose the photo: retry without it.
        buf = io.BytesIO()
        pil.save(
            buf,
            format=_PIL_SAVE[fmt],
            **{k: v for k, v in kw.items() if k not in ("exif", "icc_profile")},
        )
    return buf.getvalue()


def encode_like(decoded: Decoded, image: np.ndarray, quality: int = 95,
                png_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """Encode ``image`` (edited ``decoded.image``) in the input's format and colour layout."""
    return encode(
        image,
        decoded.format,
        quality=quality,
        png_level=png_level,
        alpha=decoded.alpha,
        grayscale=decoded.grayscale,
        icc_profile=decoded.icc_profile,
        exif=decoded.exif,
        dpi=decoded.info.get("dpi"),
    )


def extension_format(key: str) -> str | None:
    """The format a key's extension names (``photo.JPG`` -> ``jpeg``), or None."""
    low = key.lower()
    for fmt, exts in EXTENSIONS.items():
        if low.endswith(exts):
            return fmt
    return None


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "EXTENSIONS",
    "FORMATS",
    "PNG_COMPRESS_LEVEL",
    "BadImage",
    "Decoded",
    "decode",
    "encode",
    "encode_like",
    "extension_format",
    "image_size",
]

