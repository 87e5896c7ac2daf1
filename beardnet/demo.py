"""``beardnet demo``: the whole pipeline on built-in defaults against a local S3 server.

Starts :class:`~beardnet.s3server.LocalS3` (data kept in ``.demo/s3`` so the results stay
browsable), creates the bucket ``beardnet-demo``, then runs a sequence of steps. Each step is a
function ``step(ctx) -> None`` that records what it made in ``ctx.results``; :data:`STEPS`
lists them in order (later issues append training and transform). At the end it prints the
summary and where everything is, and stops the server.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beardnet.storage import S3Settings, exported_env

#: Public-domain portraits shipped with the package (sources in real_pd/SOURCES.md).
REAL_PD = Path(__file__).resolve().parent / "assets" / "real_pd"

DESCRIPTION = (
    "Start a local S3 server and run the whole pipeline on built-in defaults: render paired "
    "synthetic crops into s3://beardnet-demo/, train briefly with 2 Ray Train workers "
    "(checkpoints in the bucket), evaluate, render photo-like scenes (and a few bad files), "
    "transform them with Ray Data under the same keys, write before/after contact sheets, print "
    "where everything is, and stop the server."
)
DEFAULT_BUCKET = "beardnet-demo"


@dataclass
class DemoContext:
    """What the steps share: options, S3 settings, the bucket, and their results."""

    args: argparse.Namespace
    s3: S3Settings
    bucket_uri: str
    results: dict[str, Any] = field(default_factory=dict)
    local_dir: str = ".demo"
    timings: dict[str, float] = field(default_factory=dict)

    def uri(self, *parts: str) -> str:
        """A URI inside the demo bucket."""
        from beardnet.storage import join

        return join(self.bucket_uri, *parts)


Step = Callable[[DemoContext], None]


def step_synth_crops(ctx: DemoContext) -> None:
    """Render the paired synthetic crops dataset (manifest + images + masks) into the bucket."""
    from beardnet.synth.dataset import write_crops_dataset

    out = ctx.uri("crops")
    summary = write_crops_dataset(
        out, identities=ctx.args.identities, size=ctx.args.size, seed=ctx.args.seed, s3=ctx.s3
    )
    ctx.results["crops"] = {"uri": out, "manifest": f"{out}/manifest.parquet",
                            "summary": summary}


def step_train(ctx: DemoContext) -> None:
    """Train briefly with 2 Ray Train workers on the bucket's crops (checkpoints in the bucket)."""
    from beardnet.train.job import demo_train

    run_uri = ctx.uri("runs", "demo")
    model_uri = demo_train(ctx.results["crops"]["uri"], run_uri, ctx.s3, steps=ctx.args.steps)
    ctx.results["train"] = {"run": run_uri, "model": model_uri}


def step_eval(ctx: DemoContext) -> None:
    """Score the demo model and the shipped model on the held-out split; write contact sheets."""
    from beardnet.evaluate.runner import evaluate_model, write_report

    data = ctx.results["crops"]["uri"]
    evals: dict[str, Any] = {}
    models = {"demo": ctx.results["train"]["model"]}
    if _shipped_model_available():
        models["shipped"] = None
    for name, uri in models.items():
        metrics, sheet = evaluate_model(uri, data, split="test", s3=ctx.s3)
        out = ctx.uri("eval", name)
        paths = write_report(metrics, sheet, out, s3=ctx.s3)
        local = os.path.join(ctx.local_dir, f"eval_{name}_contact_sheet.png")
        _save_local(sheet, local)
        evals[name] = {"model": metrics["model"], "metrics": paths["metrics"],
                       "contact_sheet": local, "mean": metrics["mean"]}
        print(_style_table(name, metrics["per_style"]), flush=True)
    ctx.results["eval"] = evals


def step_synth_scenes(ctx: DemoContext) -> None:
    """Render photo-like scenes (0-3 faces each) and a few bad files into the bucket."""
    from beardnet import storage
    from beardnet.synth.dataset import write_scenes_dataset

    out = ctx.uri("photos")
    summary = write_scenes_dataset(out, count=ctx.args.scenes, seed=ctx.args.seed,
                                   min_size=256, max_size=768, s3=ctx.s3)
    bad = _bad_files()
    for key, data in bad.items():
        storage.write_bytes(storage.join(out, "images", key), data, s3=ctx.s3)
    real = sorted(p.name for p in REAL_PD.iterdir() if p.suffix in (".jpg", ".png"))
    for name in real:  # two public-domain portraits: real faces next to the renderer's
        storage.write_bytes(storage.join(out, "images", "real_pd", name),
                            (REAL_PD / name).read_bytes(), s3=ctx.s3)
    ctx.results["scenes"] = {"uri": out, "images": f"{out}/images/",
                             "count": summary["scenes"], "faces": summary["faces"],
                             "real_photos": [f"real_pd/{n}" for n in real],
                             "bad_files": sorted(bad)}


