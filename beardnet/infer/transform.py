"""The per-image transform (claim 1 for one photo), pure and testable without Ray.

Split so a batch job can run the network across many photos at once::

    prep = prepare(data, key, opts, locator)      # decode, locate, align crops, beard zones
    edited = <network on prep.crops>               # uint8 [N, S, S, 3], any batching
    data_out, info = apply(prep, edited)           # paste back inside the zones, encode

``transform_image(data, key, model, opts)`` does all three for one photo. A photo with no face
large enough (``min_face_px``, compared with the face box's larger side) comes back as the
input bytes, unchanged, with status ``no_face``; faces that are too small are counted
(``faces_small``) and left alone. Bad input raises ``beardnet.infer.codec.BadImage``.

``info`` keys: ``status`` (``ok``/``no_face``), ``faces`` (edited), ``faces_found``,
``faces_small``, ``faces_skipped`` (beyond ``max_faces``), ``beard_area_ratio`` (mean over edited
faces: the network's soft mask inside the beard zone over the face-oval area when masks are
given, else the zone's area over the oval's), ``format``, ``width``, ``height``, ``style``,
``decode_s``, ``faces_s``, ``align_s``, ``network_s``, ``encode_s`` (paste back + encode), and
``timings`` (the same seconds in one dict); from :func:`transform_image` also ``cpu_s``: this
process's CPU seconds (all threads) in ``prepare``, ``network`` and ``apply``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from beardnet.affine import scale_of
from beardnet.faces import Face, FaceLocator, get_locator
from beardnet.faces.align import align
from beardnet.faces.regions import Zone, beard_zone, beard_zone_in_crop
from beardnet.geometry import DEFAULT_CROP_SIZE
from beardnet.infer.codec import (
    DEFAULT_MAX_PIXELS,
    PNG_COMPRESS_LEVEL,
    Decoded,
    decode,
    encode_like,
)
from beardnet.infer.detail import face_seed, paste_face

if TYPE_CHECKING:
    from beardnet.model import LoadedModel

#: Automatic feathering: this fraction of the eye distance, in image pixels.
AUTO_FEATHER_EYE_FRACTION = 0.15


@dataclass
class TransformOptions:
    """How one photo is transformed (``style`` may be overridden per call)."""

    style: str = "full_beard"
    min_face_px: int = 48
    max_faces: int | None = None
    feather_px: float | None = None  # image pixels; None: 0.15 x eye distance per face
    jpeg_quality: int = 92
    png_compress_level: int = PNG_COMPRESS_LEVEL
    max_pixels: int = DEFAULT_MAX_PIXELS
    faces: str = "mediapipe"
    crop_size: int = DEFAULT_CROP_SIZE


@dataclass
class Prepared:
    """A decoded photo with its faces aligned, waiting for the network."""

    key: str
    data: bytes | None
    decoded: Decoded
    opts: TransformOptions
    faces: list[Face] = field(default_factory=list)  # the faces to edit, same order as crops
    crops: np.ndarray | None = None  # uint8 [N, S, S, 3]
    transforms: list[np.ndarray] = field(default_factory=list)  # 2x3 image -> crop
    zones: list[Zone] = field(default_factory=list)  # beard zones, image pixels
    n_found: int = 0
    n_small: int = 0
    n_skipped: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_faces(self) -> int:
        """Faces that will be edited."""
        return len(self.faces)


def prepare(
    data: bytes,
    key: str,
    opts: TransformOptions,
    locator: FaceLocator | None = None,
    *,
    keep_input: bool = True,
) -> Prepared:
    """Decode ``data``, find faces, align crops and build beard zones (raises BadImage)."""
    t0 = time.perf_counter()
    dec = decode(data, key, max_pixels=opts.max_pixels)
    t1 = time.perf_counter()
    loc = locator if locator is not None else get_locator(opts.faces, min_face_px=opts.min_face_px)
    found = loc.locate(dec.image)
    t2 = time.perf_counter()
    big = [f for f in found if f.size >= opts.min_face_px]
    small = len(found) - len(big)
    big.sort(key=lambda f: -f.size)
    skipped = 0
    if opts.max_faces is not None and len(big) > opts.max_faces:
        skipped = len(big) - opts.max_faces
        big = big[: opts.max_faces]
    prep = Prepared(
        key=key,
        data=data if keep_input else None,
        decoded=dec,
        opts=opts,
        n_found=len(found),
        n_small=small,
        n_skipped=skipped,
    )
    S = int(opts.crop_size)
    crops = []
    for f in big:
        try:
            crop, M = align(dec.image, f, S)
        except ValueError:  # degenerate eye/mouth points
            prep.n_skipped += 1
            continue
        zone = beard_zone(f, dec.image.shape)
        if zone.area == 0:
            prep.n_skipped += 1
            continue
        prep.faces.append(f)
        prep.transforms.append(M)
        prep.zones.append(zone)
        crops.append(crop)
    prep.crops = np.stack(crops) if crops else np.zeros((0, S, S, 3), np.uint8)
    t3 = time.perf_counter()
    prep.timings = {"decode_s": t1 - t0, "faces_s": t2 - t1, "align_s": t3 - t2}
    return prep


def apply(
    prep: Prepared,
    edited_crops: np.ndarray | None,
    masks: np.ndarray | None = None,
    *,
    source_crops: np.ndarray | None = None,
    style: str | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Paste ``edited_crops`` (uint8 [N, S, S, 3], same order as ``prep.crops``) back inside
    the feathered beard zones at native resolution (:func:`beardnet.infer.detail.paste_face`:
    the network's change as the low band, strands or skin grain drawn at the photo's own
    resolution as the high band, lips protected) and encode in the input's format; returns
    ``(bytes, info)``.

    ``masks`` (float [N, S, S] or [N, 1, S, S], the network's soft edit mask) says where the
    high band goes and feeds ``beard_area_ratio``. ``source_crops`` defaults to ``prep.crops``: only the network's change
    is warped back (unedited pixels keep full sharpness); where ``prep.crops`` was dropped
    (shipped separately), they are re-cut from the decoded image (identical result).
    """
    t0 = time.perf_counter()
    dec = prep.decoded
    info: dict[str, Any] = _base_info(prep, style)
    if prep.n_faces == 0:
        info["status"] = "no_face"
        out = (
            prep.data
            if prep.data is not None
            else encode_like(dec, dec.image, prep.opts.jpeg_quality, prep.opts.png_compress_level)
        )
        info["encode_s"] = time.perf_counter() - t0
        info["timings"]["encode_s"] = info["encode_s"]
        return out, info
    edited = np.asarray(edited_crops)
    if edited.shape[0] != prep.n_faces or edited.dtype != np.uint8:
        raise ValueError(f"expected {prep.n_faces} uint8 crops, got {edited.dtype} {edited.shape}")
    src = source_crops if source_crops is not None else prep.crops
    if src is None or len(src) != prep.n_faces:
        # Crops not shipped with the prepared photo: re-cut them (one small warp per face).
        src = np.stack([align(dec.image, f, edited.shape[1])[0] for f in prep.faces])
    image = dec.image.copy()
    ratios = []
    S = edited.shape[1]
    for i, (f, M, zone) in enumerate(zip(prep.faces, prep.transforms, prep.zones, strict=True)):
        feather = prep.opts.feather_px
        if feather is None:
            feather = AUTO_FEATHER_EYE_FRACTION * f.eye_distance
        paste_face(
            image,
            edited[i],
            src[i],
            None if masks is None else np.asarray(masks[i]),
            M,
            zone,
            float(feather),
            f,
            info["style"],
            face_seed(prep.key, i),
        )
        zone_c, oval_c = beard_zone_in_crop(f, M, S)
        if masks is not None:
            m = np.asarray(masks[i], np.float64).reshape(S, S)
            num = float((m * zone_c).sum())
        else:
            num = float(zone_c.sum())
        den = float(oval_c.sum())
        if den > 0:
            ratios.append(num / den)
    out = encode_like(dec, image, prep.opts.jpeg_quality, prep.opts.png_compress_level)
    info["status"] = "ok"
    info["beard_area_ratio"] = float(np.mean(ratios)) if ratios else None
    info["encode_s"] = time.perf_counter() - t0
    info["timings"]["encode_s"] = info["encode_s"]
    return out, info


