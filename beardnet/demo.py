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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from beardnet.storage import S3Settings

DESCRIPTION = (
    "Start a local S3 server, run the pipeline on built-in defaults (this version: generate a "
    "synthetic paired-crops dataset into s3://beardnet-demo/), print the summary and where the "
    "results are, and stop the server."
)
DEFAULT_BUCKET = "beardnet-demo"


@dataclass
class DemoContext:
    """What the steps share: options, S3 settings, the bucket, and their results."""

    args: argparse.Namespace
    s3: S3Settings
    bucket_uri: str
    results: dict[str, Any] = field(default_factory=dict)
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


#: The demo's steps, in order.
STEPS: list[Step] = [step_synth_crops]


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (so Ray workers and children see them)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
        ctx = DemoContext(args=args, s3=server.settings, bucket_uri=bucket_uri)
        with _env(server.settings.to_env()):
            run_steps(ctx, steps)
        print(report(ctx, data_dir), flush=True)
        print("stopping the local S3 server...", flush=True)
    print(f"demo finished in {time.monotonic() - t0:.1f}s (server stopped in "
          f"{server.stop_seconds or 0:.1f}s)")
    return 0