def step_transform(ctx: DemoContext) -> None:
    """Transform every photo with Ray Data (shipped model, else the demo's) under the same keys."""
    from beardnet.infer.job import demo_transform

    model = None if _shipped_model_available() else ctx.results["train"]["model"]
    out = ctx.uri("transformed")
    summary = demo_transform(ctx.results["scenes"]["images"], out, model, ctx.s3,
                             style=ctx.args.style)
    ctx.results["transform"] = {
        "input": ctx.results["scenes"]["images"], "output": out + "/",
        "model": summary["model"], "style": ctx.args.style, "status": summary["status"],
        "faces": summary["faces"], "images_per_s": summary["images_per_s"],
        "manifest": f"{out}/_beardnet/manifest/", "summary": summary["summary_uri"],
    }


def step_transform_sheet(ctx: DemoContext) -> None:
    """Write a before/after contact sheet of transformed photos (whole photo and largest face)."""
    import io

    import pyarrow.parquet as pq

    from beardnet import storage
    from beardnet.faces import locate
    from beardnet.infer.codec import decode
    from beardnet.sheets import contact_sheet, encode_png
    from beardnet.synth.dataset import read_scene_faces

    photos = ctx.results["scenes"]["uri"]
    out = ctx.results["transform"]["output"].rstrip("/")
    raw = storage.read_bytes(storage.join(photos, "manifest.parquet"), s3=ctx.s3)
    table = pq.read_table(io.BytesIO(raw)).to_pylist()
    rows, labels = [], []
    for rel in ctx.results["scenes"].get("real_photos", []):  # real faces first
        try:
            before = decode(storage.read_bytes(storage.join(photos, "images", rel), s3=ctx.s3),
                            rel).image
            after = decode(storage.read_bytes(storage.join(out, rel), s3=ctx.s3), rel).image
            face = max(locate(before), key=lambda f: f.size)
        except Exception as e:  # noqa: BLE001 - recorded by the job; the sheet goes on
            print(f"   (sheet: skipped {rel}: {e})", flush=True)
            continue
        x0, y0, x1, y1 = (float(v) for v in face.box)
        m = 0.25 * (x1 - x0)
        ys, xs = slice(max(0, int(y0 - m)), int(y1 + m)), slice(max(0, int(x0 - m)), int(x1 + m))
        rows.append([before, after, before[ys, xs], after[ys, xs]])
        labels.append(rel.split("/")[-1][:14])
    for row in table:
        faces = read_scene_faces(row["faces"])
        big = [f for f in faces if (f["box"][2] - f["box"][0]) >= 60]
        if not big:
            continue
        rel = row["uri"].split("images/", 1)[-1]
        try:
            before = decode(storage.read_bytes(storage.join(photos, "images", rel), s3=ctx.s3),
                            rel).image
            after = decode(storage.read_bytes(storage.join(out, rel), s3=ctx.s3), rel).image
        except Exception as e:  # noqa: BLE001 - a photo the job recorded as an error
            print(f"   (sheet: skipped {rel}: {e})", flush=True)
            continue
        f = max(big, key=lambda f: f["box"][2] - f["box"][0])
        x0, y0, x1, y1 = f["box"]
        m = 0.25 * (x1 - x0)
        ys = slice(max(0, int(y0 - m)), int(y1 + m))
        xs = slice(max(0, int(x0 - m)), int(x1 + m))
        rows.append([before, after, before[ys, xs], after[ys, xs]])
        labels.append(f"{rel[:14]}")
        if len(rows) >= ctx.args.sheet_rows + len(ctx.results["scenes"].get("real_photos", [])):
            break
    if not rows:
        ctx.results["transform"]["contact_sheet"] = None
        return
    sheet = contact_sheet(rows, row_labels=labels, cell=192,
                          col_labels=["before", f"after ({ctx.args.style})", "face before",
                                      "face after"])
    local = os.path.join(ctx.local_dir, "transform_contact_sheet.png")
    _save_local(sheet, local)
    storage.write_bytes(storage.join(out, "_beardnet", "contact_sheet.png"), encode_png(sheet),
                        s3=ctx.s3)
    ctx.results["transform"]["contact_sheet"] = local


def _shipped_model_available() -> bool:
    from pathlib import Path

    return (Path(__file__).parent / "models" / "default" / "model.json").is_file()


def _save_local(img: Any, path: str) -> None:
    from beardnet.sheets import save_png

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    save_png(img, path)


