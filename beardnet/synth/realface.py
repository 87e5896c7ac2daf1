"""A real face as the composite beard drawer sees it: frame, landmarks, colours and lighting.

Positions are in the face frame of :mod:`beardnet.faces.regions`: origin between the eyes, ``u``
along the eye line, ``v`` towards the mouth, unit = the eye distance ``d``. Everything here is
measured from the FaceMesh landmarks (478 points) and the photo's own pixels:

- the face oval, the outer lip contour, the subnasale and the mouth corners (zones);
- skin colour (cheek patches), the colour of the person's own facial hair from the eyebrows
  (their darkest pixels: brow pixels are hair mixed with skin, so the colour is then darkened and
  desaturated by the drawer) and from the scalp line where it is darker than the skin;
- a lighting map: the face's luminance, blurred over skin only (lips, eyes, brows and nostrils
  left out) and divided by the skin median, so drawn hair is lit like the face it grows on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from beardnet.faces import Face
from beardnet.faces.regions import FACE_OVAL, SUBNASALE, face_frame

#: Outer lip contour (MediaPipe mesh indices), clockwise from the left mouth corner.
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39,
              40, 185)  # fmt: skip
#: Eyebrows: upper edge then lower edge reversed, one loop per brow.
BROWS = ((70, 63, 105, 66, 107, 55, 65, 52, 53, 46), (300, 293, 334, 296, 336, 285, 295, 282,
         283, 276))  # fmt: skip
#: Eye contours (to leave them out of the skin mask).
EYES = ((33, 160, 158, 133, 153, 144), (362, 385, 387, 263, 373, 380))
#: Cheek points where skin is sampled (below the eyes, beside the nose, above any beard).
CHEEKS = (50, 280, 101, 330, 116, 345)
#: Nose outline (alae and tip) left out of the skin mask.
NOSE = (48, 64, 98, 97, 2, 326, 327, 294, 278, 4)
MOUTH_CORNERS = (61, 291)
UPPER_LIP_TOP = 0
LOWER_LIP_BOTTOM = 17
CHIN = 152


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of float RGB (any scale)."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


@dataclass
class RealFace:
    """Measurements of one located face in its photo (see module docstring)."""

    face: Face
    A: np.ndarray  # 2x3: face frame (u, v) -> image pixels
    d: float  # eye distance in pixels
    lm: np.ndarray  # 478x2 landmarks in the face frame
    skin: np.ndarray  # RGB 0..1, cheek median
    brow: np.ndarray  # RGB 0..1, darkest brow pixels (hair mixed with skin)
    brow_contrast: float  # brow luminance / skin luminance (low: dark, well-resolved brows)
    light: np.ndarray  # HxW float32 lighting over the ROI (1 = median skin)
    roi: tuple[int, int, int, int]  # x0, y0, x1, y1 (image pixels) of ``light``

    def uv(self, idx: int | tuple[int, ...]) -> np.ndarray:
        """Landmark(s) in the face frame."""
        return self.lm[list(idx) if isinstance(idx, tuple) else idx]

    @property
    def oval(self) -> np.ndarray:
        return self.lm[list(FACE_OVAL)]

    @property
    def lips(self) -> np.ndarray:
        return self.lm[list(LIPS_OUTER)]

    @property
    def subnasale_v(self) -> float:
        return float(self.lm[SUBNASALE, 1])

    @property
    def mouth_half_width(self) -> float:
        a, b = self.lm[list(MOUTH_CORNERS)]
        return float(abs(b[0] - a[0]) / 2)

    @property
    def mouth_centre(self) -> np.ndarray:
        return self.lm[list(MOUTH_CORNERS)].mean(axis=0)

    @property
    def chin_v(self) -> float:
        return float(self.lm[CHIN, 1])

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        """Face-frame points (N, 2) -> image pixels."""
        return np.asarray(uv, np.float64) @ self.A[:, :2].T + self.A[:, 2]


def frame_transform(face: Face) -> tuple[np.ndarray, float]:
    """``(A, d)``: the 2x3 face frame -> image pixel map and the eye distance."""
    o, ex, ey, d = face_frame(face)
    A = np.array([[d * ex[0], d * ey[0], o[0]], [d * ex[1], d * ey[1], o[1]]], np.float64)
    return A, float(d)


def roi_box(rf_A: np.ndarray, shape: tuple[int, ...], oval_uv: np.ndarray) -> tuple[int, ...]:
    """Image box around the lower face (the face oval below the eyes, plus a margin)."""
    pts = oval_uv[oval_uv[:, 1] > -0.3]
    pts = np.concatenate([pts, pts * 1.12 - pts.mean(0) * 0.12], 0)
    px = pts @ rf_A[:, :2].T + rf_A[:, 2]
    h, w = shape[:2]
    x0, y0 = np.floor(px.min(0)).astype(int) - 2
    x1, y1 = np.ceil(px.max(0)).astype(int) + 2
    return max(0, int(x0)), max(0, int(y0)), min(w, int(x1)), min(h, int(y1))


def _poly_mask(shape: tuple[int, int], polys: list[np.ndarray]) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    for p in polys:
        cv2.fillPoly(m, [np.round(p * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return m.astype(bool)


def _smooth(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``img``; a wide one (sigma > 4 px) on a grid reduced to sigma 4 px
    (area-averaged down, linear back up: the result is smooth at that scale anyway)."""
    f = sigma / 4.0
    h, w = img.shape[:2]
    if f <= 1.0 or min(h, w) / f < 8:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    small = cv2.resize(img, (max(1, round(w / f)), max(1, round(h / f))),
                       interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), sigma * small.shape[1] / w)
    return cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)


