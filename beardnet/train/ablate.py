"""`beardnet ablate`: do the patent's knobs help rare and small beards? (issue 3, item 9)

From a balanced synthetic crop set, a **skewed source** is built by subsampling the train rows
by category the way real photo sets are skewed (default ``none 80%, stubble 10%, goatee 5%,
full_beard 3%, mustache 2%``, after CelebA's attributes); validation and test rows are kept.
Then, at the same training budget (steps, batch size, seed, learning rate), three arms train:

- ``shuffle``: the skewed rows as they are, plain shuffled batches, unweighted L1;
- ``ratio``: category-ratio acquisition (claim 2a, ``acquire_ratio``, oversampling the short
  categories up to the same number of rows) + the ratio batch sampler (claim 2b), unweighted;
- ``ratio_area``: the same plus the area-weighted loss (claim 2c).

(a) = ``shuffle`` vs ``ratio``; (b) = ``ratio`` vs ``ratio_area``. Each arm is evaluated on the
held-out test split (:mod:`beardnet.evaluate`), and ``ablation.md`` / ``ablation.json`` hold the
per-style table. Run folders go under ``OUT/runs``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from pydantic import Field

from beardnet.config import S3Section, StrictModel

DEFAULT_SKEW = "none:80,stubble:10,goatee:5,full_beard:3,mustache:2"
ARMS = {
    "shuffle": {"train.shuffle": True, "loss.area_weighting": False},
    "ratio": {"train.shuffle": False, "loss.area_weighting": False},
    "ratio_area": {"train.shuffle": False, "loss.area_weighting": True},
}


class AblateSection(StrictModel):
    """What to compare and on what."""

    data: str = Field("", description="balanced crop set (folder or manifest)")
    out: str = Field("ablation", description="output folder (local or s3://)")
    skew: str = DEFAULT_SKEW
    acquire_ratio: str = "none:1,stubble:1,mustache:1,goatee:1,full_beard:1"
    arms: list[str] = Field(default_factory=lambda: list(ARMS))
    size: int = 64
    steps: int = Field(300, ge=1)
    per_batch: str = "none:4,stubble:4,mustache:4,goatee:4,full_beard:4"
    lr: float = 2e-3
    seed: int = 0
    cpus: int = 2
    eval_identities: int = 40
    model_base: int = 16


class AblateConfig(StrictModel):
    ablate: AblateSection = Field(default_factory=AblateSection)
    s3: S3Section = Field(default_factory=S3Section)


def skewed_manifest(
    data: str, out_uri: str, skew: str, seed: int, s3: Any = None
) -> dict[str, Any]:
    """Write the skewed source manifest (absolute URIs) to ``out_uri``; returns the counts."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from beardnet.categories import DEFAULT
    from beardnet.data.acquire import acquire
    from beardnet.data.paired import manifest_path
    from beardnet.manifest import read_manifest, resolve_uri, write_manifest

    muri = manifest_path(data)
    t = read_manifest(muri, s3=s3)
    for col in ("uri", "beard_mask_uri", "face_mask_uri"):
        vals = [None if v is None else resolve_uri(muri, v) for v in t.column(col).to_pylist()]
        t = t.set_column(t.schema.get_field_index(col), col, pa.array(vals, pa.string()))
    is_train = np.asarray(pc.equal(t.column("split"), "train").to_numpy(zero_copy_only=False))
    train_rows = np.flatnonzero(is_train)
    cats = DEFAULT.indices(t.column("category").to_pylist()).astype(np.int64)
    pick, rep = acquire(cats[train_rows], skew, None, seed)
    keep = np.sort(np.concatenate([train_rows[pick], np.flatnonzero(~is_train)]))
    write_manifest(t.take(pa.array(keep)), out_uri, s3=s3)
    return {"rows": len(pick), "counts": rep.taken, "dropped": rep.dropped}