def _style_table(name: str, per_style: dict[str, dict[str, Any]]) -> str:
    lines = [f"   {name} model on the test split:",
             "   style        style_acc  beard_psnr  outside_psnr"]
    for style, m in per_style.items():
        acc = m.get("style_accuracy")
        lines.append(
            f"   {style:<12} {'' if acc is None else f'{100 * acc:8.1f}%'} "
            f"{m.get('beard_psnr') or 0:10.2f}  {m.get('outside_psnr') or 0:11.2f}"
        )
    return "\n".join(lines)


def _bad_files() -> dict[str, bytes]:
    """A few inputs the transform must record as errors without losing anything else."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    return {
        "bad/empty.jpg": b"",
        "bad/not_an_image.jpg": b"this is a text file, not a JPEG\n",
        "bad/truncated.jpg": jpeg[: len(jpeg) // 2],
    }


#: The demo's steps, in order.
STEPS: list[Step] = [
    step_synth_crops,
    step_train,
    step_eval,
    step_synth_scenes,
    step_transform,
    step_transform_sheet,
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beardnet demo``."""
    parser.add_argument("--data-dir", default=".demo/s3",
                        help="where the local S3 server keeps its data (default .demo/s3); "
                        "'' for a temp folder removed at the end")
    parser.add_argument("--bucket", default=DEFAULT_BUCKET,
                        help=f"bucket for the demo's outputs (default {DEFAULT_BUCKET})")
    parser.add_argument("--identities", type=int, default=40,
                        help="synthetic identities to render, each in every beard style "
                        "(default 40)")
    parser.add_argument("--size", type=int, default=128, help="crop size in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--steps", type=int, default=60,
                        help="training steps of the short 2-worker demo run (default 60)")
    parser.add_argument("--scenes", type=int, default=24,
                        help="synthetic photos to transform (default 24)")
    parser.add_argument("--style", default="full_beard",
                        help="target beard style for the transform (default full_beard)")
    parser.add_argument("--sheet-rows", dest="sheet_rows", type=int, default=6,
                        help="photos in the before/after contact sheet (default 6)")
    parser.add_argument("--local-dir", dest="local_dir", default=".demo",
                        help="local folder for the contact sheets (default .demo)")


def run_steps(ctx: DemoContext, steps: list[Step] | None = None) -> DemoContext:
    """Run ``steps`` (default :data:`STEPS`) in order, timing each."""
    for step in steps if steps is not None else STEPS:
        name = step.__name__.removeprefix("step_")
        print(f"== {name}: {(step.__doc__ or '').strip().splitlines()[0]}", flush=True)
        t0 = time.monotonic()
        step(ctx)
        ctx.timings[name] = round(time.monotonic() - t0, 2)
        print(f"   done in {ctx.timings[name]:.1f}s", flush=True)
    return ctx


def report(ctx: DemoContext, data_dir: str | None) -> str:
    """The closing text: results, timings and how to look at them again."""
    lines = ["", "== beardnet demo: results"]
    lines.append(json.dumps(ctx.results, indent=2, default=str))
    lines.append(f"timings (s): {json.dumps(ctx.timings)}")
    if data_dir:
        lines += [
            f"The results are in {ctx.bucket_uri} on the local S3 server (data in {data_dir}).",
            "To browse them, serve it again and point any S3 client at the printed endpoint:",
            f"  beardnet s3 serve --data-dir {data_dir}",
        ]
    else:
        lines.append("(temp data folder: the results were removed with the server)")
    return "\n".join(lines)


def run(args: argparse.Namespace, steps: list[Step] | None = None) -> int:
    """Start the local S3 server, run the steps, print the report, stop the server."""
    from beardnet.s3server import LocalS3

    data_dir = os.path.abspath(args.data_dir) if args.data_dir else None
    if data_dir:
        os.makedirs(data_dir, exist_ok=True)
    t0 = time.monotonic()
    with LocalS3(data_dir) as server:
        print(f"local S3 at {server.endpoint_url} (pid {server.pid}, "
              f"ready in {server.start_seconds:.1f}s)", flush=True)
        bucket_uri = server.create_bucket(args.bucket)
        ctx = DemoContext(args=args, s3=server.settings, bucket_uri=bucket_uri,
                          local_dir=os.path.abspath(getattr(args, "local_dir", ".demo")))
        with exported_env(server.settings):
            run_steps(ctx, steps)
        print(report(ctx, data_dir), flush=True)
        print("stopping the local S3 server...", flush=True)
    print(f"demo finished in {time.monotonic() - t0:.1f}s (server stopped in "
          f"{server.stop_seconds or 0:.1f}s)")
    return 0