def _dark_colour(pixels: np.ndarray, fraction: float = 0.3) -> np.ndarray:
    """Median colour of the darkest ``fraction`` of ``pixels`` (N, 3)."""
    lum = luminance(pixels)
    k = max(1, int(len(lum) * fraction))
    idx = np.argsort(lum)[:k]
    return np.median(pixels[idx], axis=0)


def measure(image: np.ndarray, face: Face) -> RealFace:
    """Measure ``face`` (with mesh landmarks) in the RGB uint8 ``image``."""
    if face.landmarks is None or len(face.landmarks) <= max(FACE_OVAL):
        raise ValueError("composite beards need FaceMesh landmarks (478 points)")
    A, d = frame_transform(face)
    Ainv = cv2.invertAffineTransform(A)
    lm_px = np.asarray(face.landmarks, np.float64)
    lm = lm_px @ Ainv[:, :2].T + Ainv[:, 2]
    h, w = image.shape[:2]

    def img(ys: slice, xs: slice) -> np.ndarray:  # only the regions used, not the whole photo
        return image[ys, xs].astype(np.float32) / 255.0

    # skin: discs on both cheeks
    r = max(2.0, 0.08 * d)
    samples = []
    for i in CHEEKS:
        x, y = lm_px[i]
        x0, x1 = int(max(0, x - r)), int(min(w, x + r + 1))
        y0, y1 = int(max(0, y - r)), int(min(h, y + r + 1))
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        samples.append(img(slice(y0, y1), slice(x0, x1))[(xx - x) ** 2 + (yy - y) ** 2 <= r * r])
    if not samples:  # both cheeks off the photo: the face's own box
        fx0, fy0 = np.clip(np.floor(lm_px.min(0)).astype(int), 0, [w - 1, h - 1])
        fx1, fy1 = np.clip(np.ceil(lm_px.max(0)).astype(int) + 1, [fx0 + 1, fy0 + 1], [w, h])
        samples.append(img(slice(fy0, fy1), slice(fx0, fx1)).reshape(-1, 3))
    skin_px = np.concatenate(samples)
    skin = np.median(skin_px, axis=0)
    # brows (rasterised in their own box)
    bp = lm_px[list(BROWS[0] + BROWS[1])]
    bx0, by0 = np.clip(np.floor(bp.min(0)).astype(int), 0, [w - 1, h - 1])
    bx1, by1 = np.clip(np.ceil(bp.max(0)).astype(int) + 1, [bx0 + 1, by0 + 1], [w, h])
    bm = _poly_mask((by1 - by0, bx1 - bx0), [lm_px[list(b)] - [bx0, by0] for b in BROWS])
    brow_px = img(slice(by0, by1), slice(bx0, bx1))[bm]
    brow = _dark_colour(brow_px) if len(brow_px) >= 6 else skin * 0.5
    contrast = float(luminance(brow) / max(float(luminance(skin)), 1e-3))
    # lighting over the lower-face ROI
    box = roi_box(A, image.shape, lm[list(FACE_OVAL)])
    x0, y0, x1, y1 = box
    sub = img(slice(y0, y1), slice(x0, x1))
    off = np.array([x0, y0], np.float64)
    oval = _poly_mask(sub.shape[:2], [lm_px[list(FACE_OVAL)] - off])
    holes = _poly_mask(
        sub.shape[:2],
        [lm_px[list(LIPS_OUTER)] - off, lm_px[list(NOSE)] - off]
        + [lm_px[list(b)] - off for b in BROWS + EYES],
    )
    holes = cv2.dilate(holes.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    skin_m = (oval & ~holes).astype(np.float32)
    lum = luminance(sub)
    sigma = max(1.0, 0.12 * d)
    num, den = _smooth(lum * skin_m, sigma), _smooth(skin_m, sigma)
    ref = float(np.median(lum[skin_m > 0])) if skin_m.any() else float(luminance(skin))
    light = np.where(den > 1e-3, num / np.maximum(den, 1e-3), ref) / max(ref, 1e-3)
    light = np.clip(light, 0.3, 1.6).astype(np.float32)
    return RealFace(face, A, d, lm, skin.astype(np.float32), brow.astype(np.float32), contrast,
                    light, box)  # fmt: skip
