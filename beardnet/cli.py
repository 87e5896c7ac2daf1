"""``beardnet <subcommand> ...``: one entry point for every job.

Each subcommand lives in a module with ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported lazily (only the one being run or asked for ``--help``), so
``beardnet --help`` is fast and a module that fails to import breaks only its own subcommand.
Every subcommand takes ``--config FILE`` and ``--set key=value`` (added here unless the module
adds them itself); a module may set ``DESCRIPTION`` for its ``--help`` text.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from beardnet.config import ConfigError, add_config_arguments

#: subcommand -> (module, one-line help)
REGISTRY: dict[str, tuple[str, str]] = {
    "synth": ("beardnet.synth.cli", "render synthetic faces (paired crops or photo-like scenes)"),
    "s3": ("beardnet.s3server", "run a local S3 server (SeaweedFS) on 127.0.0.1"),
    "acquire": ("beardnet.data.cli", "acquire a training set from a manifest by category ratio"),
    "train": ("beardnet.train.cli", "train the beard transformation network on Ray Train"),
    "eval": ("beardnet.evaluate.cli", "evaluate a model artifact on paired synthetic crops"),
    "ablate": ("beardnet.train.ablate", "train and compare with/without the patent's ratios"),
    "transform": ("beardnet.infer.cli", "transform a photo archive (S3 prefix) with Ray Data"),
    "bench": ("beardnet.bench.cli", "measure training and transform throughput"),
    "demo": ("beardnet.demo", "start a local S3 server and run the pipeline on built-in defaults"),
}

log = logging.getLogger("beardnet")


def _subcommand(argv: Sequence[str]) -> str | None:
    """The first argument that names a subcommand (skipping top-level options)."""
    skip_next = False
    for a in argv:
        if skip_next:
            skip_next = False
            continue
        if a == "--log-level":
            skip_next = True
            continue
        if a.startswith("-"):
            continue
        return a if a in REGISTRY else None
    return None


def _add_common(parser: argparse.ArgumentParser) -> None:
    if "--config" not in parser._option_string_actions:
        add_config_arguments(parser)


def build_parser(active: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``active``'s module is imported and its options added."""
    parser = argparse.ArgumentParser(
        prog="beardnet",
        description="beardnet: a beard transformation network trained with the category, "
        "sampling and area ratios of patent CN112241709A, on Ray.",
    )
    parser.add_argument(
        "--log-level", default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level (default INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (module_name, help_text) in REGISTRY.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name != active:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            sp.set_defaults(_import_error=f"{module_name}: {exc}")
            sp.description = f"{help_text}\n(not available: cannot import {module_name}: {exc})"
            _add_common(sp)
            continue
        sp.description = getattr(module, "DESCRIPTION", None) or help_text
        module.add_arguments(sp)
        _add_common(sp)
        sp.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_subcommand(args_list))
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.command:
        parser.print_help()
        return 2
    err = getattr(args, "_import_error", None)
    if err:
        print(f"beardnet {args.command}: not available ({err})", file=sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except ConfigError as exc:
        print(f"beardnet {args.command}: config error:\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"beardnet {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the trace, then a one-line summary
        traceback.print_exc()
        print(f"beardnet {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
