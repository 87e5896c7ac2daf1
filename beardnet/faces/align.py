"""Align a face to the canonical crop the network was trained on, and paste an edit back.

The aligner fits the similarity transform (rotation, uniform scale, translation; least squares,
closed form) that maps the face's eye centres and mouth centre to
``beardnet.geometry.canonical_points(size)``, the frame the synthetic training crops are drawn
in. ``M`` is a 2x3 float64 matrix mapping image pixels to crop pixels (OpenCV convention).

``paste_back`` warps the edited crop back with the inverse of ``M`` and blends it into the image
only inside the zone mask, with a feathered (linearly ramped, inward) edge: pixels outside the
zone are copied bit-exactly. With ``source_crop`` (the crop the network saw) only the network's
*change* is warped back and added, so unedited zone pixels keep their original sharpness
instead of being resampled twice.
"""

from __future__ import annotations

import numpy as np

from beardnet.affine import invert, scale_of, transform_points
from beardnet.faces import Face
from beardnet.faces.regions import Zone
from beardnet.geometry import DEFAULT_CROP_SIZE, canonical_points


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2x3 float64) mapping points ``src`` onto ``dst``."""
    p = np.asarray(src, np.float64)
    q = np.asarray(dst, np.float64)
    pm, qm = p.mean(axis=0), q.mean(axis=0)
    P, Q = p - pm, q - qm
    den = float((P**2).sum())
    if den < 1e-12:
        raise ValueError("degenerate points: cannot fit a similarity transform")
    a = float((P * Q).sum()) / den
    b = float((P[:, 0] * Q[:, 1] - P[:, 1] * Q[:, 0]).sum()) / den
    R = np.array([[a, -b], [b, a]])
    t = qm - R @ pm
    return np.hstack([R, t[:, None]])


def face_transform(face: Face, size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """``M`` (image -> crop) for ``face`` in a ``size`` canonical crop."""
    return similarity(face.points(), canonical_points(size))


def warp(image: np.ndarray, M: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` crop of ``image`` through ``M`` (image -> crop, 2x3), replicated
    border; where ``M`` shrinks more than 2x the region is area-averaged first (no aliasing)."""
    import cv2

    M = np.asarray(M, np.float64)
    s = scale_of(M)
    h, w = image.shape[:2]
    if s >= 0.5:
        return cv2.warpAffine(
            image, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    corners = transform_points(invert(M), [[0, 0], [size, 0], [0, size], [size, size]])
    margin = 2.0 / s
    x0 = int(np.clip(np.floor(corners[:, 0].min() - margin), 0, w - 1))
    y0 = int(np.clip(np.floor(corners[:, 1].min() - margin), 0, h - 1))
    x1 = int(np.clip(np.ceil(corners[:, 0].max() + margin), x0 + 1, w))
    y1 = int(np.clip(np.ceil(corners[:, 1].max() + margin), y0 + 1, h))
    roi = image[y0:y1, x0:x1]
    nw, nh = max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s))
    small = cv2.resize(roi, (nw, nh), interpolation=cv2.INTER_AREA)
    fx, fy = nw / (x1 - x0), nh / (y1 - y0)
    A = M[:, :2] @ np.diag([1.0 / fx, 1.0 / fy])
    # Small-image pixel i sits at ROI coordinate (i + 0.5) / f - 0.5 (INTER_AREA centres).
    t = M[:, :2] @ np.array([x0 + 0.5 / fx - 0.5, y0 + 0.5 / fy - 0.5]) + M[:, 2]
    return cv2.warpAffine(
        small,
        np.hstack([A, t[:, None]]),
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def align(
    image: np.ndarray, face: Face, size: int = DEFAULT_CROP_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """``(crop, M)``: the ``size`` x ``size`` canonical crop of ``face`` and its transform."""
    M = face_transform(face, size)
    return warp(image, M, size), M


def feather_alpha(mask: np.ndarray, feather_px: float) -> np.ndarray:
    """float32 alpha in [0, 1]: 0 outside ``mask``, ramping to 1 over ``feather_px`` inside."""
    import cv2

    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if feather_px <= 0:
        return m.astype(np.float32)
    # Pad with zeros so the mask's outer boundary counts as an edge even at the ROI border.
    pad = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    dist = cv2.distanceTransform(pad, cv2.DIST_L2, 3)[1:-1, 1:-1]
    return np.clip(dist / float(feather_px), 0.0, 1.0).astype(np.float32)


def paste_back(
    image: np.ndarray,
    edited_crop: np.ndarray,
    M: np.ndarray,
    zone_mask: Zone | np.ndarray,
    feather_px: float,
    *,
    source_crop: np.ndarray | None = None,
    inplace: bool = False,
) -> np.ndarray:
    """Blend ``edited_crop`` (crop frame of ``M``) into ``image`` inside ``zone_mask``.

    ``zone_mask`` is a ``Zone`` or a full-image bool mask; ``feather_px`` is in image pixels.
    Pixels outside the zone (alpha 0) are copied unchanged. Returns the new image (``image``
    itself when ``inplace``).
    """
    import cv2

    out = image if inplace else image.copy()
    zone = zone_mask if isinstance(zone_mask, Zone) else Zone.from_full(np.asarray(zone_mask))
    h, w = image.shape[:2]
    zx0, zy0, zx1, zy1 = zone.box
    x0, y0, x1, y1 = max(0, zx0), max(0, zy0), min(w, zx1), min(h, zy1)
    if x1 <= x0 or y1 <= y0 or zone.area == 0:
        return out
    mask = zone.mask[y0 - zy0 : y1 - zy0, x0 - zx0 : x1 - zx0]
    size_h, size_w = edited_crop.shape[:2]
    M = np.asarray(M, np.float64)
    # ROI pixel q is image pixel q + (x0, y0); its crop position is M @ (q + o).
    M_roi = np.hstack([M[:, :2], (M[:, :2] @ np.array([x0, y0]) + M[:, 2])[:, None]])
    dsize = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    alpha = feather_alpha(mask, feather_px)
    valid = cv2.warpAffine(
        np.ones((size_h, size_w), np.float32),
        M_roi,
        dsize,
        flags=flags,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    alpha *= valid
    a = alpha[:, :, None]
    orig = out[y0:y1, x0:x1].astype(np.float32)
    if source_crop is not None:
        delta = edited_crop.astype(np.float32) - source_crop.astype(np.float32)
        back = cv2.warpAffine(
            delta, M_roi, dsize, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        blended = orig + a * back.reshape(orig.shape)
    else:
        back = cv2.warpAffine(
            edited_crop.astype(np.float32),
            M_roi,
            dsize,
            flags=flags,
            borderMode=cv2.BORDER_REPLICATE,
        )
        blended = orig * (1.0 - a) + a * back.reshape(orig.shape)
    res = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    keep = alpha <= 0
    res[keep] = out[y0:y1, x0:x1][keep]  # bit-exact outside the feathered zone
    out[y0:y1, x0:x1] = res
    return out
