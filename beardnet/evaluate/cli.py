"""`beardnet eval`: per-style metrics and a before/after contact sheet for a model artifact.

    beardnet eval [--model URI] --data URI --out DIR [--split test|val|train|all]
    beardnet eval [--model URI] --real URI [--labels URI] [--styles a,b] --out DIR

With ``--real`` the model is scored on labelled real photos (see
``beardnet.evaluate.real_runner``): a folder or prefix of photos with a labels file
(``labels.csv``/``labels.parquet`` inside it, or ``--labels``); ``--split`` then picks the
labels' ``eval`` (default), ``train`` or ``all`` rows.

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
    parser.add_argument("--data", default=None, help="crop set folder or manifest.parquet URI")
    parser.add_argument(
        "--real", default=None, help="real-photo set folder or prefix (photos + labels file)"
    )
    parser.add_argument("--labels", default=None, help="labels CSV/Parquet for --real")
    parser.add_argument(
        "--styles", default=None, help="comma-separated styles for --real (default: all five)"
    )
    parser.add_argument(
        "--max-photos", type=int, default=0, help="--real: score only the first N photos"
    )
    parser.add_argument("--out", required=True, help="output folder (local or s3://)")
    parser.add_argument(
        "--split",
        default=None,
        choices=["test", "val", "train", "all", "eval"],
        help="rows to score (default: the held-out test split; --real: the eval split)",
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
    if args.real:
        return run_real(args, s3)
    if not args.data:
        raise SystemExit("beardnet eval: give --data (synthetic crop set) or --real (real photos)")
    args.split = args.split or "test"
    if args.split == "eval":
        raise SystemExit("beardnet eval: --split eval is for --real; use test, val, train or all")
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


def run_real(args: argparse.Namespace, s3) -> int:
    """`beardnet eval --real`: score, write the report and sheets, print the table."""
    from beardnet.evaluate.real_runner import evaluate_real, real_table, write_real_report

    split = args.split or "eval"
    if split not in ("eval", "train", "all"):
        raise SystemExit(f"beardnet eval --real: --split {split} is not one of eval, train, all")
    styles = tuple(s.strip() for s in args.styles.split(",") if s.strip()) if args.styles else None
    report, sheets = evaluate_real(
        args.model,
        args.real,
        labels=args.labels,
        styles=styles,
        split=split,
        s3=s3,
        max_photos=args.max_photos or None,
        log=print,
    )
    paths = write_real_report(report, sheets, args.out, s3=s3)
    print(real_table(report))
    print(
        f"texture reference: {report['texture_reference']} ({report['texture_reference_faces']}"
        " facial-hair zones; bare skin of clean faces: "
        f"{report['texture_bare_skin_median']})"
    )
    if report["unscored"] or report["skipped"]:
        print(
            f"unscored faces: {len(report['unscored'])}, skipped photos: {len(report['skipped'])}"
        )
    for k, v in paths.items():
        print(f"{k}: {v}")
    if args.check:
        rates = [c["rate"] for row in report["summary"].values() for c in row.values() if c["n"]]
        return 0 if all(r >= 0.9 for r in rates) else 1
    return 0
