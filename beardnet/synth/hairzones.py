"""Where and how a beard grows on a real face: per-style looks, density fields and hair flow.

All shapes are in the face frame of :mod:`beardnet.synth.realface` (unit = eye distance ``d``,
``v`` towards the mouth) and anchored on the face's own mesh landmarks:

- **full_beard / stubble**: below a cheek line that runs flat just under the nose, drops to the
  mouth corners and rises to the sideburn at the face edge (heights drawn per look, wavy);
- **mustache**: from just under the nose to the upper lip, a little wider than the mouth, the
  ends reaching the mouth corners;
- **goatee**: the mustache joined around the mouth corners to a chin patch.

Density fades in over a soft, noisy band at the zone edge (no outline) and is modulated by
large-scale patchiness; hard limits are the face oval (no strands past the jaw), the lips and the
nose (:func:`clip_layers`). Hair flows down and slightly outwards on cheeks and jaw, outwards from
the philtrum on the upper lip.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from beardnet.synth.canvas import Canvas, _noise
from beardnet.synth.realface import NOSE, UPPER_LIP_TOP, RealFace, luminance

STYLES = ("stubble", "mustache", "goatee", "full_beard")

#: Natural beard colours (RGB 0..1): black, dark brown, brown, auburn, dark blond, ash, grey.
NATURAL = np.array(
    [(30, 24, 22), (52, 37, 28), (85, 60, 42), (112, 62, 36), (150, 115, 75), (70, 62, 58),
     (120, 114, 108)], np.float32) / 255.0  # fmt: skip


@dataclass(frozen=True)
class BeardLook:
    """Everything random about one drawn beard (lengths in eye distances)."""

    style: str
    colour: np.ndarray  # hair albedo RGB 0..1
    density: float  # strands per d^2 where the density field is 1
    length: tuple[float, float]
    opacity: float
    fill: float  # alpha of the under-layer between strands
    shadow: float  # darkening of the skin under dense hair
    patch: float  # amplitude of the large-scale patchiness
    edge: float  # width of the soft band at the zone edge
    cheek_low: float  # cheek line height beside the mouth (v)
    cheek_side: float  # cheek line height at the face edge (v)
    width: float  # mustache / goatee extension beyond the mouth corners
    spread: float  # angular scatter of strands (radians)
    grey: float  # share of grey strands
    own_colour: bool


def hair_colour(rf: RealFace, rng: np.random.Generator, own: bool) -> np.ndarray:
    """The person's own facial-hair colour (from the brows) or a natural one, kept darker than
    the skin so that it reads as hair."""
    if own:
        b = rf.brow.astype(np.float64)
        grey = float(luminance(b))
        col = (0.85 * b + 0.15 * grey) * rng.uniform(0.6, 0.8)
    else:
        col = NATURAL[rng.integers(len(NATURAL))].astype(np.float64) * rng.uniform(0.85, 1.15)
    skin_l = float(luminance(rf.skin))
    lim = skin_l * rng.uniform(0.45, 0.7)
    lum = float(luminance(col))
    if lum > lim:
        col = col * lim / max(lum, 1e-4)
    return np.clip(col, 0.02, 1.0).astype(np.float32)


def sample_look(
    rf: RealFace, style: str, rng: np.random.Generator, own_colour: bool = True
) -> BeardLook:
    """Draw the look of one ``style`` beard for face ``rf``."""
    if style not in STYLES:
        raise KeyError(f"unknown beard style {style!r}; known: {', '.join(STYLES)}")
    sv = rf.subnasale_v
    common = {
        "style": style,
        "colour": hair_colour(rf, rng, own_colour),
        "cheek_low": sv + float(rng.uniform(-0.02, 0.08)),
        "cheek_side": float(rng.uniform(0.22, 0.45)),
        "width": float(rng.uniform(0.0, 0.1)),
        "spread": float(rng.uniform(0.12, 0.25)),
        "grey": float(rng.choice([0.0] * 7 + [rng.uniform(0.05, 0.25)])),
        "own_colour": own_colour,
    }
    if style == "stubble":
        lo = float(rng.uniform(0.008, 0.015))
        return BeardLook(density=float(rng.uniform(3500, 6000)), length=(lo, lo * 2.2),
                         opacity=float(rng.uniform(0.55, 0.8)), fill=float(rng.uniform(0.04, 0.1)),
                         shadow=float(rng.uniform(0.05, 0.1)), patch=float(rng.uniform(0.25, 0.45)),
                         edge=float(rng.uniform(0.12, 0.22)), **common)  # fmt: skip
    lo = float(rng.uniform(0.05, 0.1))
    hi = lo * float(rng.uniform(1.8, 2.8))
    density = float(rng.uniform(2400, 3800))
    edge = float(rng.uniform(0.12, 0.22))
    if style == "mustache":
        lo, hi, density, edge = lo * 1.1, min(hi, 0.2), density * 1.6, edge * 0.6
    if style == "goatee":
        density *= 1.25
    return BeardLook(density=density, length=(lo, hi),
                     opacity=float(rng.uniform(0.65, 0.85)), fill=float(rng.uniform(0.25, 0.45)),
                     shadow=float(rng.uniform(0.08, 0.16)), patch=float(rng.uniform(0.15, 0.35)),
                     edge=edge, **common)  # fmt: skip


def cheek_line(rf: RealFace, look: BeardLook, u: np.ndarray) -> np.ndarray:
    """Height ``v`` of the upper edge of a full beard / stubble at ``u``."""
    au = np.abs(u)
    ux = rf.mouth_half_width + 0.05
    xs = [0.0, 0.22, ux, 1.35]
    ys = [rf.subnasale_v + 0.035, rf.subnasale_v + 0.035, look.cheek_low, look.cheek_side]
    return np.interp(au, xs, ys)


def zone_distance(rf: RealFace, look: BeardLook, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance to the style's zone (negative inside), eye distances."""
    mc = rf.mouth_centre
    top = rf.subnasale_v + 0.02
    t = np.clip(np.abs(u - mc[0]) / (rf.mouth_half_width + look.width + 1e-3), 0, 1)
    d_must = np.maximum.reduce(  # the ends droop towards the mouth corners
        [top + 0.12 * t**2 - v, np.abs(u - mc[0]) - (rf.mouth_half_width + look.width),
         v - (mc[1] + 0.05)]
    )  # fmt: skip
    if look.style == "mustache":
        return d_must
    if look.style == "goatee":
        gw = rf.mouth_half_width + look.width * 0.8
        cy, ay = rf.chin_v - 0.1, rf.chin_v - mc[1] + 0.1
        r = np.sqrt(((u - mc[0]) / gw) ** 2 + ((v - cy) / ay) ** 2)
        d_chin = np.maximum((r - 1.0) * min(gw, ay), (mc[1] - 0.03) - v)
        return np.minimum(d_must, d_chin)
    return cheek_line(rf, look, u) - v


