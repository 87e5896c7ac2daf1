"""Photo-like synthetic scenes: 0-3 faces of varied size, position, rotation and beard style.

Each face is the canonical synthetic face (:mod:`beardnet.synth.render`) drawn through a
similarity transform (scale, slight in-plane rotation, position) straight into the scene's pixel
grid, so small faces stay sharp and large ones smooth. Per face the scene records ``box``
([x0, y0, x1, y1]: the face-mask bounding box in scene pixels), ``style`` (beard category),
``landmarks`` (eyes, nose, mouth centre, chin) and ``identity_seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from beardnet.affine import scale_of
from beardnet.categories import DEFAULT_CATEGORIES

#: Probabilities of 0, 1, 2, 3 faces in a scene.
FACE_COUNT_P = (0.1, 0.4, 0.3, 0.2)
#: Probability of each style (categories order); beardless faces are common.
STYLE_P = (0.3, 0.15, 0.15, 0.15, 0.25)
#: Face-oval width is about this fraction of the canonical crop side.
FACE_FRACTION = 0.66


@dataclass
class Scene:
    """A rendered scene: RGB uint8 image and one dict per face."""

    image: np.ndarray
    faces: list[dict[str, Any]] = field(default_factory=list)


def _scene_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A room-ish backdrop: wall gradient, a floor band, a few frames, soft blobs, grain."""
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    top, bottom = rng.uniform(0.15, 0.95, (2, 3)).astype(np.float32)
    img = np.broadcast_to(top * (1 - ys) + bottom * ys, (h, w, 3)).copy()
    if rng.uniform() < 0.6:  # floor
        fy = int(h * rng.uniform(0.65, 0.9))
        img[fy:] = (
            rng.uniform(0.1, 0.7, 3).astype(np.float32)
            * np.linspace(0.8, 1.1, h - fy, dtype=np.float32)[:, None, None]
        )
    for _ in range(int(rng.integers(0, 4))):  # frames / windows / furniture
        x0, y0 = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        x1 = x0 + int(rng.uniform(0.05, 0.35) * w)
        y1 = y0 + int(rng.uniform(0.05, 0.35) * h)
        col = tuple(float(c) for c in rng.uniform(0, 1, 3))
        cv2.rectangle(img, (x0, y0), (x1, y1), col, -1)
        cv2.rectangle(img, (x0, y0), (x1, y1), tuple(c * 0.5 for c in col), max(1, int(0.006 * w)))
    k = max(3, int(0.03 * max(w, h)) | 1)
    for _ in range(int(rng.integers(1, 6))):  # soft out-of-focus blobs
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        r = int(rng.uniform(0.03, 0.2) * max(w, h))
        m = np.zeros((h, w), np.float32)
        cv2.circle(m, c, r, 1.0, -1)
        m = cv2.GaussianBlur(m, (k, k), 0)[..., None] * float(rng.uniform(0.15, 0.4))
        img = img * (1 - m) + rng.uniform(0, 1, 3).astype(np.float32) * m
    # vignette
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5
    img *= (1 - 0.25 * r2)[..., None]
    return np.clip(img, 0, 1).astype(np.float32)


def _similarity(scale: float, angle: float, centre: tuple[float, float]) -> np.ndarray:
    """2x3 map from face-local units (face centre at (0.5, 0.5)) to scene pixels."""
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    R = np.array([[c, -s], [s, c]])
    t = np.array(centre) - R @ np.array([0.5, 0.5])
    return np.hstack([R, t[:, None]])


