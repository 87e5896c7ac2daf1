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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from beardnet.categories import DEFAULT_CATEGORIES
from beardnet.geometry import CANONICAL_LEFT_EYE, CANONICAL_MOUTH, CANONICAL_RIGHT_EYE

#: Supersampling factor: shapes are drawn at this multiple of the output size, then averaged.
SUPERSAMPLE = 2

_SKIN_TONES = (
    np.array(
        [
            (250, 222, 200),
            (241, 200, 165),
            (226, 178, 135),
            (205, 150, 105),
            (176, 118, 78),
            (140, 90, 58),
            (105, 66, 44),
            (78, 50, 36),
        ],
        dtype=np.float32,
    )
    / 255.0
)

_HAIR_COLOURS = (
    np.array(
        [
            (28, 22, 20),  # black
            (55, 38, 28),  # dark brown
            (92, 62, 40),  # brown
            (130, 80, 45),  # auburn
            (150, 110, 70),  # light brown
            (185, 150, 95),  # dark blond
            (125, 118, 112),  # grey
            (60, 52, 48),  # ash dark
        ],
        dtype=np.float32,
    )
    / 255.0
)

_IRIS_COLOURS = (
    np.array(
        [(70, 45, 25), (95, 60, 30), (60, 90, 130), (75, 110, 80), (40, 30, 22), (110, 95, 60)],
        dtype=np.float32,
    )
    / 255.0
)


@dataclass(frozen=True)
class CropSample:
    """One rendered crop: RGB image, beard/face masks and landmarks in crop pixels."""

    image: np.ndarray  # HxWx3 uint8 RGB
    beard_mask: np.ndarray  # HxW bool
    face_mask: np.ndarray  # HxW bool
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class FaceParams:
    """Per-identity appearance, all in face-local units (fractions of the crop side)."""

    skin: np.ndarray
    hair: np.ndarray
    beard: np.ndarray
    iris: np.ndarray
    lip: np.ndarray
    shirt: np.ndarray
    eye_y: float
    eye_dx: float  # half distance between eye centres
    mouth_y: float
    hw: float  # half face width at the cheekbones
    top: float  # top of the face oval (forehead)
    ycb: float  # height of the widest point
    chin: float
    jaw_n: float  # superellipse exponent of the lower face (2 = oval, 3 = square jaw)
    eye_w: float
    eye_h: float
    gaze: tuple[float, float]
    brow_gap: float
    brow_th: float
    brow_arch: float
    mouth_w: float
    upper_lip: float
    lower_lip: float
    nose_y: float
    hair_style: int  # 0 bald, 1 short, 2 medium, 3 long
    hairline: float
    light: np.ndarray  # unit vector towards the light (x right, y down, z to viewer)
    ambient: float
    cast: np.ndarray  # colour cast of the light
    bg_kind: int
    bg_cols: np.ndarray
    bg_angle: float
    pose_rot: float  # radians
    pose_scale: float
    pose_shift: tuple[float, float]
    noise_sigma: float
    beard_sideburn: float  # how high a full beard climbs at the sides
    beard_fill: float  # opacity of the dense under-layer of a beard
    goatee_w: float
    mustache_w: float


def _mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return (a * (1 - t) + b * t).astype(np.float32)


