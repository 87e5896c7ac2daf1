"""Per-identity scoring of an ablation arm, and the statistics that compare arms.

:func:`score_identities` runs a model on every evaluation identity for every ``source ->
target`` pair (``s != t``) and keeps, per identity and target style, the beard-region PSNR and
L1 (pooled over the identity's sources) and the share of outputs the style classifier names
``t``. :func:`compare` pairs two arms identity by identity (values averaged over seeds) and
reports the mean difference and a two-sided Wilcoxon signed-rank p-value; :func:`table`
writes the Markdown table, small beards first (stubble and mustache are what claim 2c is for).
"""

from __future__ import annotations

from typing import Any

import numpy as np

SMALL_FIRST = ("stubble", "mustache", "goatee", "full_beard", "none")
METRICS = ("beard_psnr", "beard_l1", "style_acc")


def score_identities(net: Any, ids: Any, classifier: Any, margin: int = 2) -> dict[str, Any]:
    """``{metric: float array [identities, styles]}`` for ``net`` on an ``IdentitySet``."""
    from beardnet.evaluate.metrics import psnr_from_mse, regions
    from beardnet.evaluate.runner import run_model

    n, c = ids.images.shape[:2]
    sse = np.zeros((n, c))
    sab = np.zeros((n, c))
    cnt = np.zeros((n, c))
    hit = np.zeros((n, c))
    for t in range(c):
        tgt = ids.images[:, t].astype(np.float64) / 255.0
        for s in range(c):
            if s == t:
                continue
            out = run_model(net, ids.images[:, s], t)
            pred = classifier.predict(out)
            beard, _ = regions(ids.beard[:, s], ids.beard[:, t], margin)
            diff = out.astype(np.float64) / 255.0 - tgt
            m = beard[..., None]
            sse[:, t] += ((diff**2) * m).sum(axis=(1, 2, 3))
            sab[:, t] += (np.abs(diff) * m).sum(axis=(1, 2, 3))
            cnt[:, t] += m.sum(axis=(1, 2, 3)) * 3
            hit[:, t] += pred == t
    cnt = np.maximum(cnt, 1)
    psnr = np.vectorize(psnr_from_mse)(sse / cnt)
    return {"beard_psnr": psnr, "beard_l1": sab / cnt, "style_acc": hit / (c - 1)}


def wilcoxon_p(diff: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (None if all zero)."""
    d = np.asarray(diff, dtype=np.float64)
    d = d[np.abs(d) > 1e-12]
    if d.size < 2:
        return None
    from scipy.stats import wilcoxon

    return float(wilcoxon(d).pvalue)


def compare(a: dict[str, Any], b: dict[str, Any], metric: str, style: int) -> dict[str, Any]:
    """Arm ``b`` minus arm ``a`` on ``metric`` for target ``style``: per-identity values are
    averaged over each arm's seeds, then paired by identity."""
    va = np.mean([s[metric][:, style] for s in a["seeds"]], axis=0)
    vb = np.mean([s[metric][:, style] for s in b["seeds"]], axis=0)
    d = vb - va
    return {"mean_diff": float(d.mean()), "p": wilcoxon_p(d), "n": int(d.size)}


def seed_summary(arm: dict[str, Any], metric: str, style: int) -> tuple[float, float]:
    """Mean and standard deviation over seeds of the arm's per-seed mean."""
    per_seed = [float(np.mean(s[metric][:, style])) for s in arm["seeds"]]
    return float(np.mean(per_seed)), float(np.std(per_seed, ddof=1) if len(per_seed) > 1 else 0)


CONTRASTS = (
    ("(a) ratio - shuffle", "shuffle", "ratio"),
    ("(b) ratio+area - ratio", "ratio", "ratio_area"),
    ("(c) area - shuffle", "shuffle", "area"),
)


def table(arms: dict[str, dict[str, Any]], styles: tuple[str, ...], source: dict) -> str:
    """Markdown: per style (small beards first) each arm's mean +- std over seeds, and the
    contrasts with their paired Wilcoxon p over evaluation identities."""
    total = max(1, sum(source.values()))
    names = list(arms)
    n_seeds = {len(a["seeds"]) for a in arms.values()}
    lines = [
        f"Skewed source (target rows per style): {source}; seeds per arm: {sorted(n_seeds)}",
        "",
    ]
    heads = {"beard_psnr": "beard PSNR (dB)", "beard_l1": "beard L1", "style_acc": "style acc."}
    fmts = {"beard_psnr": ".2f", "beard_l1": ".4f", "style_acc": ".3f"}
    for metric in METRICS:
        cons = [c for c in CONTRASTS if c[1] in arms and c[2] in arms]
        lines.append(f"**{heads[metric]}**, mean +- std over seeds")
        lines.append("")
        lines.append(
            "| style | share | " + " | ".join(names + [f"{c[0]} (p)" for c in cons]) + " |"
        )
        lines.append("|---|---:|" + "---:|" * (len(names) + len(cons)))
        order = [s for s in SMALL_FIRST if s in styles] + [s for s in styles if s not in SMALL_FIRST]
        for sname in order:
            si = styles.index(sname)
            row = [sname, f"{source.get(sname, 0) / total:.0%}"]
            for n in names:
                m, sd = seed_summary(arms[n], metric, si)
                row.append(f"{m:{fmts[metric]}} +- {sd:{fmts[metric]}}")
            for _, a, b in cons:
                c = compare(arms[a], arms[b], metric, si)
                p = "-" if c["p"] is None else f"{c['p']:.2g}"
                row.append(f"{c['mean_diff']:+{fmts[metric]}} ({p})")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)