def _draw_face(img: np.ndarray, iseed: int, style: str, A: np.ndarray) -> dict[str, Any] | None:
    """Composite one face into ``img`` (float RGB, in place); returns its record."""
    from beardnet.synth import render as R

    H, W = img.shape[:2]
    # the part of the figure drawn: face, hair, ears and the top of neck and shoulders
    ext = np.array([[-0.15, -0.1], [1.15, -0.1], [1.15, 1.3], [-0.15, 1.3]])
    pts = ext @ A[:, :2].T + A[:, 2]
    x0, y0 = np.floor(pts.min(0)).astype(int)
    x1, y1 = np.ceil(pts.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    Al = A.copy()
    Al[:, 2] -= (x0, y0)
    w, h = x1 - x0, y1 - y0
    scale = scale_of(A)
    ss = 2 if scale < 300 else 1
    p = R.face_params(iseed)
    layers = R.render_layers(p, style, Al, w, h, iseed, ss=ss)
    # fade the bust out towards its bottom so it does not end in a straight cut
    Ainv = cv2.invertAffineTransform(Al)
    ys, xs = np.mgrid[0 : h * ss, 0 : w * ss].astype(np.float32)
    xs, ys = (xs + 0.5) / ss, (ys + 0.5) / ss
    v = Ainv[1, 0] * xs + Ainv[1, 1] * ys + Ainv[1, 2]
    fade = np.clip((1.28 - v) / 0.25, 0, 1).astype(np.float32)
    region = img[y0:y1, x0:x1]
    big = (
        cv2.resize(region, (w * ss, h * ss), interpolation=cv2.INTER_NEAREST)
        if ss > 1
        else region.copy()
    )
    R._over(big, layers.fig, layers.fig_alpha * fade)
    if layers.beard_alpha is not None:
        R._over(big, layers.beard_col, layers.beard_alpha)
    img[y0:y1, x0:x1] = R._down(big, ss)
    face = R._down(layers.face_cov, ss) >= 0.5
    ys_, xs_ = np.nonzero(face)
    if not len(xs_):
        return None
    box = [
        float(xs_.min() + x0),
        float(ys_.min() + y0),
        float(xs_.max() + 1 + x0),
        float(ys_.max() + 1 + y0),
    ]
    return {
        "box": box,
        "style": style,
        "landmarks": {
            k: [round(a, 2), round(b, 2)] for k, (a, b) in R.face_landmarks(p, A).items()
        },
        "identity_seed": int(iseed),
    }


def render_scene(
    seed: int,
    size: int | None = None,
    min_size: int = 256,
    max_size: int = 1024,
    n_faces: int | None = None,
) -> Scene:
    """Render scene ``seed``: longest side ``size`` (else random in [min_size, max_size]).

    ``n_faces`` forces the number of faces (0-3 drawn at random otherwise). Faces are sized
    log-uniformly from ~20 px wide to most of the image, kept inside the image and apart.
    """
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 2718])
    long_side = int(size) if size else int(rng.integers(min_size, max_size + 1))
    aspect = float(rng.choice([1.0, 4 / 3, 3 / 2, 16 / 9]))
    short = max(32, round(long_side / aspect))
    if rng.uniform() < 0.5:
        W, H = long_side, short
    else:
        W, H = short, long_side
    img = _scene_background(rng, W, H)
    k = int(rng.choice(4, p=FACE_COUNT_P)) if n_faces is None else int(n_faces)
    faces: list[dict[str, Any]] = []
    taken: list[tuple[float, float, float]] = []
    # bigger faces first, so small ones fill the gaps
    min_side = min(W, H)
    hi = max(0.9 * min_side / (1.4 * 1.0), 40.0)
    sides = np.exp(rng.uniform(np.log(32), np.log(hi), k)) if k else np.array([])
    if k and rng.uniform() < 0.35:  # one large face (portrait-like)
        sides[0] = rng.uniform(0.45, 0.85) * min_side / 1.3
    for s in sorted(sides, reverse=True):
        s = float(s)
        angle = float(np.deg2rad(rng.uniform(-12, 12)))
        placed = None
        for _ in range(30):
            cx = rng.uniform(0.5 * FACE_FRACTION * s, W - 0.5 * FACE_FRACTION * s)
            cy = rng.uniform(0.45 * s, H - 0.45 * s)
            r = 0.5 * s
            if all((cx - a) ** 2 + (cy - b) ** 2 > (r + c) ** 2 for a, b, c in taken):
                placed = (cx, cy)
                break
        if placed is None:
            continue
        taken.append((placed[0], placed[1], 0.5 * s))
        style = str(rng.choice(DEFAULT_CATEGORIES, p=STYLE_P))
        iseed = int(rng.integers(0, 2**31 - 1))
        rec = _draw_face(img, iseed, style, _similarity(s, angle, placed))
        if rec is not None:
            faces.append(rec)
    noise = rng.standard_normal(img.shape).astype(np.float32) * float(rng.uniform(0.003, 0.015))
    out = np.clip(np.rint((img + noise) * 255), 0, 255).astype(np.uint8)
    return Scene(image=out, faces=faces)
