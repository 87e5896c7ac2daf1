"""`beardnet eval`: per-style metrics and a before/after contact sheet for a model artifact.

    beardnet eval [--model URI] --data URI --out DIR [--split test|val|train|all]

Without ``--model`` the shipped model (``beardnet/models/default/``) is scored. ``--data`` is a
synthetic crop set's folder or its ``manifest.parquet`` (local or ``s3://``). Writes
``metrics.json`` (``per_style: {style: {style_accuracy, beard_psnr, beard_l1, outside_psnr}}``,
means, the copy-the-input reference and the classifier's accuracy on the true targets),
``metrics.md`` and ``contact_sheet.png`` (rows: inputs; columns: the input, then each target).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `beardnet eval`."""
    from beardnet.config import add_config_arguments

    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("--model", default=None, help="model artifact folder (default: shipped)")
    parser.add_argument("--data", required=True, help="crop set folder or manifest.parquet URI")
    parser.add_argument("--out", required=True, help="output folder (local or s3://)")
    parser.add_argument(
        "--split",
        default="test",
        choices=["test", "val", "train", "all"],
        help="rows to score (default: the held-out test split)",
    )
    parser.add_argument(
        "--max-identities",
        type=int,
        default=60,
        help="identities scored (first in sorted order; 0 = all); each gives 20 transformations",
    )
    parser.add_argument(
        "--classifier", default=None, help="style classifier folder (default: shipped)"
    )
    parser.add_argument(
        "--margin",
        type=int,
        default=2,
        help="pixels around the beard region left out of the outside-region PSNR",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 unless the quality bars hold")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the report, print the table; returns the exit code."""
    import torch

    from beardnet.config import S3Section, load_config
    from beardnet.evaluate.classifier import load_classifier
    from beardnet.evaluate.metrics import markdown_table
    from beardnet.evaluate.runner import evaluate_model, quality_bars, write_report

    if args.threads:
        torch.set_num_threads(args.threads)
    s3 = load_config(
        S3Section, None, [s.removeprefix("s3.") for s in args.set if s.startswith("s3.")]
    ).settings()
    clf = load_classifier(args.classifier)
    metrics, sheet = evaluate_model(
        args.model, args.data, args.split, args.max_identities or None, clf, args.margin, s3=s3
    )
    bars = quality_bars(metrics["per_style"])
    metrics["quality_bars"] = bars
    paths = write_report(metrics, sheet, args.out, s3=s3)
    print(
        markdown_table(
            metrics["per_style"],
            f"model {metrics['model']} ({metrics['pairs']} pairs, {args.split})",
        )
    )
    print("quality bars:", json.dumps(bars))
    print(f"metrics: {paths['metrics']}\ncontact sheet: {paths['sheet']}")
    return 0 if (not args.check or all(bars.values())) else 1