def face_params(identity_seed: int) -> FaceParams:
    """Sample the appearance of one identity (deterministic from ``identity_seed``)."""
    rng = np.random.default_rng([int(identity_seed) & 0xFFFFFFFF, 7919])
    t = rng.uniform(0, len(_SKIN_TONES) - 1)
    i = int(t)
    skin = _mix(_SKIN_TONES[i], _SKIN_TONES[min(i + 1, len(_SKIN_TONES) - 1)], t - i)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
    hair = np.clip(hair, 0, 1).astype(np.float32)
    # beard a little darker / redder than the head hair sometimes
    beard = np.clip(hair * rng.uniform(0.75, 1.0) + rng.normal(0, 0.02, 3), 0, 1).astype(np.float32)
    # keep a beard distinguishable from the skin it grows on
    lum_s, lum_b = float(skin.mean()), float(beard.mean())
    if lum_s - lum_b < 0.18:
        beard = np.clip(beard * max(0.25, (lum_s - 0.2) / max(lum_b, 1e-3)), 0, 1).astype(
            np.float32
        )
    lip = _mix(skin * 0.8, np.array([0.62, 0.25, 0.27], np.float32), rng.uniform(0.25, 0.45))
    shirt = rng.uniform(0.05, 0.9, 3).astype(np.float32)
    hw = float(rng.uniform(0.30, 0.35))
    light = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.6, 0.1), 1.0], np.float32)
    light /= np.linalg.norm(light)
    bg_kind = int(rng.integers(4))
    return FaceParams(
        skin=skin,
        hair=hair,
        beard=beard,
        iris=_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))],
        lip=lip,
        shirt=shirt,
        eye_y=CANONICAL_LEFT_EYE[1] + float(rng.uniform(-0.008, 0.008)),
        eye_dx=(CANONICAL_RIGHT_EYE[0] - CANONICAL_LEFT_EYE[0]) / 2
        + float(rng.uniform(-0.006, 0.006)),
        mouth_y=CANONICAL_MOUTH[1] + float(rng.uniform(-0.012, 0.012)),
        hw=hw,
        top=float(rng.uniform(0.02, 0.07)),
        ycb=float(rng.uniform(0.40, 0.46)),
        chin=CANONICAL_MOUTH[1] + float(rng.uniform(0.15, 0.19)),
        jaw_n=float(rng.uniform(1.9, 3.0)),
        eye_w=float(rng.uniform(0.047, 0.056)),
        eye_h=float(rng.uniform(0.019, 0.025)),
        gaze=(float(rng.uniform(-0.007, 0.007)), float(rng.uniform(-0.003, 0.003))),
        brow_gap=float(rng.uniform(0.052, 0.068)),
        brow_th=float(rng.uniform(0.014, 0.024)),
        brow_arch=float(rng.uniform(0.006, 0.018)),
        mouth_w=float(rng.uniform(0.075, 0.098)),
        upper_lip=float(rng.uniform(0.013, 0.02)),
        lower_lip=float(rng.uniform(0.017, 0.026)),
        nose_y=float(rng.uniform(0.565, 0.585)),
        hair_style=int(rng.choice(4, p=[0.1, 0.4, 0.35, 0.15])),
        hairline=float(rng.uniform(0.13, 0.2)),
        light=light,
        ambient=float(rng.uniform(0.5, 0.68)),
        cast=np.clip(1 + rng.normal(0, 0.04, 3), 0.88, 1.1).astype(np.float32),
        bg_kind=bg_kind,
        bg_cols=rng.uniform(0.05, 0.95, (3, 3)).astype(np.float32),
        bg_angle=float(rng.uniform(0, np.pi)),
        pose_rot=float(np.deg2rad(rng.uniform(-5, 5))),
        pose_scale=float(rng.uniform(0.96, 1.04)),
        pose_shift=(float(rng.uniform(-0.012, 0.012)), float(rng.uniform(-0.012, 0.012))),
        noise_sigma=float(rng.uniform(0.004, 0.02)),
        beard_sideburn=float(rng.uniform(0.48, 0.53)),
        beard_fill=float(rng.uniform(0.3, 0.5)),
        goatee_w=float(rng.uniform(0.095, 0.12)),
        mustache_w=float(rng.uniform(0.095, 0.12)),
    )


# ----------------------------------------------------------------------------------------------
# small implicit-shape helpers (all distances in face-local units; positive = outside)


def _ellipse_d(u, v, cx, cy, ax, ay):
    r = np.sqrt(((u - cx) / ax) ** 2 + ((v - cy) / ay) ** 2)
    return (r - 1.0) * min(ax, ay)