def density_field(
    rf: RealFace, look: BeardLook, cv: Canvas, rng: np.random.Generator
) -> np.ndarray:
    """Relative hair density in [0, ~1.3] on the canvas (before the hard clips)."""
    H, W = cv.u.shape
    k = max(3, int(0.06 * cv.ppu))
    wobble = _noise(rng, H, W, (k, k)) * 0.25 * look.edge
    d = zone_distance(rf, look, cv.u, cv.v) + wobble
    t = np.clip(-d / look.edge, 0.0, 1.0)
    dens = t * t * (3 - 2 * t)
    k2 = max(3, int(0.3 * cv.ppu))
    patch = _noise(rng, H, W, (k2, k2))
    dens = dens * np.clip(1.0 + look.patch * patch, 0.15, 1.35)
    k3 = max(3, int(0.07 * cv.ppu))
    clumps = _noise(rng, H, W, (k3, k3))
    dens = dens * np.clip(1.0 + 0.35 * clumps, 0.3, 1.5)
    if look.style == "mustache":  # thickest under the nose, thinning towards the ends
        half = rf.mouth_half_width + look.width
        dens = dens * np.clip(1.15 - (np.abs(cv.u - rf.mouth_centre[0]) / half) ** 2, 0, 1)
        lip_top = float(rf.lm[UPPER_LIP_TOP, 1])
        low = np.clip((cv.v - rf.subnasale_v) / max(lip_top - rf.subnasale_v, 0.02), 0, 1)
        dens = dens * (0.5 + 0.5 * low)  # lighter under the nose, fuller at the lip line
    else:  # fuller low on the face than high on the cheeks
        lift = np.clip((cv.v - rf.subnasale_v) / max(rf.chin_v - rf.subnasale_v, 0.1), 0, 1)
        dens = dens * (0.7 + 0.4 * lift)
    if look.style in ("full_beard", "goatee", "stubble"):
        # sparser beside the lower lip, where many beards thin out
        mc = rf.mouth_centre
        gap = np.exp(
            -(((np.abs(cv.u - mc[0]) - 0.3) / 0.12) ** 2) - ((cv.v - (mc[1] + 0.22)) / 0.1) ** 2
        )
        dens = dens * (1 - 0.45 * gap)
    return dens.astype(np.float32)


