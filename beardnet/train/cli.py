"""`beardnet train --config FILE [--set section.key=value ...]`: the Ray Train training job.

Config sections: ``data`` (crop set URI, categories, acquisition ``ratio``), ``model``,
``loss`` (``area_weighting`` ...), ``train`` (``per_batch`` sampling ratio, ``num_batches``,
``epochs``/``max_steps``, ``lr``, ``schedule``, ``ema_decay``, ``checkpoint_every``,
``resume_from``), ``scaling`` (``num_workers``, ``cpus_per_worker``, ``use_gpu``,
``max_failures``), ``run`` (``storage``, ``name``), ``s3``. See ``jobs/configs/train_*.toml``.
Starting a run whose ``run.storage``/``run.name`` already holds checkpoints continues it.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `beardnet train` (besides --config/--set)."""
    from beardnet.config import add_config_arguments

    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the config and the data (acquisition, sampler), then stop",
    )
    parser.add_argument(
        "--progress",
        choices=["auto", "on", "off"],
        default=None,
        help="progress lines (default: run.progress, auto = only in a terminal)",
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the training job; prints where the model went. Exit 1 when training failed."""
    from beardnet.config import config_from_args
    from beardnet.train.config import TrainConfig
    from beardnet.train.job import check_data, progress_enabled, run_training

    cfg = config_from_args(TrainConfig, args)
    s3 = cfg.s3.settings()
    if args.dry_run:
        report = check_data(cfg, s3)
        print(
            json.dumps(
                {
                    "run": cfg.run_uri(),
                    "steps": cfg.train.total_steps(cfg.scaling.num_workers),
                    "batch": cfg.batch_counts(),
                    "data": report,
                },
                indent=2,
            )
        )
        return 0
    progress = progress_enabled(args.progress or cfg.run.progress)
    res = run_training(cfg, s3, progress=progress)
    shown = {k: v for k, v in res.metrics.items() if not k.startswith("val/")}
    print(json.dumps({"run": res.run_uri, "seconds": res.seconds, "metrics": shown}, indent=2))
    if not res.ok:
        print(f"beardnet train: failed: {res.error}")
        return 1
    print(f"model artifact: {res.model_uri}")
    return 0
