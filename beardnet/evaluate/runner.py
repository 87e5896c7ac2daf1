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
from typing import Any

import numpy as np

from beardnet.evaluate.identities import (  # noqa: F401 (re-exported)
    IdentitySet,
    load_identities,
    manifest_uri_of,
)
from beardnet.evaluate.metrics import StyleMetrics, markdown_table, summarize
from beardnet.storage import S3Settings


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