class _Canvas:
    """A supersampled pixel grid with its face-local coordinates (u, v)."""

    def __init__(self, A: np.ndarray, width: int, height: int, ss: int = SUPERSAMPLE):
        # A: 2x3, face-local -> output pixel coordinates (continuous, pixel centres at i+0.5)
        self.A = np.asarray(A, np.float64)
        self.w, self.h, self.ss = width, height, ss
        W, H = width * ss, height * ss
        Ainv = cv2.invertAffineTransform(self.A)
        xs = (np.arange(W, dtype=np.float32) + 0.5) / ss
        ys = (np.arange(H, dtype=np.float32) + 0.5) / ss
        self.u = (Ainv[0, 0] * xs[None, :] + Ainv[0, 1] * ys[:, None] + Ainv[0, 2]).astype(
            np.float32
        )
        self.v = (Ainv[1, 0] * xs[None, :] + Ainv[1, 1] * ys[:, None] + Ainv[1, 2]).astype(
            np.float32
        )
        # supersampled pixels per face-local unit
        self.ppu = float(np.sqrt(abs(np.linalg.det(self.A[:, :2])))) * ss

    def cov(self, d: np.ndarray, feather: float = 0.0) -> np.ndarray:
        """Coverage in [0, 1] from a signed distance (anti-aliased edge, optional feather)."""
        width = 1.0 + feather * self.ppu
        return np.clip(0.5 - d * self.ppu / width, 0.0, 1.0).astype(np.float32)

    def to_px(self, uv: np.ndarray) -> np.ndarray:
        """Face-local points (N, 2) -> supersampled pixel coordinates (N, 2)."""
        p = uv @ self.A[:, :2].T + self.A[:, 2]
        return p * self.ss


def _over(img: np.ndarray, col, a: np.ndarray) -> None:
    """In place: ``img = img*(1-a) + col*a`` (col a colour or an image)."""
    a3 = a[..., None]
    img *= 1.0 - a3
    img += np.asarray(col, np.float32) * a3


def _face_halfwidth(p: FaceParams, v: np.ndarray, grow: float = 0.0, chin_extra: float = 0.0):
    hw = p.hw + grow
    top_part = hw * np.sqrt(np.clip(1 - ((p.ycb - v) / (p.ycb - p.top)) ** 2, 0, 1))
    t = np.clip((v - p.ycb) / (p.chin + chin_extra - p.ycb), 0, 1)
    low_part = hw * np.clip(1 - t**p.jaw_n, 0, 1) ** (1 / p.jaw_n)
    return np.where(v < p.ycb, top_part, low_part)


def _face_d(p: FaceParams, u, v, grow: float = 0.0, chin_extra: float = 0.0):
    w = _face_halfwidth(p, v, grow, chin_extra)
    return np.maximum(np.maximum(np.abs(u - 0.5) - w, p.top - v), v - (p.chin + chin_extra))


def _noise(rng: np.random.Generator, h: int, w: int, blur: tuple[int, int]) -> np.ndarray:
    n = rng.standard_normal((h, w)).astype(np.float32)
    n = cv2.blur(n, blur)
    s = float(n.std()) or 1.0
    return n / s


# ----------------------------------------------------------------------------------------------
# the layers


def _background(p: FaceParams, cv: _Canvas, rng: np.random.Generator) -> np.ndarray:
    H, W = cv.u.shape
    c0, c1, c2 = p.bg_cols
    if p.bg_kind == 0:  # flat
        img = np.broadcast_to(c0, (H, W, 3)).copy()
    elif p.bg_kind in (1, 3):  # linear gradient (3: plus blobs)
        t = np.cos(p.bg_angle) * cv.u + np.sin(p.bg_angle) * cv.v
        t = np.clip((t - t.min()) / max(float(np.ptp(t)), 1e-6), 0, 1)[..., None]
        img = (c0 * (1 - t) + c1 * t).astype(np.float32)
        if p.bg_kind == 3:
            for _ in range(4):
                cx, cy = rng.uniform(-0.2, 1.2, 2)
                r = rng.uniform(0.08, 0.3)
                _over(
                    img,
                    rng.uniform(0, 1, 3),
                    0.35 * cv.cov(_ellipse_d(cv.u, cv.v, cx, cy, r, r), 0.05),
                )
    else:  # low-frequency noise
        cells = max(2, round(W / (0.12 * cv.ppu)))
        small = rng.standard_normal((max(2, cells * H // W), cells)).astype(np.float32)
        n = cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)
        t = np.clip(0.5 + 0.3 * n, 0, 1)[..., None]
        img = (c0 * (1 - t) + c2 * t).astype(np.float32)
    return np.ascontiguousarray(img, dtype=np.float32)


def _shade(p: FaceParams, u, v) -> np.ndarray:
    """Lambert shading of the face modelled as an ellipsoid."""
    nx = (u - 0.5) / (p.hw * 1.15)
    ny = (v - 0.47) / 0.5
    nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0.02, 1))
    lam = np.clip(nx * p.light[0] + ny * p.light[1] + nz * p.light[2], 0, 1)
    return (p.ambient + (1.05 - p.ambient) * lam).astype(np.float32)


