"""``beardnet transform``: transform a photo archive (an S3 prefix or a folder) with Ray Data.

Every flag is a shortcut for a ``--set`` override of :class:`~beardnet.infer.config.TransformConfig`
and wins over ``--config`` and ``--set``. Prints the run summary; the exit code says how the job
ended: 0 done (per-photo errors are counted in the summary, not fatal), 2 bad configuration,
3 storage not reachable or not writable, 4 model artifact unusable, 75 another run holds the
output's lease (try again later), 76 the run lost its lease mid-run and stopped writing (run
again), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

DESCRIPTION = (
    "Transform every photo under --input (s3://bucket/prefix/, file:///dir or a path) and write "
    "it under --output with the same relative key, plus a Parquet manifest and a run summary "
    "under OUTPUT/_beardnet/. Exit codes: 0 done (per-photo errors counted in the summary), "
    "2 config, 3 storage, 4 model, 75 output busy (lease held by another run), 76 lease lost "
    "mid-run (stopped writing), 1 other."
)

#: flag dest -> config path
_FLAGS: dict[str, str] = {
    "input": "job.input",
    "output": "job.output",
    "model": "job.model",
    "style": "job.style",
    "style_map": "job.style_map",
    "on_no_face": "job.on_no_face",
    "limit": "job.limit",
    "run_id": "job.run_id",
    "lease_ttl": "job.lease_ttl_s",
    "jpeg_quality": "image.jpeg_quality",
    "png_compress_level": "image.png_compress_level",
    "min_face_px": "image.min_face_px",
    "max_pixels": "image.max_pixels",
    "faces": "image.faces",
    "num_cpus": "ray.num_cpus",
    "network_actors": "ray.network_actors",
    "network_cpus": "ray.network_num_cpus",
    "network_batch_size": "ray.network_batch_size",
    "read_cpus": "ray.read_num_cpus",
    "read_batch_size": "ray.read_batch_size",
    "block_rows": "ray.block_rows",
    "progress": "ray.progress",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The transform job's options (``--config``/``--set`` are added by ``beardnet.cli``)."""
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    g = parser.add_argument_group("what to transform")
    g.add_argument("--input", help="input prefix: s3://bucket/prefix/, file:///dir or a path")
    g.add_argument("--output", help="output prefix (same kinds); keys are kept")
    g.add_argument("--model", help="model artifact URI (default: the shipped model)")
    g.add_argument("--style", help="target style for every photo, e.g. full_beard")
    g.add_argument("--style-map", dest="style_map", help="Parquet/CSV with columns key, style")
    g.add_argument("--incremental", action="store_true", default=None,
                   help="skip keys already done (ok/no_face) in earlier manifests of OUTPUT")
    g.add_argument("--extensions", help="comma-separated extensions, e.g. .jpg,.png")
    g.add_argument("--on-no-face", dest="on_no_face", choices=["copy", "skip"],
                   help="photos without a usable face: copy through or write nothing")
    g.add_argument("--limit", type=int, help="process at most N keys")
    g.add_argument("--run-id", dest="run_id", help="run id (default: UTC time + random)")
    g.add_argument("--lease-ttl", dest="lease_ttl", type=float, help="lease expiry, seconds")
    g.add_argument("--no-lease", dest="no_lease", action="store_true", default=None,
                   help="run without the output lease (for stores without conditional writes: "
                   "nothing then stops a second run on the same output)")
    g = parser.add_argument_group("per photo")
    g.add_argument("--jpeg-quality", dest="jpeg_quality", type=int,
                   help="JPEG quality of re-encoded JPEG outputs (1-100)")
    g.add_argument("--png-compress-level", dest="png_compress_level", type=int,
                   help="zlib level of PNG outputs (0-9, default 4)")
    g.add_argument("--min-face-px", dest="min_face_px", type=int,
                   help="faces smaller than this (larger box side, px) are left alone and counted")
    g.add_argument("--max-pixels", dest="max_pixels", type=int,
                   help="refuse images above this many pixels before decoding (bomb guard)")
    g.add_argument("--faces", choices=["mediapipe", "haar"], help="face locator")
    g = parser.add_argument_group("parallelism")
    g.add_argument("--num-cpus", dest="num_cpus", type=int, help="CPUs of a local Ray")
    g.add_argument("--network-actors", dest="network_actors", type=int,
                   help="actors in the network pool (each loads the model once)")
    g.add_argument("--network-cpus", dest="network_cpus", type=float,
                   help="CPUs per network actor (torch threads)")
    g.add_argument("--network-batch-size", dest="network_batch_size", type=int,
                   help="photos per network actor call (crops batched across them)")
    g.add_argument("--read-cpus", dest="read_cpus", type=float,
                   help="CPUs per read/decode/locate task")
    g.add_argument("--read-batch-size", dest="read_batch_size", type=int,
                   help="photos per read/decode/locate call")
    g.add_argument("--block-rows", dest="block_rows", type=int,
                   help="keys per input block (read/locate task)")
    g.add_argument("--progress", choices=["auto", "on", "off"],
                   help="progress bar: auto = on in a terminal, off in CI")
    parser.add_argument("--json", action="store_true", help="print the whole summary as JSON")


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides from the config file's ``--set`` list plus the shortcut flags."""
    sets = list(getattr(args, "set", None) or [])
    for dest, path in _FLAGS.items():
        v = getattr(args, dest, None)
        if v is not None:
            sets.append(f"{path}={json.dumps(v) if isinstance(v, str) else v}")
    if getattr(args, "incremental", None):
        sets.append("job.incremental=true")
    if getattr(args, "no_lease", None):
        sets.append("job.no_lease=true")
    if getattr(args, "extensions", None):
        exts = [e.strip() for e in args.extensions.split(",") if e.strip()]
        sets.append(f"job.extensions={json.dumps(exts)}")
    return sets


def format_summary(s: dict) -> str:
    """A few human lines for the terminal."""
    st = ", ".join(f"{k} {v}" for k, v in sorted(s.get("status", {}).items())) or "nothing to do"
    shares = s.get("stage_share", {})
    share_txt = ", ".join(f"{k[:-2]} {v:.0%}" for k, v in shares.items() if v)
    lines = [
        (
            f"run {s['run_id']}: {s['images']} images in {s['wall_s']:.1f}s "
            f"({s['images_per_s']:.2f} images/s), model {s['model']}"
        ),
        f"  status: {st}",
        (
            f"  faces {s['faces']} (too small {s['faces_small']}), "
            f"bytes in {s['bytes_in']}, out {s['bytes_out']}"
        ),
    ]
    if share_txt:
        lines.append(f"  time per stage: {share_txt}")
    lines.append(f"  summary: {s.get('summary_uri', '')}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the job from parsed arguments; returns the exit code."""
    from beardnet.config import ConfigError, load_config
    from beardnet.infer.config import TransformConfig
    from beardnet.infer.job import EXIT_CONFIG, TransformFailed, run_transform

    try:
        cfg = load_config(TransformConfig, getattr(args, "config", None), overrides_from_args(args))
    except ConfigError as e:
        print(f"beardnet transform: config error:\n{e}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        summary = run_transform(cfg)
    except TransformFailed as e:
        print(f"beardnet transform: {e}", file=sys.stderr)
        return e.exit_code
    if getattr(args, "json", False):
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    else:
        print(format_summary(summary))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m beardnet.infer.cli``); same as ``beardnet transform``."""
    from beardnet.config import add_config_arguments

    parser = argparse.ArgumentParser(prog="beardnet transform", description=DESCRIPTION)
    add_arguments(parser)
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
