"""The two pixel halves of the batch transform, as the job runs them (bounded memory).

``locate_photo`` runs before the network: it decodes the photo at a *reduced* size (JPEG DCT
scaling; an area resize for other formats), finds the faces there, maps them back to full-size
pixels by the actual reduction, and cuts the aligned crops from the reduced image. What it
returns is small: face geometry in full-size pixels (:class:`Geometry`) and the crops.

``paste_photo`` runs after the network: it decodes the photo at *full* size (the only place
it does), rebuilds the beard zones from the geometry, and pastes the network's change back
through :func:`beardnet.infer.transform.apply` (the same math as ``transform_image``).

So between the stages only encoded bytes, geometry and crops travel, never a decoded photo.
A photo over ``max_pixels`` is refused from its header (``too_large``) by both halves.

Where a reduced crop is cut, the crop-to-image scale of a face at the default reduction
rule is at most the full-size one times the reduction: the paste-back only warps the
network's *change* (edited - source crop), so unedited pixels keep full-size sharpness.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from beardnet.faces import Face, FaceLocator, get_locator, min_face_for
from beardnet.faces.align import face_transform, warp
from beardnet.faces.regions import beard_zone
from beardnet.infer.codec import BadImage, decode, image_size
from beardnet.infer.transform import Prepared, TransformOptions, apply


def locate_reduction(width: int, height: int, min_face_px: int, crop_size: int = 128) -> int:
    """The integer factor (1, 2, 4 or 8) by which a photo is shrunk for face location and crops.

    The largest power of two within :func:`beardnet.faces.locate_scale` (the smallest face to
    edit, :func:`beardnet.faces.min_face_for`, keeps ``MESH_MIN_PX`` for the mesh) that also
    keeps that face at least ``crop_size / 2`` pixels wide, so the network's aligned crop is
    never upsampled more than 2x.
    """
    from beardnet.faces import locate_scale, min_face_for

    limit = min(locate_scale(width, height, min_face_px),
                min_face_for(width, height, min_face_px) / (crop_size / 2.0))
    f = 1
    while f < 8 and f * 2 <= limit:
        f *= 2
    return f


@dataclass
class Geometry:
    """Faces to edit in full-size pixels, their image->crop transforms, and the counts."""

    width: int
    height: int
    faces: list[Face] = field(default_factory=list)
    transforms: list[np.ndarray] = field(default_factory=list)
    n_found: int = 0
    n_small: int = 0
    n_skipped: int = 0
    reduction: float = 1.0

    def to_bytes(self) -> bytes:
        return pickle.dumps(self, protocol=5)

    @staticmethod
    def from_bytes(data: bytes) -> Geometry:
        g = pickle.loads(data)
        if not isinstance(g, Geometry):
            raise TypeError(f"expected Geometry, got {type(g).__name__}")
        return g


def _scale_face(f: Face, sx: float, sy: float) -> Face:
    """``f`` found in the reduced image, in full-size pixels (pixel centres map to centres)."""

    def pts(p: np.ndarray | None) -> np.ndarray | None:
        if p is None:
            return None
        p = np.asarray(p, np.float64)
        return np.stack([(p[..., 0] + 0.5) * sx - 0.5, (p[..., 1] + 0.5) * sy - 0.5], -1)

    box = np.asarray(f.box, np.float64) * np.array([sx, sy, sx, sy])
    return Face(
        box=box.astype(np.float32),
        score=f.score,
        left_eye=pts(f.left_eye).astype(np.float32),
        right_eye=pts(f.right_eye).astype(np.float32),
        mouth=pts(f.mouth).astype(np.float32),
        landmarks=None if f.landmarks is None else pts(f.landmarks).astype(np.float32),
        source=f.source,
        extra=dict(f.extra),
    )


def _reduced_transform(M: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """``M`` (full image -> crop) composed with reduced -> full pixel coordinates."""
    M = np.asarray(M, np.float64)
    A = M[:, :2] @ np.diag([sx, sy])
    t = M[:, :2] @ np.array([(sx - 1.0) / 2.0, (sy - 1.0) / 2.0]) + M[:, 2]
    return np.hstack([A, t[:, None]])


def locate_photo(
    data: bytes, key: str, opts: TransformOptions, locator: FaceLocator | None = None
) -> tuple[Geometry, np.ndarray, dict[str, float]]:
    """Decode reduced, locate, align: ``(geometry, crops uint8 [N, S, S, 3], timings)``.
    Raises BadImage (``too_large`` from the header, before any pixel is decoded)."""
    t0 = time.perf_counter()
    w, h = image_size(data, key)
    if w * h > opts.max_pixels:
        raise BadImage("too_large", f"{w}x{h} = {w * h} pixels > limit {opts.max_pixels}", key)
    f = locate_reduction(w, h, opts.min_face_px, int(opts.crop_size))
    dec = decode(data, key, max_pixels=opts.max_pixels, reduce=f)
    W, H = dec.full_size or (dec.width, dec.height)
    sx, sy = W / dec.width, H / dec.height
    t1 = time.perf_counter()
    loc = locator if locator is not None else get_locator(opts.faces, min_face_px=opts.min_face_px)
    smallest = min_face_for(W, H, opts.min_face_px)
    found = [_scale_face(x, sx, sy) for x in loc.locate(dec.image, min_face_px=smallest / max(sx, sy))]
    t2 = time.perf_counter()
    big = sorted((x for x in found if x.size >= smallest), key=lambda x: -x.size)
    geo = Geometry(width=W, height=H, n_found=len(found), n_small=len(found) - len(big),
                   reduction=max(sx, sy))
    if opts.max_faces is not None and len(big) > opts.max_faces:
        geo.n_skipped = len(big) - opts.max_faces
        big = big[: opts.max_faces]
    S = int(opts.crop_size)
    crops = []
    for face in big:
        try:
            M = face_transform(face, S)
            crop = warp(dec.image, _reduced_transform(M, sx, sy), S)
        except (ValueError, np.linalg.LinAlgError):  # degenerate eye/mouth points
            geo.n_skipped += 1
            continue
        if beard_zone(face, (H, W)).area == 0:
            geo.n_skipped += 1
            continue
        geo.faces.append(face)
        geo.transforms.append(M)
        crops.append(crop)
    arr = np.stack(crops) if crops else np.zeros((0, S, S, 3), np.uint8)
    t3 = time.perf_counter()
    return geo, arr, {"decode_s": t1 - t0, "faces_s": t2 - t1, "align_s": t3 - t2}


def paste_photo(
    data: bytes,
    key: str,
    opts: TransformOptions,
    geo: Geometry,
    crops: np.ndarray,
    edited: np.ndarray,
    masks: np.ndarray | None,
    style: str | None,
) -> tuple[bytes, dict[str, Any]]:
    """Decode at full size and paste ``edited`` back: ``(bytes_out, info)`` as ``apply``."""
    t0 = time.perf_counter()
    dec = decode(data, key, max_pixels=opts.max_pixels)
    if (dec.width, dec.height) != (geo.width, geo.height):
        raise BadImage("corrupt", f"decoded {dec.width}x{dec.height}, located on "
                       f"{geo.width}x{geo.height}", key)
    zones = [beard_zone(face, dec.image.shape) for face in geo.faces]
    prep = Prepared(
        key=key, data=None, decoded=dec, opts=opts, faces=list(geo.faces), crops=crops,
        transforms=list(geo.transforms), zones=zones, n_found=geo.n_found,
        n_small=geo.n_small, n_skipped=geo.n_skipped,
        timings={"decode_s": time.perf_counter() - t0},
    )
    return apply(prep, edited, masks, style=style)


# -- the same two halves with bytes in and out, as the sandbox child runs them -----------------
def locate_bytes(
    data: bytes, key: str, opts: TransformOptions
) -> tuple[bytes, bytes, int, int, dict[str, float]]:
    """:func:`locate_photo` with the process's cached locator: ``(geometry bytes, crops bytes,
    number of crops, faces too small, timings)``."""
    geo, crops, t = locate_photo(data, key, opts, get_locator(opts.faces))
    crops_b = np.ascontiguousarray(crops, np.uint8).tobytes()
    return geo.to_bytes(), crops_b, len(crops), geo.n_small, t


def paste_bytes(
    data: bytes,
    key: str,
    opts: TransformOptions,
    geo: bytes,
    crops: bytes,
    edited: bytes,
    masks: bytes | None,
    style: str | None,
) -> tuple[bytes, dict[str, Any]]:
    """:func:`paste_photo` on the stage's bytes (crops, edited: n x S x S x 3; masks:
    n x S x S, the network's soft mask x 255)."""
    g = Geometry.from_bytes(geo)
    n, S = len(g.faces), int(opts.crop_size)
    src = np.frombuffer(crops, np.uint8).reshape(n, S, S, 3)
    ed = np.frombuffer(edited, np.uint8).reshape(n, S, S, 3)
    m = None
    if masks:
        m = np.frombuffer(masks, np.uint8).reshape(n, S, S).astype(np.float32) / 255.0
    out, info = paste_photo(data, key, opts, g, src, ed, m, style)
    keep = ("faces", "faces_small", "beard_area_ratio", "encode_s")
    return out, {k: info.get(k) for k in keep}


def warm_locator(kind: str) -> None:
    """Load the face locator once (the sandbox child calls this before its first photo)."""
    get_locator(kind)