def _mouth_layer(p: FaceParams, cv: _Canvas, skin_img: np.ndarray):
    """(colour image, alpha) of the lips and mouth line; re-drawn over any beard."""
    u, v = cv.u, cv.v
    du = u - 0.5
    q = np.clip(1 - (du / p.mouth_w) ** 2, 0, 1)
    sq = np.sqrt(q)
    bow = 1 - 0.35 * np.exp(-((du / 0.014) ** 2))
    my = p.mouth_y
    up_top = my - p.upper_lip * sq * bow
    lo_bot = my + p.lower_lip * sq
    d_up = np.maximum(np.abs(du) - p.mouth_w, np.maximum(up_top - v, v - my))
    d_lo = np.maximum(np.abs(du) - p.mouth_w, np.maximum(my - v, v - lo_bot))
    a_up = cv.cov(d_up)
    a_lo = cv.cov(d_lo)
    shade = _shade(p, u, v)[..., None]
    col = np.empty_like(skin_img)
    col[:] = p.lip * shade * 0.92
    # lower lip lighter, with a highlight
    hl = np.exp(-(((v - (my + p.lower_lip * 0.45)) / (p.lower_lip * 0.35)) ** 2)) * q
    col += (a_lo * (0.08 + 0.1 * hl))[..., None] * (1.0 - col)
    a = np.maximum(a_up, a_lo)
    # mouth line
    d_line = np.maximum(np.abs(v - my - 0.004 * (1 - q)) - 0.0035, np.abs(du) - p.mouth_w * 1.03)
    a_line = cv.cov(d_line) * 0.85
    col = col * (1 - a_line[..., None]) + (p.lip * 0.25)[None, None, :] * a_line[..., None]
    a = np.maximum(a, a_line)
    return col.astype(np.float32), a.astype(np.float32)