def run_ablation(cfg: AblateConfig, log=print) -> dict[str, Any]:
    """Build the skewed source, train and evaluate every arm; write the tables."""
    from beardnet import storage
    from beardnet.config import load_config
    from beardnet.evaluate.classifier import load_classifier
    from beardnet.evaluate.metrics import markdown_table
    from beardnet.evaluate.runner import evaluate_model, load_identities, write_report
    from beardnet.model import load
    from beardnet.train.config import TrainConfig
    from beardnet.train.job import run_training

    a = cfg.ablate
    s3 = cfg.s3.settings()
    out = a.out if storage.is_s3(a.out) else storage.local_path(a.out)
    skew_uri = storage.join(out, "skewed", "manifest.parquet")
    source = skewed_manifest(a.data, skew_uri, a.skew, a.seed, s3)
    log(f"[ablate] skewed source: {source['counts']} ({source['rows']} train rows)")
    clf = load_classifier()
    test = load_identities(a.data, "test", a.eval_identities, size=a.size, s3=s3)
    results: dict[str, Any] = {"source": source, "config": a.model_dump(), "arms": {}}
    for arm in a.arms:
        if arm not in ARMS:
            raise ValueError(f"ablate.arms: unknown arm {arm!r}; known: {', '.join(ARMS)}")
        sets = [
            f"data.uri={skew_uri}",
            f"data.size={a.size}",
            "data.val_samples=0",
            f"train.per_batch={a.per_batch}",
            f"train.max_steps={a.steps}",
            f"train.num_batches={max(1, source['rows'] // 20)}",
            "train.epochs=1",
            f"train.lr={a.lr}",
            f"train.seed={a.seed}",
            f"train.checkpoint_every={max(1, a.steps // 4)}",
            "train.warmup_steps=30",
            f"model.base={a.model_base}",
            "scaling.num_workers=1",
            f"scaling.cpus_per_worker={a.cpus}",
            f"run.storage={storage.join(out, 'runs')}",
            f"run.name={arm}",
            "run.progress=off",
        ]
        sets += [f"{k}={str(v).lower()}" for k, v in ARMS[arm].items()]
        if arm != "shuffle":
            sets += [
                f"data.ratio={a.acquire_ratio}",
                f"data.total={source['rows']}",
                "data.allow_oversample=true",
            ]
        tcfg = load_config(TrainConfig, None, sets)
        t0 = time.time()
        log(f"[ablate] arm {arm}: training {a.steps} steps")
        res = run_training(tcfg, s3, progress=False)
        if not res.ok:
            raise RuntimeError(f"ablation arm {arm} failed: {res.error}")
        metrics, sheet = evaluate_model(
            load(res.model_uri, s3=s3), a.data, "test", classifier=clf, identity_set=test
        )
        write_report(metrics, sheet, storage.join(out, arm), s3=s3)
        results["arms"][arm] = {
            "per_style": metrics["per_style"],
            "mean": metrics["mean"],
            "train_seconds": res.seconds,
            "samples_per_s": res.metrics.get("samples_per_s"),
            "acquisition": res.acquisition.get("counts"),
            "wall_s": round(time.time() - t0, 1),
        }
        log(markdown_table(metrics["per_style"], f"arm {arm}"))
    md = ablation_table(results)
    storage.write_bytes(storage.join(out, "ablation.md"), md.encode(), s3=s3)
    storage.write_bytes(
        storage.join(out, "ablation.json"), (json.dumps(results, indent=2) + "\n").encode(), s3=s3
    )
    results["markdown"] = md
    return results


def ablation_table(results: dict[str, Any]) -> str:
    """Per-style Markdown: beard PSNR, style accuracy and outside PSNR of every arm, with the
    differences (a) ratio - shuffle and (b) ratio_area - ratio."""
    arms = results["arms"]
    names = list(arms)
    styles = list(next(iter(arms.values()))["per_style"])
    src = results["source"]["counts"]

    def g(arm: str, s: str, k: str) -> float | None:
        return arms[arm]["per_style"][s].get(k) if arm in arms else None

    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    def d(x: float | None, y: float | None, fmt: str) -> str:
        return "-" if x is None or y is None else format(x - y, "+" + fmt)

    lines = [
        f"Skewed source (train rows per category): {src}",
        "",
        "| target style | share in source | "
        + " | ".join(f"{n} beard PSNR" for n in names)
        + " | (a) ratio-shuffle | (b) area-ratio | "
        + " | ".join(f"{n} style acc." for n in names)
        + " | "
        + " | ".join(f"{n} outside PSNR" for n in names)
        + " |",
        "|---|---:|" + "---:|" * (3 * len(names) + 2),
    ]
    total = sum(src.values()) or 1
    for s in styles:
        row = [s, f"{src.get(s, 0) / total:.0%}"]
        row += [f(g(n, s, "beard_psnr"), ".2f") for n in names]
        row += [
            d(g("ratio", s, "beard_psnr"), g("shuffle", s, "beard_psnr"), ".2f"),
            d(g("ratio_area", s, "beard_psnr"), g("ratio", s, "beard_psnr"), ".2f"),
        ]
        row += [f(g(n, s, "style_accuracy"), ".0%") for n in names]
        row += [f(g(n, s, "outside_psnr"), ".1f") for n in names]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `beardnet ablate`."""
    from beardnet.config import add_config_arguments

    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--data", default=None, help="balanced crop set (overrides ablate.data)")
    parser.add_argument("--out", default=None, help="output folder (overrides ablate.out)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the ablation and print its table."""
    from beardnet.config import load_config
    from beardnet.raysession import init_ray

    sets = list(args.set)
    if args.data:
        sets.append(f"ablate.data={args.data}")
    if args.out:
        sets.append(f"ablate.out={args.out}")
    cfg = load_config(AblateConfig, args.config, sets)
    if not cfg.ablate.data:
        print("beardnet ablate: ablate.data (or --data) is required")
        return 2
    init_ray(s3=cfg.s3.settings())
    res = run_ablation(cfg)
    print(res["markdown"])
    return 0
