"""The beardless cartoon face: background, shading, skin, features, hair and mouth layers.

Everything is drawn from implicit shapes evaluated on a supersampled :class:`Canvas` in
face-local coordinates (:mod:`beardnet.synth.params`), so the same face renders into an aligned
crop or, through any similarity transform, into a larger scene.
"""

from __future__ import annotations

import cv2
import numpy as np

from beardnet.synth.canvas import _Canvas, _ellipse_d, _noise, _over
from beardnet.synth.params import FaceParams


def _face_halfwidth(p: FaceParams, v: np.ndarray, grow: float = 0.0, chin_extra: float = 0.0):
    hw = p.hw + grow
    top_part = hw * np.sqrt(np.clip(1 - ((p.ycb - v) / (p.ycb - p.top)) ** 2, 0, 1))
    t = np.clip((v - p.ycb) / (p.chin + chin_extra - p.ycb), 0, 1)
    low_part = hw * np.clip(1 - t**p.jaw_n, 0, 1) ** (1 / p.jaw_n)
    return np.where(v < p.ycb, top_part, low_part)


def _face_d(p: FaceParams, u, v, grow: float = 0.0, chin_extra: float = 0.0):
    w = _face_halfwidth(p, v, grow, chin_extra)
    return np.maximum(np.maximum(np.abs(u - 0.5) - w, p.top - v), v - (p.chin + chin_extra))


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
