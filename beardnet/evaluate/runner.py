"""Score a model artifact on a synthetic crop set (the library side of `beardnet eval`).

Pairs: for every identity of the chosen split and every target style ``t``, each of the
identity's other categories ``s != t`` is a source (``s -> t`` transformations only; a no-op
edit says nothing about the model). The output is compared with the ground-truth render of the
same identity in style ``t`` (:mod:`beardnet.evaluate.metrics`), and the style classifier
(:mod:`beardnet.evaluate.classifier`) names the output's style.

Two reference rows are reported next to the model's: ``copy_input`` (the figures of returning the
source unchanged) and ``classifier_on_targets`` (the classifier's accuracy on the ground-truth
target renders, which bounds what style accuracy can mean).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from beardnet.evaluate.metrics import StyleMetrics, markdown_table, summarize
from beardnet.storage import S3Settings

MANIFEST_NAME = "manifest.parquet"


def manifest_uri_of(data: str) -> str:
    """``data`` is a crop set folder or its manifest file; returns the manifest URI."""
    from beardnet import storage

    if data.endswith(".parquet"):
        return data
    return storage.join(data, MANIFEST_NAME)


def _decode(data: bytes, grey: bool = False) -> np.ndarray:
    import cv2

    arr = cv2.imdecode(
        np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    )
    if arr is None:
        raise ValueError("cannot decode image")
    return arr if grey else arr[..., ::-1].copy()


@dataclass
class IdentitySet:
    """Every category of some identities: images uint8 [N,C,H,W,3], beard masks bool [N,C,H,W]."""

    identities: list[str]
    categories: tuple[str, ...]
    images: np.ndarray
    beard: np.ndarray


def load_identities(
    data: str,
    split: str = "test",
    max_identities: int | None = None,
    categories: tuple[str, ...] | None = None,
    size: int | None = None,
    s3: S3Settings | None = None,
    threads: int = 8,
) -> IdentitySet:
    """Load the identities of ``split`` (``"all"``: every row) that have every category.

    ``max_identities`` keeps the first ones in sorted order (deterministic). Crops are resized
    to ``size`` when given and different.
    """
    import cv2

    from beardnet import storage
    from beardnet.categories import DEFAULT, Categories
    from beardnet.manifest import read_manifest, resolve_uri

    cats = Categories(tuple(categories)) if categories else DEFAULT
    muri = manifest_uri_of(data)
    t = read_manifest(muri, cats, s3=s3).to_pandas()
    if split != "all":
        t = t[t["split"] == split]
    if t.empty:
        raise ValueError(f"{muri}: no rows in split {split!r}")
    if t["beard_mask_uri"].isna().any():
        raise ValueError(f"{muri}: evaluation needs beard masks (beard_mask_uri) on every row")
    full = t.groupby("identity")["category"].nunique()
    ids = sorted(full[full == len(cats)].index.tolist())
    if not ids:
        raise ValueError(f"{muri}: no identity of split {split!r} has all {len(cats)} categories")
    if max_identities:
        ids = ids[:max_identities]
    t = t[t["identity"].isin(ids)]
    jobs = []
    pos = {i: k for k, i in enumerate(ids)}
    for row in t.itertuples(index=False):
        jobs.append(
            (
                pos[row.identity],
                cats.index(row.category),
                resolve_uri(muri, row.uri),
                resolve_uri(muri, row.beard_mask_uri),
            )
        )

    def fetch(job):
        i, c, u, m = job
        img = _decode(storage.read_bytes(u, s3=s3))
        mask = _decode(storage.read_bytes(m, s3=s3), grey=True)
        if size and img.shape[0] != size:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
        return i, c, img, mask > 127

    with ThreadPoolExecutor(max(1, threads)) as ex:
        got = list(ex.map(fetch, jobs))
    h, w = got[0][2].shape[:2]
    images = np.zeros((len(ids), len(cats), h, w, 3), np.uint8)
    beard = np.zeros((len(ids), len(cats), h, w), bool)
    for i, c, img, mask in got:
        images[i, c] = img
        beard[i, c] = mask
    return IdentitySet(ids, cats.names, images, beard)


def run_model(net: Any, images: np.ndarray, style: int, batch_size: int = 32) -> np.ndarray:
    """uint8 [N,H,W,3] -> model output uint8 [N,H,W,3] for target ``style``."""
    import torch

    outs = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(images[i : i + batch_size]).permute(0, 3, 1, 2).float() / 255.0
            st = torch.full((len(x),), int(style), dtype=torch.long)
            y, _ = net(x, st)
            outs.append((y.clamp(0, 1) * 255.0).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(outs)


def evaluate_model(
    model: Any,
    data: str,
    split: str = "test",
    max_identities: int | None = 60,
    classifier: Any = None,
    margin: int = 2,
    sheet_rows: int = 8,
    s3: S3Settings | None = None,
    batch_size: int = 32,
    identity_set: IdentitySet | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Score ``model`` (a :class:`beardnet.model.LoadedModel`, an artifact URI, or None for the
    shipped model). Returns ``(metrics dict, contact sheet RGB array)``."""
    from beardnet.evaluate.classifier import load_classifier
    from beardnet.model import load
    from beardnet.sheets import contact_sheet

    t0 = time.time()
    lm = model if hasattr(model, "net") else load(model, s3=s3)
    clf = classifier if classifier is not None else load_classifier()
    ds = identity_set or load_identities(
        data, split, max_identities, tuple(lm.categories.names), lm.input_size, s3=s3
    )
    cats = ds.categories
    n, c = ds.images.shape[:2]
    ours = StyleMetrics(cats, margin)
    copy = StyleMetrics(cats, margin)
    on_targets = np.zeros(c)
    sheet_src = [k % c for k in range(min(sheet_rows, n))]
    sheet_out: dict[tuple[int, int], np.ndarray] = {}
    for t in range(c):
        tgt_pred = clf.predict(ds.images[:, t])
        on_targets[t] = float((tgt_pred == t).mean())
        for s in range(c):
            if s == t:
                continue
            src = ds.images[:, s]
            out = run_model(lm.net, src, t, batch_size)
            tv = np.full(n, t)
            ours.add(tv, out, ds.images[:, t], ds.beard[:, s], ds.beard[:, t], clf.predict(out))
            copy.add(tv, src, ds.images[:, t], ds.beard[:, s], ds.beard[:, t], clf.predict(src))
            for row, ss in enumerate(sheet_src):
                if ss == s:
                    sheet_out[(row, t)] = out[row]
    per_style = ours.result()
    rows, labels = [], []
    for row, s in enumerate(sheet_src):
        rows.append(
            [ds.images[row, s]] + [sheet_out.get((row, t), ds.images[row, s]) for t in range(c)]
        )
        labels.append(f"{s}:{cats[s][:4]}")
    sheet = contact_sheet(rows, row_labels=labels, col_labels=["input"] + [f"-> {x}" for x in cats])
    metrics = {
        "model": lm.meta.get("model_id") or lm.model_id,
        "model_uri": model if isinstance(model, str) else None,
        "data": data,
        "split": split,
        "identities": n,
        "pairs": n * c * (c - 1),
        "margin_px": margin,
        "per_style": per_style,
        "mean": summarize(per_style),
        "copy_input": copy.result(),
        "classifier_on_targets": {cats[i]: float(on_targets[i]) for i in range(c)},
        "classifier": clf.meta.get("test_accuracy"),
        "seconds": round(time.time() - t0, 1),
    }
    return metrics, sheet


