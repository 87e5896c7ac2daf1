"""Does the added hair keep its texture at every face size? ``python -m
beardnet.evaluate.detail_scale --model M --ref R PHOTO...``

Each photo is resized so its (first) face is 100, 200, 400, 700 and 1000 px wide (Lanczos),
transformed to every added style through the product's per-image path, and scored with the
real-photo texture metric (:func:`beardnet.evaluate.real_metrics.texture`: std of a difference
of Gaussians, sigma 1 minus 3, over the changed part of the style's zone) as a ratio to ``R``,
the median over the real set's facial-hair zones (printed by ``beardnet eval --real``). The
pass band is the real-photo evaluation's (0.6x-1.8x). An upscaled photo has no fine detail of
its own, so what texture the zone shows is what the transform drew at that size.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

WIDTHS = (100, 200, 400, 700, 1000)
STYLES = ("stubble", "mustache", "goatee", "full_beard")


def detail_by_size(model: Any, photos: list[str], ref_texture: float,
                   widths: tuple[int, ...] = WIDTHS,
                   styles: tuple[str, ...] = STYLES) -> list[dict[str, Any]]:
    """One row per photo x width x style: face width, texture, ratio, coverage, pass."""
    import cv2

    from beardnet.evaluate.real_metrics import TEXTURE_RANGE, changed, texture
    from beardnet.evaluate.real_zones import face_zones
    from beardnet.faces import get_locator
    from beardnet.infer.codec import decode
    from beardnet.infer.transform import TransformOptions, transform_image

    loc = get_locator("mediapipe")
    rows = []
    for path in photos:
        with open(path, "rb") as f:
            base = decode(f.read(), path).image
        faces = loc.locate(base)
        if not faces:
            continue
        w0 = float(faces[0].box[2] - faces[0].box[0])
        for width in widths:
            k = width / w0
            img = cv2.resize(base, (round(base.shape[1] * k), round(base.shape[0] * k)),
                             interpolation=cv2.INTER_LANCZOS4 if k > 1 else cv2.INTER_AREA)
            data = _png(img)
            found = loc.locate(img)
            if not found:
                continue
            face = max(found, key=lambda x: x.size)
            zones = face_zones(face, img.shape)
            for style in styles:
                out, _ = transform_image(data, f"{path}@{width}", model,
                                         TransformOptions(max_pixels=10**9), style=style)
                after = decode(out, "x.png").image
                zone = zones.style_zone(style)
                ch = changed(img, after) & zone
                t = texture(after, ch)
                ratio = None if t is None else t / ref_texture
                lo, hi = TEXTURE_RANGE
                rows.append({"photo": path.rsplit("/", 1)[-1], "face_px": round(face.size),
                             "style": style, "texture_ratio": ratio,
                             "coverage": float(ch.sum() / max(1, zone.sum())),
                             "passed": ratio is not None and lo <= ratio <= hi})
    return rows


def _png(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", img[:, :, ::-1])
    if not ok:
        raise ValueError("could not encode")
    return buf.tobytes()


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per target face width and style, texture ratio (median) and pass count."""
    widths = sorted({r["face_px"] // 50 * 50 for r in rows})
    lines = ["| face width (px) | " + " | ".join(STYLES) + " |",
             "|---|" + "---|" * len(STYLES)]
    for w in widths:
        cells = []
        for s in STYLES:
            sel = [r for r in rows if r["style"] == s and r["face_px"] // 50 * 50 == w]
            vals = [r["texture_ratio"] for r in sel if r["texture_ratio"] is not None]
            ok = sum(r["passed"] for r in sel)
            cells.append(f"{np.median(vals):.2f}x ({ok}/{len(sel)})" if vals else "-")
        lines.append(f"| ~{w} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: print the table and write the rows as JSON."""
    from beardnet.model import load

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("photos", nargs="+")
    p.add_argument("--model", default=None)
    p.add_argument("--ref", type=float, required=True, help="texture reference (eval --real)")
    p.add_argument("--out", default=None, help="JSON file for the rows")
    a = p.parse_args(argv)
    rows = detail_by_size(load(a.model), a.photos, a.ref)
    print(table(rows))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
