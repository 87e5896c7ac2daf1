"""``beardnet bench [--quick] [--out bench/results]``: measure, compare, write the table.

Parts (``--parts``, default all): ``sampler`` (no Ray), ``train`` (plain loop, Ray Train x1,
x2), ``transform`` (local S3 + Ray Data job vs raw network, locator, actor RSS), ``peer`` (the
plain process-pool loop vs ``beardnet transform`` on the same local folder), ``memory``
(the job on folders of 12/24/48 MP JPEGs: peak RSS per worker, object-store spilling),
``plan`` (planning an incremental run over 1,000,000 generated keys: seconds, peak RSS). Starts a local
S3 server (SeaweedFS) unless an endpoint is configured (``s3.endpoint_url`` or
``AWS_ENDPOINT_URL``), and a local Ray unless ``RAY_ADDRESS`` is set. Writes
``OUT/<date>-<host>[-quick].json`` and ``.md`` and prints the Markdown table. Exit code 0 when
every part ran (targets met or not: the table says), 1 when a part failed.

Config (``--config FILE`` / ``--set``): ``n_scenes``, ``seed``, ``threads``, ``bucket``,
``transform.<section>.<key>`` (overrides of the transform job's config, e.g.
``--set transform.ray.network_actors=2``), ``transform_variants.<name>.<section>.<key>``
(extra runs of the job on the same photos, compared with the main one), ``s3.*``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import traceback
import uuid
from typing import Any

from pydantic import Field

from beardnet.config import S3Section, StrictModel, load_config

DESCRIPTION = __doc__.split("\n\n")[0] if __doc__ else None
PARTS = ("sampler", "train", "transform", "peer", "memory", "plan")
log = logging.getLogger(__name__)


class BenchConfig(StrictModel):
    """What ``beardnet bench`` measures and where."""

    quick: bool = Field(False, description="short mode (< 3 minutes)")
    parts: list[str] = Field(default_factory=lambda: list(PARTS))
    out: str = Field("bench/results", description="folder for the JSON and Markdown results")
    n_scenes: int | None = Field(None, ge=1, description="scene photos (default 500; quick 60)")
    n_peer: int | None = Field(None, ge=1, description="photos for the peer (default 300; quick 40)")
    peer_dir: str = Field(".bench/peer", description="local folder for the peer's photos")
    seed: int = 1000
    threads: int | None = Field(None, ge=1, description="torch threads in total (default: cores)")
    bucket: str = Field("beardnet-bench", description="bucket for scenes and outputs")
    transform: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="overrides of the transform job config, per section"
    )
    transform_variants: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=dict,
        description="extra transform runs on the same photos: name -> per-section overrides",
    )
    s3: S3Section = Field(default_factory=S3Section)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beardnet bench`` (``--config``/``--set`` are added by the CLI)."""
    parser.add_argument("--quick", action="store_true", help="short mode (< 3 minutes)")
    parser.add_argument("--out", default=None, help="results folder (default bench/results)")
    parser.add_argument(
        "--parts", default=None,
        help=f"comma-separated subset of {','.join(PARTS)} (default: all)",
    )
    parser.add_argument("--n-scenes", type=int, default=None,
                        help="scene photos for the transform (default 500, quick 60)")


def _config(args: argparse.Namespace) -> BenchConfig:
    cfg = load_config(BenchConfig, getattr(args, "config", None), getattr(args, "set", None))
    if args.quick:
        cfg.quick = True
    if args.out:
        cfg.out = args.out
    if args.parts:
        cfg.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if args.n_scenes:
        cfg.n_scenes = args.n_scenes
    unknown = [p for p in cfg.parts if p not in PARTS]
    if unknown:
        from beardnet.config import ConfigError

        raise ConfigError(f"parts: unknown {unknown}; known: {', '.join(PARTS)}")
    return cfg


