"""`beardnet ablate`: do the patent's three knobs help rare and small beards?

Data: a synthetic crop set in which **every identity is rendered in every style** (rendered
into ``OUT/data`` unless ``ablate.data`` names one). Its train identities get one *target* row
each, whose style is drawn so the targets follow ``skew`` (the skew of real photo sets); the
identity's other renders stay in the manifest as sources only (``target = false``). So every
pair's source is another render of the same identity, whatever the arm, and self-pairs happen
only at ``self_pair_share`` (the same in every arm). Evaluation uses the set's test identities,
which no arm (and no shipped model: another render seed) trained on.

Arms, each trained by the real Ray Train job at the same budget (steps, batch size, LR,
schedule) for every seed in ``seeds``:

- ``shuffle``: the skewed targets as they are, plain shuffled batches, unweighted loss;
- ``area``: shuffle + the area-weighted loss (claim 2c alone);
- ``ratio``: category-ratio acquisition (claim 2a) + ratio batches (claim 2b), unweighted;
- ``ratio_area``: 2a + 2b + 2c.

Per arm and seed the per-identity scores are written to ``OUT/results/ARM-sSEED.npz`` (a
finished arm/seed is not trained again, so an interrupted ablation continues); the table
(:mod:`beardnet.train.ablate_stats`) goes to ``OUT/ablation.md`` and ``OUT/ablation.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from pydantic import Field

from beardnet.config import S3Section, StrictModel

DEFAULT_SKEW = "none:76,stubble:11,goatee:6,mustache:4,full_beard:3"
ARMS: dict[str, dict[str, Any]] = {
    "shuffle": {"train.shuffle": True, "loss.area_weighting": False, "ratio": False},
    "area": {"train.shuffle": True, "loss.area_weighting": True, "ratio": False},
    "ratio": {"train.shuffle": False, "loss.area_weighting": False, "ratio": True},
    "ratio_area": {"train.shuffle": False, "loss.area_weighting": True, "ratio": True},
}


class AblateSection(StrictModel):
    """What to compare and on what."""

    data: str = Field("", description="crop set with every style per identity ('' = render)")
    out: str = Field("ablation", description="output folder (local or s3://)")
    identities: int = Field(7500, ge=10, description="identities to render when data is ''")
    data_seed: int = Field(7, description="render seed of the data (shipped model: 0)")
    skew: str = DEFAULT_SKEW
    acquire_ratio: str = "none:1,stubble:1,mustache:1,goatee:1,full_beard:1"
    arms: list[str] = Field(default_factory=lambda: list(ARMS))
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    size: int = 64
    steps: int = Field(2000, ge=1)
    per_batch: str = "none:4,stubble:4,mustache:4,goatee:4,full_beard:4"
    lr: float = 2e-3
    warmup_steps: int = 100
    self_pair_share: float = Field(0.1, ge=0, le=1)
    cpus: int = 2
    eval_identities: int = Field(0, ge=0, description="test identities scored (0 = all)")
    model_base: int = 16
    loss: dict[str, Any] = Field(default_factory=dict, description="extra loss.* settings")


class AblateConfig(StrictModel):
    ablate: AblateSection = Field(default_factory=AblateSection)
    s3: S3Section = Field(default_factory=S3Section)


def skewed_manifest(data: str, out_uri: str, skew: str, seed: int, s3: Any = None) -> dict:
    """Write the skewed manifest (absolute URIs, a ``target`` column) to ``out_uri``: one
    target row per train identity, styles in the ``skew`` ratio (exact counts, largest
    remainder), every other row a source only. Returns the target counts per style."""
    import pyarrow as pa

    from beardnet.categories import DEFAULT, parse_ratio
    from beardnet.data.acquire import largest_remainder
    from beardnet.data.paired import manifest_path
    from beardnet.manifest import read_manifest, resolve_uri, write_manifest

    muri = manifest_path(data)
    t = read_manifest(muri, s3=s3)
    for col in ("uri", "beard_mask_uri", "face_mask_uri"):
        vals = [None if v is None else resolve_uri(muri, v) for v in t.column(col).to_pylist()]
        t = t.set_column(t.schema.get_field_index(col), col, pa.array(vals, pa.string()))
    ident = np.asarray(t.column("identity").to_pylist(), dtype=object)
    split = np.asarray(t.column("split").to_pylist(), dtype=object)
    cats = DEFAULT.indices(t.column("category").to_pylist())
    train_ids = np.unique(ident[split == "train"])
    shares = parse_ratio(skew, DEFAULT, field="ablate.skew")
    counts = largest_remainder(np.array([shares[n] for n in DEFAULT.names]), len(train_ids))
    want = np.repeat(np.arange(len(DEFAULT)), counts)
    rng = np.random.default_rng([seed, 0x5E])
    want = want[rng.permutation(len(want))]
    style_of = dict(zip(train_ids.tolist(), want.tolist(), strict=True))
    target = [
        split[i] == "train" and style_of.get(ident[i]) == int(cats[i]) for i in range(t.num_rows)
    ]
    write_manifest(t.append_column("target", pa.array(target)), out_uri, s3=s3)
    return {n: int(c) for n, c in zip(DEFAULT.names, counts, strict=True)}


def _train_sets(a: AblateSection, arm: str, seed: int, skew_uri: str, rows: int, out: str):
    from beardnet import storage

    spec = ARMS[arm]
    sets = [
        f"data.uri={skew_uri}",
        f"data.size={a.size}",
        "data.val_samples=0",
        f"data.self_pair_share={a.self_pair_share}",
        f"train.per_batch={a.per_batch}",
        f"train.max_steps={a.steps}",
        f"train.num_batches={max(1, rows // 20)}",
        "train.epochs=1",
        f"train.lr={a.lr}",
        f"train.seed={seed}",
        f"train.checkpoint_every={max(1, a.steps // 4)}",
        f"train.warmup_steps={a.warmup_steps}",
        f"model.base={a.model_base}",
        "scaling.num_workers=1",
        f"scaling.cpus_per_worker={a.cpus}",
        f"run.storage={storage.join(out, 'runs')}",
        f"run.name={arm}-s{seed}",
        "run.progress=off",
        f"train.shuffle={str(spec['train.shuffle']).lower()}",
        f"loss.area_weighting={str(spec['loss.area_weighting']).lower()}",
    ]
    sets += [f"loss.{k}={v}" for k, v in a.loss.items()]
    if spec["ratio"]:
        sets += [f"data.ratio={a.acquire_ratio}", f"data.total={rows}", "data.allow_oversample=true"]
    return sets


def run_ablation(cfg: AblateConfig, log=print) -> dict[str, Any]:
    """Render (if needed), build the skewed source, train and score every arm and seed, and
    write the tables. Finished arm/seed results are reused."""
    import io

    from beardnet import storage
    from beardnet.config import load_config
    from beardnet.evaluate.classifier import load_classifier
    from beardnet.evaluate.runner import load_identities
    from beardnet.model import load
    from beardnet.train import ablate_stats
    from beardnet.train.config import TrainConfig
    from beardnet.train.job import run_training

    a = cfg.ablate
    s3 = cfg.s3.settings()
    out = a.out if storage.is_s3(a.out) else storage.local_path(a.out)
    data = a.data
    if not data:
        data = storage.join(out, "data")
        if not storage.exists(storage.join(data, "manifest.parquet"), s3=s3):
            from beardnet.synth.dataset import write_crops_dataset

            log(f"[ablate] rendering {a.identities} identities x 5 styles at {a.size} px")
            write_crops_dataset(data, a.identities, a.size, a.data_seed, s3=s3)
    skew_uri = storage.join(out, "skewed", "manifest.parquet")
    source = skewed_manifest(data, skew_uri, a.skew, a.data_seed, s3)
    rows = sum(source.values())
    log(f"[ablate] skewed targets: {source} ({rows} train identities)")
    clf = load_classifier()
    ids = load_identities(data, "test", a.eval_identities or None, size=a.size, s3=s3)
    log(f"[ablate] scoring on {len(ids.identities)} held-out test identities")
    for arm in a.arms:
        if arm not in ARMS:
            raise ValueError(f"ablate.arms: unknown arm {arm!r}; known: {', '.join(ARMS)}")
    arms: dict[str, dict[str, Any]] = {arm: {"seeds": []} for arm in a.arms}
    timing: dict[str, float] = {}
    # seeds outer, arms inner: a run stopped part way leaves complete seed rounds to compare,
    # and the table is rewritten after every round
    for seed in a.seeds:
        for arm in a.arms:
            res_uri = storage.join(out, "results", f"{arm}-s{seed}.npz")
            if storage.exists(res_uri, s3=s3):
                z = np.load(io.BytesIO(storage.read_bytes(res_uri, s3=s3)))
                arms[arm]["seeds"].append({k: z[k] for k in ablate_stats.METRICS})
                if "wall_s" in z:
                    timing[f"{arm}-s{seed}"] = float(z["wall_s"])
                continue
            tcfg = load_config(TrainConfig, None, _train_sets(a, arm, seed, skew_uri, rows, out))
            t0 = time.time()
            log(f"[ablate] {arm} seed {seed}: {a.steps} steps x {tcfg.batch_size()} samples")
            res = run_training(tcfg, s3, progress=False)
            if not res.ok:
                raise RuntimeError(f"ablation arm {arm} seed {seed} failed: {res.error}")
            scores = ablate_stats.score_identities(load(res.model_uri, s3=s3).net, ids, clf)
            timing[f"{arm}-s{seed}"] = round(time.time() - t0, 1)
            buf = io.BytesIO()
            np.savez(buf, **scores, wall_s=np.float64(timing[f"{arm}-s{seed}"]))
            storage.write_bytes(res_uri, buf.getvalue(), s3=s3)
            arms[arm]["seeds"].append(scores)
            log(f"[ablate] {arm} seed {seed}: {timing[f'{arm}-s{seed}']} s")
        summary = _write_outputs(out, a, arms, ids, source, timing, s3)
    return summary


def _write_outputs(out: str, a: Any, arms: dict[str, dict[str, Any]], ids: Any,
                   source: dict[str, int], timing: dict[str, float], s3: Any) -> dict[str, Any]:
    """Write ``ablation.md`` and ``ablation.json`` from the seeds done so far."""
    from beardnet import storage
    from beardnet.train import ablate_stats

    md = ablate_stats.table(arms, ids.categories, source)
    summary = {
        "config": a.model_dump(),
        "source": source,
        "eval_identities": len(ids.identities),
        "wall_s": timing,
        "arms": {
            arm: {
                sname: {
                    m: ablate_stats.seed_summary(v, m, si) for m in ablate_stats.METRICS
                }
                for si, sname in enumerate(ids.categories)
            }
            for arm, v in arms.items()
        },
    }
    storage.write_bytes(storage.join(out, "ablation.md"), md.encode(), s3=s3)
    storage.write_bytes(
        storage.join(out, "ablation.json"), (json.dumps(summary, indent=2) + "\n").encode(), s3=s3
    )
    return {"markdown": md, **summary}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `beardnet ablate`."""
    from beardnet.config import add_config_arguments

    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--data", default=None, help="crop set (overrides ablate.data)")
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
    init_ray(s3=cfg.s3.settings())
    res = run_ablation(cfg)
    print(res["markdown"])
    return 0