def _base(p: FaceParams, cv: _Canvas, rng: np.random.Generator):
    """The beardless picture: (background image, figure image, figure alpha, face-mask cov,
    mouth colour, mouth alpha)."""
    u, v = cv.u, cv.v
    H, W = u.shape
    du = u - 0.5
    bg = _background(p, cv, rng)
    fig = np.zeros((H, W, 3), np.float32)
    fa = np.zeros((H, W), np.float32)
    skin = p.skin
    shade = _shade(p, u, v)

    # long hair behind the head
    if p.hair_style == 3:
        d = np.maximum(_ellipse_d(u, v, 0.5, 0.42, p.hw + 0.09, 0.5), v - 0.9)
        a = cv.cov(d)
        _over(fig, p.hair * 0.8, a)
        fa = np.maximum(fa, a)
    # shirt and shoulders
    d_sh = _ellipse_d(u, v, 0.5, 1.32, 0.72, 0.4)
    a = cv.cov(d_sh)
    _over(fig, p.shirt * (0.75 + 0.25 * np.clip(1.2 - v, 0, 1))[..., None], a)
    fa = np.maximum(fa, a)
    # neck
    nw = p.hw * 0.58
    d_neck = np.maximum(np.abs(du) - nw, p.ycb + 0.1 - v)
    d_neck = np.maximum(d_neck, v - 1.05)
    a = cv.cov(d_neck)
    neck_shade = (0.62 + 0.12 * np.clip((v - p.chin) / 0.15, 0, 1)) * (0.9 + 0.1 * shade)
    _over(fig, skin * p.cast * neck_shade[..., None], a)
    fa = np.maximum(fa, a)
    # ears
    ey = 0.5 * (p.eye_y + p.nose_y)
    ew_at = float(_face_halfwidth(p, np.array([ey], np.float32))[0])
    for side in (-1, 1):
        ex = 0.5 + side * (ew_at - 0.006)
        d = _ellipse_d(u, v, ex, ey, 0.034, 0.068)
        a = cv.cov(d)
        _over(fig, skin * 0.82 * shade[..., None] * p.cast, a)
        fa = np.maximum(fa, a)
        d_in = _ellipse_d(u, v, ex + side * 0.006, ey, 0.018, 0.045)
        _over(fig, skin * 0.58, cv.cov(d_in, 0.01) * a * 0.7)

    # face skin
    d_face = _face_d(p, u, v)
    a_face = cv.cov(d_face)
    k = max(3, int(0.08 * cv.ppu) | 1)
    blot = _noise(rng, H, W, (k, k)) * 0.025
    face_col = skin[None, None, :] * (shade + blot)[..., None] * p.cast
    # cheek warmth
    for side in (-1, 1):
        ch = np.exp(-(((u - 0.5 - side * 0.19) / 0.07) ** 2 + ((v - 0.53) / 0.05) ** 2))
        face_col = face_col * (1 - 0.06 * ch[..., None]) + np.array(
            [0.75, 0.3, 0.3], np.float32
        ) * shade[..., None] * (0.06 * ch[..., None])
    # soft shadow along the jaw line (the face is rounder than the outline)
    rim = np.clip(1 + d_face / 0.03, 0, 1)
    face_col *= (1 - 0.12 * rim**3)[..., None]
    _over(fig, face_col, a_face)
    fa = np.maximum(fa, a_face)

    def darken(amount: np.ndarray) -> None:
        fig[...] *= (1 - amount)[..., None]

    # eye sockets
    for side in (-1, 1):
        ex = 0.5 + side * p.eye_dx
        darken(
            0.16 * np.exp(-(((u - ex) / 0.07) ** 2 + ((v - p.eye_y + 0.008) / 0.04) ** 2)) * a_face
        )
    # nose: bridge shadow on the side away from the light, tip, nostrils, shadow below
    side = 1.0 if p.light[0] < 0 else -1.0
    bridge = (
        np.exp(-(((u - 0.5 - side * 0.028) / 0.012) ** 2))
        * np.clip((v - 0.4) / 0.06, 0, 1)
        * np.clip((p.nose_y - v) / 0.02, 0, 1)
    )
    darken(0.14 * bridge * a_face)
    tip = np.exp(-(((u - 0.5) / 0.022) ** 2 + ((v - p.nose_y + 0.02) / 0.02) ** 2))
    fig += (0.06 * tip * a_face)[..., None] * (1 - fig)
    for s in (-1, 1):
        wing = np.exp(
            -(((u - 0.5 - s * 0.034) / 0.01) ** 2 + ((v - p.nose_y + 0.006) / 0.016) ** 2)
        )
        darken(0.22 * wing * a_face)
        d_n = _ellipse_d(u, v, 0.5 + s * 0.019, p.nose_y + 0.003, 0.011, 0.0055)
        _over(fig, skin * 0.3, cv.cov(d_n, 0.004) * 0.9)
    under = np.exp(-(((u - 0.5) / 0.03) ** 2 + ((v - p.nose_y - 0.016) / 0.008) ** 2))
    darken(0.12 * under * a_face)
    # shadow under the lower lip and chin dimple
    darken(0.1 * np.exp(-((du / 0.04) ** 2 + ((v - p.mouth_y - p.lower_lip - 0.012) / 0.01) ** 2)))

    # eyes
    for s in (-1, 1):
        ex = 0.5 + s * p.eye_dx
        d_eye = _ellipse_d(u, v, ex, p.eye_y, p.eye_w, p.eye_h)
        # almond: pinch the outer corner a little
        a_eye = cv.cov(d_eye)
        white = np.array([0.93, 0.91, 0.88], np.float32) * p.cast
        _over(fig, white * (0.8 + 0.2 * shade)[..., None], a_eye)
        ix, iy = ex + p.gaze[0], p.eye_y + p.gaze[1]
        ri = p.eye_h * 1.05
        a_iris = cv.cov(_ellipse_d(u, v, ix, iy, ri, ri)) * a_eye
        _over(fig, p.iris, a_iris)
        _over(fig, p.iris * 0.55, cv.cov(np.abs(_ellipse_d(u, v, ix, iy, ri, ri)) - 0.002) * a_eye)
        a_pup = cv.cov(_ellipse_d(u, v, ix, iy, ri * 0.42, ri * 0.42)) * a_eye
        _over(fig, np.array([0.03, 0.03, 0.03], np.float32), a_pup)
        hlx, hly = ix + 0.25 * ri, iy - 0.3 * ri
        _over(
            fig,
            np.array([1.0, 1.0, 1.0], np.float32),
            cv.cov(_ellipse_d(u, v, hlx, hly, 0.004, 0.004)) * a_eye,
        )
        # upper lid / lash line and a faint lower lid
        r = np.sqrt(((u - ex) / p.eye_w) ** 2 + ((v - p.eye_y) / p.eye_h) ** 2)
        lid = np.abs(r - 1.0) * p.eye_h - 0.0035
        lid = np.maximum(lid, (v - p.eye_y) - 0.15 * p.eye_h)
        _over(fig, np.array([0.05, 0.04, 0.04], np.float32), cv.cov(lid) * 0.95)
        low = np.maximum(np.abs(r - 1.0) * p.eye_h - 0.0018, p.eye_y + 0.3 * p.eye_h - v)
        _over(fig, skin * 0.45, cv.cov(low) * 0.6)
        # crease above the eye
        crease = (
            np.abs(
                np.sqrt(
                    ((u - ex) / (p.eye_w * 1.1)) ** 2
                    + ((v - p.eye_y + 0.004) / (p.eye_h * 1.9)) ** 2
                )
                - 1
            )
            * p.eye_h
            - 0.002
        )
        crease = np.maximum(crease, v - p.eye_y + p.eye_h * 0.5)
        _over(fig, skin * 0.6, cv.cov(crease) * 0.5 * a_face)

    # brows, with a hair texture
    brow_tex = np.clip(
        0.85 + 0.25 * _noise(rng, H, W, (max(1, int(0.004 * cv.ppu)), max(3, int(0.02 * cv.ppu)))),
        0.5,
        1.2,
    )
    for s in (-1, 1):
        bx = 0.5 + s * (p.eye_dx + 0.008)
        bw = 0.062
        t = np.clip((u - bx) / bw, -1.2, 1.2)
        yb = p.eye_y - p.brow_gap - p.brow_arch * (1 - t**2)
        # thicker towards the nose
        th = p.brow_th * (0.75 - 0.3 * s * t) * 0.5
        d_b = np.maximum(np.abs(v - yb) - th, np.abs(u - bx) - bw)
        _over(fig, (p.hair * 0.8)[None, None, :] * brow_tex[..., None], cv.cov(d_b) * 0.95)

    # mouth (also redrawn over any beard)
    m_col, m_a = _mouth_layer(p, cv, fig)
    _over(fig, m_col, m_a)

    # hair on top
    if p.hair_style > 0:
        thick = {1: 0.025, 2: 0.045, 3: 0.05}[p.hair_style]
        side_len = {1: p.eye_y - 0.04, 2: p.eye_y + 0.07, 3: p.eye_y + 0.2}[p.hair_style]
        d_out = _ellipse_d(
            u, v, 0.5, p.ycb + 0.02, p.hw + thick, p.ycb + 0.02 - p.top + thick + 0.06
        )
        hairline = p.hairline + 0.16 * (du / p.hw) ** 4 + 0.05 * (du / p.hw) ** 2
        side = np.maximum(-d_face, v - side_len)
        d_hair = np.maximum(d_out, np.minimum(v - hairline, side))
        a_hair = cv.cov(d_hair, 0.004)
        tex = _noise(rng, H, W, (max(1, int(0.004 * cv.ppu)), max(3, int(0.06 * cv.ppu))))
        hair_col = p.hair[None, None, :] * np.clip(0.9 + 0.22 * tex, 0.5, 1.3)[..., None]
        hair_col = hair_col * (0.75 + 0.35 * shade)[..., None]
        _over(fig, hair_col, a_hair)
        fa = np.maximum(fa, a_hair)
    fig = np.clip(fig, 0, 1)
    face_cov = np.maximum(a_face, cv.cov(_face_d(p, u, v, 0.012, 0.035)) * (v > p.ycb))
    return bg, fig, fa, face_cov, m_col, m_a, shade


