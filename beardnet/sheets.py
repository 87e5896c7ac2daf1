"""Contact sheets: a grid of RGB images with optional row/column labels, saved as PNG."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _fit(img: np.ndarray, cell: int) -> np.ndarray:
    import cv2

    a = np.asarray(img)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float32) * (255.0 if a.max() <= 1.0 else 1.0)), 0, 255)
        a = a.astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.shape[2] == 4:
        a = a[..., :3]
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    h, w = a.shape[:2]
    k = cell / max(h, w)
    nh, nw = max(1, round(h * k)), max(1, round(w * k))
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_NEAREST
    a = cv2.resize(a, (nw, nh), interpolation=interp)
    out = np.full((cell, cell, 3), 255, np.uint8)
    y0, x0 = (cell - nh) // 2, (cell - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = a
    return out


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.4) -> None:
    import cv2

    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def contact_sheet(
    rows: Sequence[Sequence[np.ndarray | None]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cell: int = 128,
    pad: int = 2,
) -> np.ndarray:
    """Lay images out in a grid (RGB uint8 result).

    Each image (RGB/grey, uint8, float in [0, 1] or bool) is scaled to fit a ``cell`` square;
    ``None`` leaves a blank cell. Labels are drawn in a left margin / top band.
    """
    n_rows = len(rows)
    n_cols = max((len(r) for r in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError("contact_sheet: no images")
    left = 0
    if row_labels:
        left = max(8 * max(len(s) for s in row_labels) // 1, 20) + 6
    top = 18 if col_labels else 0
    H = top + n_rows * (cell + pad) + pad
    W = left + n_cols * (cell + pad) + pad
    sheet = np.full((H, W, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        y = top + pad + i * (cell + pad)
        for j, img in enumerate(row):
            if img is None:
                continue
            x = left + pad + j * (cell + pad)
            sheet[y : y + cell, x : x + cell] = _fit(img, cell)
        if row_labels and i < len(row_labels):
            _text(sheet, str(row_labels[i]), 3, y + cell // 2 + 4)
    if col_labels:
        for j, lab in enumerate(col_labels):
            _text(sheet, str(lab), left + pad + j * (cell + pad) + 3, 13)
    return sheet


def encode_png(img: np.ndarray) -> bytes:
    """RGB (or grey) uint8 array -> PNG bytes."""
    import cv2

    a = np.asarray(img)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 3:
        a = a[..., ::-1]  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(a))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def save_png(img: np.ndarray, path_or_uri: str) -> str:
    """Write ``img`` as PNG to a local path or any storage URI; returns where it went."""
    data = encode_png(img)
    if "://" in str(path_or_uri):
        from beardnet import storage

        storage.write_bytes(str(path_or_uri), data)
    else:
        import os

        d = os.path.dirname(os.path.abspath(path_or_uri))
        os.makedirs(d, exist_ok=True)
        with open(path_or_uri, "wb") as f:
            f.write(data)
    return str(path_or_uri)