def quality_bars(per_style: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """The shipped model's bars: style accuracy >= 90% per style, removal (``none``) beard PSNR
    >= 26 dB, outside PSNR >= 40 dB for every style."""
    acc = all((m["style_accuracy"] or 0) >= 0.90 for m in per_style.values())
    removal = (per_style.get("none", {}).get("beard_psnr") or 0) >= 26.0
    outside = all((m["outside_psnr"] or 0) >= 40.0 for m in per_style.values())
    return {"style_accuracy_90": acc, "removal_psnr_26": removal, "outside_psnr_40": outside}


def write_report(
    metrics: dict[str, Any], sheet: np.ndarray, out: str, s3: S3Settings | None = None
) -> dict[str, str]:
    """Write ``metrics.json``, ``metrics.md`` and ``contact_sheet.png`` under ``out``."""
    from beardnet import storage
    from beardnet.sheets import encode_png

    paths = {
        "metrics": storage.join(out, "metrics.json"),
        "table": storage.join(out, "metrics.md"),
        "sheet": storage.join(out, "contact_sheet.png"),
    }
    storage.write_bytes(paths["metrics"], (json.dumps(metrics, indent=2) + "\n").encode(), s3=s3)
    md = markdown_table(metrics["per_style"], f"model {metrics['model']} on {metrics['split']}")
    md += "\n" + markdown_table(metrics["copy_input"], "reference: copy the input")
    storage.write_bytes(paths["table"], md.encode(), s3=s3)
    storage.write_bytes(paths["sheet"], encode_png(sheet), s3=s3)
    return paths
