"""Procedural faces with beards: the synthetic training data (issue 2, item 8).

Everything is drawn from implicit shapes evaluated on a pixel grid, so the same face can be
rendered into an aligned crop (:func:`render_crop`) or, through any similarity transform, into a
larger photo-like scene (:mod:`beardnet.synth.scenes`). Shapes are described in *face-local*
coordinates: fractions of the canonical crop side (:mod:`beardnet.geometry`), eyes at
(0.35, 0.36)/(0.65, 0.36) and the mouth centre at (0.50, 0.66) before a small per-identity jitter.

Pairing: the face, background, lighting and noise depend only on ``identity_seed``; the beard is
the last layer (lips are composited back over it), so the renders of one identity in the five
categories differ only inside their ``beard_mask``, which is computed as exactly the pixels that
differ from the beardless render (then closed with a 3x3 kernel, so it is a superset).

``face_mask`` is the face oval united with the *beard envelope* (a margin of ~3 % of the crop side
around jaw and chin where a full beard may grow below the skin outline). It is the same for every
category of an identity and always contains the beard mask.

The renderer is split by concept: :mod:`~beardnet.synth.params` (an identity's appearance),
:mod:`~beardnet.synth.canvas` (supersampled pixel grid), :mod:`~beardnet.synth.face` (the
beardless face), :mod:`~beardnet.synth.beard` (beard zones and layer) and
:mod:`~beardnet.synth.strands` (the strand drawer, shared with the beards drawn onto real photos
by :mod:`~beardnet.synth.composite`); this module composes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from beardnet.categories import DEFAULT_CATEGORIES
from beardnet.synth.beard import (  # noqa: F401  (re-exported)
    BEARD_TONES,
    FILL_GAIN,
    STRAND_ALPHA,
    STRAND_BLUR,
    STRAND_THICK,
    _beard_layer,
    _beard_zone_d,
)
from beardnet.synth.canvas import (  # noqa: F401  (re-exported)
    SUPERSAMPLE,
    Canvas,
    _Canvas,
    _down,
    _ellipse_d,
    _noise,
    _over,
    _to_u8,
)
from beardnet.synth.face import _base, _face_d, _face_halfwidth, _mouth_layer  # noqa: F401
from beardnet.synth.params import FaceParams, face_params


@dataclass(frozen=True)
class CropSample:
    """One rendered crop: RGB image, beard/face masks and landmarks in crop pixels."""

    image: np.ndarray  # HxWx3 uint8 RGB
    beard_mask: np.ndarray  # HxW bool
    face_mask: np.ndarray  # HxW bool
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# putting it together


@dataclass
class Layers:
    """Supersampled float layers of one identity/category, before downsampling."""

    bg: np.ndarray
    fig: np.ndarray
    fig_alpha: np.ndarray
    face_cov: np.ndarray
    beard_col: np.ndarray | None
    beard_alpha: np.ndarray | None
    mouth_col: np.ndarray
    mouth_alpha: np.ndarray


def render_layers(
    p: FaceParams,
    category: str,
    A: np.ndarray,
    width: int,
    height: int,
    identity_seed: int,
    ss: int = SUPERSAMPLE,
) -> Layers:
    """Draw identity ``p`` in ``category`` through the face-local -> pixel transform ``A``."""
    if category not in DEFAULT_CATEGORIES:
        raise KeyError(f"unknown category {category!r}; known: {', '.join(DEFAULT_CATEGORIES)}")
    cv = _Canvas(A, width, height, ss)
    rng = np.random.default_rng([int(identity_seed) & 0xFFFFFFFF, 31])
    bg, fig, fa, face_cov, m_col, m_a, shade = _base(p, cv, rng)
    bcol = balpha = None
    if category != "none":
        brng = np.random.default_rng(
            [int(identity_seed) & 0xFFFFFFFF, 101, DEFAULT_CATEGORIES.index(category)]
        )
        bcol, balpha = _beard_layer(p, cv, category, brng, face_cov, shade)
        # lips stay on top of the beard
        balpha = balpha * (1 - m_a)
    return Layers(bg, fig, fa, face_cov, bcol, balpha, m_col, m_a)


def crop_transform(p: FaceParams, size: int) -> np.ndarray:
    """2x3 face-local -> crop pixel transform (small rotation/scale/shift about the centre)."""
    c, s = np.cos(p.pose_rot), np.sin(p.pose_rot)
    k = p.pose_scale * size
    R = np.array([[c, -s], [s, c]]) * k
    centre = np.array([0.5, 0.5])
    t = (centre + np.array(p.pose_shift)) * size - R @ centre
    return np.hstack([R, t[:, None]])


def face_landmarks(p: FaceParams, A: np.ndarray) -> dict[str, tuple[float, float]]:
    """Eyes, mouth centre and nose tip in output pixels for transform ``A``."""
    pts = {
        "left_eye": (0.5 - p.eye_dx, p.eye_y),
        "right_eye": (0.5 + p.eye_dx, p.eye_y),
        "mouth": (0.5, p.mouth_y),
        "nose": (0.5, p.nose_y),
        "chin": (0.5, p.chin),
    }
    out = {}
    for k, (x, y) in pts.items():
        q = A[:, :2] @ np.array([x, y]) + A[:, 2]
        out[k] = (float(q[0]), float(q[1]))
    return out


def composite(
    layers: Layers, ss: int = SUPERSAMPLE, noise: np.ndarray | None = None, with_beard: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Downsampled float image (background + figure [+ beard]) and its uint8 version."""
    img = layers.bg.copy()
    _over(img, layers.fig, layers.fig_alpha)
    if with_beard and layers.beard_alpha is not None:
        img2 = img.copy()
        _over(img2, layers.beard_col, layers.beard_alpha)
        # exactly the beardless value wherever the beard has no coverage
        img = np.where((layers.beard_alpha > 0)[..., None], img2, img)
    small = _down(img, ss)
    if noise is not None:
        small = small + noise
    return small, _to_u8(small)