@contextlib.contextmanager
def _s3_endpoint(cfg: BenchConfig):
    """The configured S3, or a local SeaweedFS for the duration (AWS_* set while it runs)."""
    settings = cfg.s3.settings()
    if settings.endpoint_url:
        yield settings
        return
    from beardnet.s3server import LocalS3
    from beardnet.storage import exported_env

    server = LocalS3()
    server.start()
    try:
        with exported_env(server.settings):
            yield server.settings
    finally:
        server.stop()


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _part(report: Any, name: str, fn, *a, **kw) -> Any:
    t0 = time.perf_counter()
    load0 = _load()
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    try:
        return fn(*a, **kw)
    except Exception as exc:  # noqa: BLE001 - one failed part must not lose the others
        traceback.print_exc()
        report.errors[name] = f"{type(exc).__name__}: {exc}"
        return None
    finally:
        report.part_seconds[name] = time.perf_counter() - t0
        report.part_load[name] = (load0, _load())
        print(f"[bench] {name} done in {report.part_seconds[name]:.0f} s", file=sys.stderr,
              flush=True)


def run_bench(cfg: BenchConfig) -> tuple[Any, tuple[Any, Any]]:
    """Run the configured parts; returns the report and the (json, md) paths written."""
    from beardnet.bench import sampler_bench, train_bench, transform_bench
    from beardnet.bench.report import Report, cpu_probe_ms

    report = Report(mode="quick" if cfg.quick else "full")
    report.machine["cpu_probe_ms"] = round(cpu_probe_ms(), 3)
    t_all = time.perf_counter()
    # the sampler first, in a process without Ray (its memory figure is clean)
    if "sampler" in cfg.parts:
        _part(report, "sampler", sampler_bench.run, report, quick=cfg.quick)
    if "plan" in cfg.parts:
        from beardnet.bench import plan_bench

        _part(report, "plan", plan_bench.run, report)
    need_ray = any(p in cfg.parts for p in ("train", "transform", "peer", "memory"))
    if need_ray:
        if not os.environ.get("RAY_ADDRESS"):
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # local DDP over loopback
        from beardnet.raysession import init_ray, shutdown_ray
        from beardnet.storage import create_bucket

        with _s3_endpoint(cfg) as settings:
            try:
                init_ray(num_cpus=None, object_store_mb=512, s3=settings)
                if "train" in cfg.parts:
                    _part(report, "train", train_bench.run, report, quick=cfg.quick,
                          threads=cfg.threads)
                if "transform" in cfg.parts:
                    n = cfg.n_scenes or (60 if cfg.quick else 500)

                    def _transform() -> Any:
                        create_bucket(cfg.bucket, settings)
                        base = f"s3://{cfg.bucket}/run-{time.strftime('%Y%m%d-%H%M%S')}-" \
                               f"{uuid.uuid4().hex[:6]}"
                        report.details["transform_base"] = base
                        return transform_bench.run(
                            report, base, n_scenes=n, s3=settings, seed=cfg.seed,
                            transform_overrides=cfg.transform, sweep_tiles=not cfg.quick,
                            variants=cfg.transform_variants,
                        )

                    _part(report, "transform", _transform)
                if "peer" in cfg.parts:
                    from beardnet.bench import peer_bench

                    _part(report, "peer", peer_bench.run, report, cfg.peer_dir,
                          n=cfg.n_peer or (40 if cfg.quick else 300), seed=cfg.seed,
                          overrides=cfg.transform, rounds=1 if cfg.quick else 3)
                if "memory" in cfg.parts:
                    from beardnet.bench import memory_bench

                    def _memory() -> Any:
                        create_bucket(cfg.bucket, settings)
                        base = f"s3://{cfg.bucket}/mem-{time.strftime('%Y%m%d-%H%M%S')}-" \
                               f"{uuid.uuid4().hex[:6]}"
                        return memory_bench.run(report, base, quick=cfg.quick, s3=settings)

                    _part(report, "memory", _memory)
            finally:
                shutdown_ray()
    report.part_seconds["total"] = time.perf_counter() - t_all
    # once more at the end: how far the host's speed drifted during the run
    report.machine["cpu_probe_end_ms"] = round(cpu_probe_ms(), 3)
    paths = report.write(cfg.out)
    return report, paths


def run(args: argparse.Namespace) -> int:
    """``beardnet bench``: run, write, print the table; 1 if a part failed."""
    cfg = _config(args)
    report, (jp, mp) = run_bench(cfg)
    print(report.to_markdown())
    print(f"results: {jp}\n         {mp}")
    return 1 if report.errors else 0
