"""Appearance of a cartoon identity: palettes and :class:`FaceParams`, drawn from a seed.

Shapes are in *face-local* coordinates: fractions of the canonical crop side
(:mod:`beardnet.geometry`), eyes at (0.35, 0.36)/(0.65, 0.36) and the mouth centre at
(0.50, 0.66) before a small per-identity jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from beardnet.geometry import CANONICAL_LEFT_EYE, CANONICAL_MOUTH, CANONICAL_RIGHT_EYE

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