def render_crop(identity_seed: int, category: str, size: int = 128) -> CropSample:
    """Render identity ``identity_seed`` with beard ``category`` as an aligned ``size`` crop."""
    return render_identity(identity_seed, size, (category,))[category]


def render_identity(
    identity_seed: int, size: int = 128, categories: tuple[str, ...] = DEFAULT_CATEGORIES
) -> dict[str, CropSample]:
    """All categories of one identity; shares the beardless layers between them."""
    p = face_params(identity_seed)
    A = crop_transform(p, size)
    cv = _Canvas(A, size, size)
    rng = np.random.default_rng([int(identity_seed) & 0xFFFFFFFF, 31])
    bg, fig, fa, face_cov, m_col, m_a, shade = _base(p, cv, rng)
    nrng = np.random.default_rng([int(identity_seed) & 0xFFFFFFFF, 555])
    noise = (nrng.standard_normal((size, size, 3)) * p.noise_sigma).astype(np.float32)
    base_layers = Layers(bg, fig, fa, face_cov, None, None, m_col, m_a)
    _, base = composite(base_layers, noise=noise)
    # any coverage counts, so that every pixel a beard can touch is inside the face mask
    face = _down(face_cov, SUPERSAMPLE) > 0
    lm = face_landmarks(p, A)
    out: dict[str, CropSample] = {}
    for cat in categories:
        if cat not in DEFAULT_CATEGORIES:
            raise KeyError(f"unknown category {cat!r}; known: {', '.join(DEFAULT_CATEGORIES)}")
        if cat == "none":
            out[cat] = CropSample(base.copy(), np.zeros((size, size), bool), face.copy(), dict(lm))
            continue
        brng = np.random.default_rng(
            [int(identity_seed) & 0xFFFFFFFF, 101, DEFAULT_CATEGORIES.index(cat)]
        )
        bcol, balpha = _beard_layer(p, cv, cat, brng, face_cov, shade)
        balpha = balpha * (1 - m_a)
        _, img = composite(Layers(bg, fig, fa, face_cov, bcol, balpha, m_col, m_a), noise=noise)
        diff = np.any(img != base, axis=2)
        beard = (
            cv2.morphologyEx(diff.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > 0
        )
        out[cat] = CropSample(img, beard & face, face.copy(), dict(lm))
    return out