# ----------------------------------------------------------------------------------------------
# beards


def _beard_zone_d(p: FaceParams, u, v, category: str, wave: tuple[float, float] = (0.0, 0.0)):
    """Signed distance of the zone where a beard of ``category`` grows (face-local units)."""
    du = np.abs(u - 0.5)
    v = v + wave[0] * np.sin(u * 60.0 + wave[1]) + 0.5 * wave[0] * np.sin(u * 137.0 + 2 * wave[1])
    d_env = _face_d(p, u, v, 0.012, 0.035)
    top_c = p.nose_y + 0.022
    if category == "full_beard":
        b = np.clip(top_c - 1.5 * np.maximum(du - 0.07, 0), p.beard_sideburn, top_c)
        return np.maximum(d_env, b - v)
    if category == "stubble":
        b = np.clip(top_c - 1.3 * np.maximum(du - 0.07, 0), p.beard_sideburn + 0.07, top_c)
        b = b + 0.03 * np.clip((du - 0.06) / 0.05, 0, 1)
        return np.maximum(_face_d(p, u, v, 0.0, 0.006), b - v)
    if category == "goatee":
        gy = p.mouth_y + 0.05
        d_g = _ellipse_d(u, v, 0.5, gy, p.goatee_w, p.chin + 0.035 - gy + 0.01)
        return np.maximum(np.maximum(d_env, top_c - v), d_g)
    if category == "mustache":
        mw = p.mustache_w
        t = np.clip(du / mw, 0, 1)
        yc = p.mouth_y - p.upper_lip - 0.011 + 0.032 * t**2
        th = 0.017 * np.sqrt(1 - t**2) + 0.007
        return np.maximum(np.abs(v - yc) - th, du - mw)
    raise KeyError(f"unknown category {category!r}; known: {', '.join(DEFAULT_CATEGORIES)}")