def _base_info(prep: Prepared, style: str | None) -> dict[str, Any]:
    t = dict(prep.timings)
    t.setdefault("network_s", 0.0)
    info: dict[str, Any] = {
        "status": None,
        "key": prep.key,
        "faces": prep.n_faces,
        "faces_found": prep.n_found,
        "faces_small": prep.n_small,
        "faces_skipped": prep.n_skipped,
        "beard_area_ratio": None,
        "format": prep.decoded.format,
        "width": prep.decoded.width,
        "height": prep.decoded.height,
        "style": style if style is not None else prep.opts.style,
        "face_scales": [scale_of(M) for M in prep.transforms],
        "timings": t,
    }
    info.update({k: v for k, v in t.items()})
    return info


def style_index(model: LoadedModel, style: str) -> int:
    """The model's conditioning index of ``style`` (ValueError naming the known styles)."""
    try:
        return int(model.categories.index(style))
    except (KeyError, ValueError, IndexError):
        raise ValueError(
            f"unknown style {style!r}; the model knows {', '.join(model.categories.names)}"
        ) from None


def run_network(
    model: LoadedModel, crops: np.ndarray, styles: int | np.ndarray, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model.net`` on uint8 crops [N, S, S, 3]; returns ``(edited uint8 [N, S, S, 3],
    masks float32 [N, S, S])``."""
    import torch

    n = len(crops)
    S = crops.shape[1] if n else int(model.input_size)
    if n == 0:
        return np.zeros((0, S, S, 3), np.uint8), np.zeros((0, S, S), np.float32)
    st = np.array(np.broadcast_to(np.asarray(styles, np.int64), (n,)))
    outs, masks = [], []
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[i : i + batch_size]))
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            s = torch.from_numpy(np.ascontiguousarray(st[i : i + batch_size]))
            y, m = model.net(x, s)
            y = y.clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(0, 2, 3, 1)
            outs.append(y.numpy().copy())
            masks.append(m[:, 0].float().numpy().copy())
    return np.concatenate(outs), np.concatenate(masks)


def transform_image(
    data: bytes,
    key: str,
    model: LoadedModel,
    opts: TransformOptions,
    *,
    style: str | None = None,
    locator: FaceLocator | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Transform one photo end to end: ``(bytes_out, info)`` (raises BadImage on bad input)."""
    style = style if style is not None else opts.style
    idx = style_index(model, style)
    if int(model.input_size) != int(opts.crop_size):
        opts = TransformOptions(**{**opts.__dict__, "crop_size": int(model.input_size)})
    c0 = time.process_time()
    prep = prepare(data, key, opts, locator)
    c1 = time.process_time()
    t0 = time.perf_counter()
    edited, masks = run_network(model, prep.crops, idx)
    prep.timings["network_s"] = time.perf_counter() - t0
    c2 = time.process_time()
    out, info = apply(prep, edited, masks, style=style)
    info["network_s"] = prep.timings["network_s"]
    info["cpu_s"] = {"prepare": c1 - c0, "network": c2 - c1, "apply": time.process_time() - c2}
    return out, info