def _coverage(cv: Canvas, polys: list[np.ndarray], blur_units: float = 0.0) -> np.ndarray:
    H, W = cv.shape
    m = np.zeros((H, W), np.uint8)
    qs = [np.round((cv.to_px(np.asarray(p, np.float64)) - 0.5) * 16).astype(np.int32)
          for p in polys]  # fmt: skip
    for q in qs:
        cv2.fillPoly(m, [q], 255, cv2.LINE_AA, shift=4)
    c = m.astype(np.float32) / 255.0
    if blur_units > 0 and qs:  # blur only the shapes' box (plus 4 sigma): small on the canvas
        sig = max(0.5, blur_units * cv.ppu)
        pts = np.concatenate(qs) / 16.0
        r = int(np.ceil(4 * sig)) + 2
        x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int) - r, 0)
        x1, y1 = np.minimum(np.ceil(pts.max(0)).astype(int) + r + 1, [W, H])
        if x1 > x0 and y1 > y0:
            c[y0:y1, x0:x1] = cv2.GaussianBlur(c[y0:y1, x0:x1], (0, 0), sig)
    return c


def clip_layers(rf: RealFace, cv: Canvas) -> np.ndarray:
    """Where hair may appear at all: inside the face oval, off the lips and the nose."""
    oval = _coverage(cv, [rf.oval])
    lips = rf.lips
    c = lips.mean(axis=0)
    lips_grown = c + (lips - c) * np.array([1.04, 1.12])
    lip_cov = _coverage(cv, [lips_grown], 0.006)
    nose = rf.lm[list(NOSE)]
    nose_cov = _coverage(cv, [nose], 0.01)
    return (oval * (1 - lip_cov) * (1 - nose_cov)).astype(np.float32)


def flow_angles(rf: RealFace, look: BeardLook, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Hair direction at roots ``(u, v)`` (radians; pi/2 = straight down the face)."""
    mc = rf.mouth_centre
    du = u - mc[0]
    s = np.sign(du)
    down_out = np.pi / 2 - s * (0.12 + 0.22 * np.clip(np.abs(du), 0, 1.2))
    lip = (v < mc[1] + 0.02) & (np.abs(du) < rf.mouth_half_width + look.width + 0.06)
    t = np.clip(np.abs(du) / (rf.mouth_half_width + 0.05), 0, 1)
    fan = np.pi / 2 - s * (0.3 + 0.85 * t)
    ang = np.where(lip, fan, down_out)
    chin = np.clip((v - (rf.chin_v - 0.2)) / 0.2, 0, 1)
    return ang * (1 - 0.5 * chin) + (np.pi / 2) * 0.5 * chin