#: Strand opacity and brightness tones (relative to the beard colour) of bearded styles. Strands
#: contrast with the under-layer enough to read as hair, not so much that the face detector
#: stops seeing a face (measured: crisp high-contrast strands cut the MediaPipe hit rate).
STRAND_ALPHA = 0.6
BEARD_TONES = (0.55, 0.8, 1.0, 1.3)
FILL_GAIN = 1.0
STRAND_THICK = 1.0
STRAND_BLUR = 0.0

_STRANDS = {
    # density (strands per supersampled zone pixel at 128 px), length range (face-local units)
    "full_beard": (0.55, (0.014, 0.036)),
    "goatee": (0.55, (0.012, 0.03)),
    "mustache": (0.7, (0.01, 0.024)),
    "stubble": (0.13, (0.002, 0.005)),
}


def _beard_layer(
    p: FaceParams, cv: _Canvas, category: str, rng: np.random.Generator, face_cov, shade: np.ndarray
):
    """(colour image, alpha) of the beard; alpha is 0 exactly outside the face mask."""
    u, v = cv.u, cv.v
    H, W = u.shape
    stubble = category == "stubble"
    wave = (float(rng.uniform(0.003, 0.008)), float(rng.uniform(0, 2 * np.pi)))
    d_zone = _beard_zone_d(p, u, v, category, wave)
    feather = 0.012 if stubble else 0.014
    zone_soft = cv.cov(d_zone + feather, feather)  # fades in from the zone edge
    col = np.empty((H, W, 3), np.float32)
    col[:] = p.beard
    alpha = zone_soft * (0.08 if stubble else p.beard_fill * FILL_GAIN)
    # a dense under-layer with some texture
    tex = _noise(rng, H, W, (max(1, int(0.003 * cv.ppu)), max(3, int(0.02 * cv.ppu))))
    col *= np.clip(0.85 + 0.2 * tex, 0.5, 1.3)[..., None]
    if stubble:
        col = col * 0.55 + p.skin * 0.25  # a grey shadow rather than hair colour
    # strands: roots sampled inside the zone
    density, (lmin, lmax) = _STRANDS[category]
    inside = np.flatnonzero(d_zone.ravel() < 0.5 * feather)
    n_zone = inside.size
    scale = (cv.ppu / (128 * SUPERSAMPLE)) ** 2  # keep strands per face-area constant
    n = int(n_zone * density / max(scale, 1e-6) * 1.0)
    n = int(min(n, n_zone * 2, 20000))
    if n > 0 and n_zone > 0:
        pick = inside[rng.integers(0, n_zone, n)]
        ru = u.ravel()[pick].astype(np.float64) + rng.uniform(-0.5, 0.5, n) / cv.ppu
        rv = v.ravel()[pick].astype(np.float64) + rng.uniform(-0.5, 0.5, n) / cv.ppu
        # thinner near the zone edge
        keep = rng.uniform(0, 1, n) < np.clip(0.5 - d_zone.ravel()[pick] / (2 * feather), 0, 1)
        ru, rv = ru[keep], rv[keep]
        n = ru.size
        dx = ru - 0.5
        if category == "mustache":
            ang = (
                np.pi / 2
                - np.sign(dx) * np.clip(np.abs(dx) / p.mustache_w, 0, 1) * 1.0
                - np.sign(dx) * 0.25
            )
        else:
            ang = np.pi / 2 - 0.9 * dx  # downwards, a little towards the chin
            lip = (np.abs(dx) < p.mouth_w + 0.02) & (rv < p.mouth_y)
            ang = np.where(lip, np.pi / 2 - np.sign(dx) * 0.6, ang)
        ang = ang + rng.normal(0, 0.35, n)
        length = rng.uniform(lmin, lmax, n)
        curl = rng.normal(0, 0.25, n) * length
        ca, sa = np.cos(ang), np.sin(ang)
        p0 = np.stack([ru, rv], 1)
        p2 = p0 + np.stack([ca, sa], 1) * length[:, None]
        p1 = (p0 + p2) / 2 + np.stack([-sa, ca], 1) * curl[:, None]
        pts = np.stack([p0, p1, p2], 1).reshape(-1, 2)
        px = cv.to_px(pts).reshape(n, 3, 2) - 0.5
        px = np.round(px * 16).astype(np.int32)
        thick = max(1, round(cv.ppu / (128 * SUPERSAMPLE) * (1.0 if stubble else STRAND_THICK)))
        tones = BEARD_TONES if not stubble else (0.5, 0.7)
        groups = rng.integers(0, len(tones), n)
        for gi, tone in enumerate(tones):
            sel = px[groups == gi]
            if not len(sel):
                continue
            m = np.zeros((H, W), np.uint8)
            cv2.polylines(m, list(sel), False, 255, thick, cv2.LINE_AA, shift=4)
            a = m.astype(np.float32) * ((0.4 if stubble else STRAND_ALPHA) / 255.0)
            if STRAND_BLUR > 0 and not stubble:
                a = cv2.GaussianBlur(a, (0, 0), STRAND_BLUR * cv.ppu / (128 * SUPERSAMPLE))
            c = np.clip(p.beard * tone + (0.03 if tone > 1 else 0.0), 0, 1)
            if stubble:
                c = p.beard * 0.6 * tone
            col = col * (1 - a[..., None]) + c * a[..., None]
            alpha = alpha + a * (1 - alpha)
    # lit like the face; never outside the face mask
    col = col * (0.35 + 0.75 * shade)[..., None]
    alpha = alpha * face_cov
    return col.astype(np.float32), alpha.astype(np.float32)


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


def _down(img: np.ndarray, ss: int) -> np.ndarray:
    if ss == 1:
        return img
    h, w = img.shape[0] // ss, img.shape[1] // ss
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


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
