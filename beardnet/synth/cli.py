"""``beardnet synth``: write a synthetic dataset (paired crops or photo-like scenes) to any URI."""

from __future__ import annotations

import argparse
import json
from typing import Literal

from pydantic import Field

from beardnet.config import S3Section, StrictModel, config_from_args

DESCRIPTION = """\
Render synthetic faces and write them with a Parquet manifest to a local folder or s3:// URI.

crops:  every identity in every beard style (none, stubble, mustache, goatee, full_beard),
        aligned to the canonical geometry: OUT/images/<identity>/<style>.png, beard and face
        masks under OUT/masks/, OUT/manifest.parquet (the training manifest).
scenes: photo-like images with 0-3 faces of varied size/position/style:
        OUT/images/scene_NNNNN.jpg (every 4th .png), OUT/manifest.parquet with each face's
        box [x0,y0,x1,y1], style and landmarks (JSON).
composite: beards drawn onto your own real photos (--faces: any folder or s3:// prefix of
        JPEG/PNG, optional --labels CSV/Parquet): for every clean-shaven face the aligned crop
        is the `none` row and each of --seeds seeds adds one row per style, same identity;
        OUT/manifest.parquet (same columns as crops, plus source/person/aug_seed/area_ratio),
        OUT/faces.parquet (every face found: used, or why not, e.g. facial hair).
Deterministic from --seed. Large counts fan out over Ray (RAY_ADDRESS or a local Ray).
Options given on the command line override the config file's [synth] section and --set.
"""


class SynthSection(StrictModel):
    """What to render and where to write it."""

    out: str = Field("", description="output folder URI (local path, file:// or s3://)")
    mode: Literal["crops", "scenes", "composite"] = "crops"
    faces: str = Field("", description="composite mode: folder/prefix of real photos")
    labels: str = Field("", description="composite mode: per-face labels (CSV or Parquet)")
    only_split: str = Field("", description="composite mode: only faces labelled this split")
    seeds: int = Field(4, ge=1, description="composite mode: beards per style per face")
    native: bool = Field(False, description="composite mode: also write full-size composites")
    min_face_px: int = Field(60, ge=16, description="composite mode: smallest face width")
    identities: int = Field(100, ge=1, description="crops mode: identities (x5 images)")
    count: int = Field(50, ge=1, description="scenes mode: number of scenes")
    size: int = Field(128, ge=32, le=2048, description="crops mode: crop side in pixels")
    seed: int = Field(0, ge=0)
    min_size: int = Field(256, ge=64, description="scenes mode: smallest longest side")
    max_size: int = Field(1024, ge=64, description="scenes mode: largest longest side")
    use_ray: bool | None = Field(None, description="None: Ray above 200 identities/scenes")


class SynthConfig(StrictModel):
    """``beardnet synth`` configuration."""

    synth: SynthSection = Field(default_factory=SynthSection)
    s3: S3Section = Field(default_factory=S3Section)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beardnet synth``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--out",
        metavar="URI",
        help="output folder: local path, file:///abs or "
        "s3://bucket/prefix (required, here or as synth.out in the config)",
    )
    parser.add_argument(
        "--mode",
        choices=["crops", "scenes", "composite"],
        help="crops: paired aligned crops for training; scenes: photo-like "
        "images for the transform job; composite: beards drawn onto your real photos "
        "(default crops)",
    )
    parser.add_argument(
        "--faces", metavar="URI", help="composite mode: folder or s3:// prefix of JPEG/PNG photos"
    )
    parser.add_argument(
        "--labels",
        metavar="URI",
        help="composite mode: per-face labels, CSV or Parquet (file, x0, y0, x1, y1, "
        "facial_hair[, identity, split]); a label decides whether a face is clean",
    )
    parser.add_argument(
        "--only-split",
        metavar="SPLIT",
        help="composite mode: use only faces whose label has this split (e.g. train)",
    )
    parser.add_argument(
        "--seeds", type=int, metavar="N", help="composite mode: beards per style per face (4)"
    )
    parser.add_argument(
        "--native",
        action="store_const",
        const=True,
        default=None,
        help="composite mode: also write the full photo with each beard under OUT/native/",
    )
    parser.add_argument(
        "--min-face-px", type=int, metavar="PX", help="composite mode: smallest face (60)"
    )
    parser.add_argument(
        "--identities",
        type=int,
        metavar="N",
        help="crops mode: number of identities, each rendered in all 5 styles (default 100)",
    )
    parser.add_argument(
        "--count", type=int, metavar="N", help="scenes mode: number of scene images (default 50)"
    )
    parser.add_argument(
        "--size",
        type=int,
        metavar="PX",
        help="crops mode: crop side in pixels (default 128); scenes mode: the "
        "longest side of every scene (default: random in --min-size..--max-size)",
    )
    parser.add_argument(
        "--min-size",
        type=int,
        metavar="PX",
        help="scenes mode: smallest longest side (default 256)",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        metavar="PX",
        help="scenes mode: largest longest side (default 1024)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        metavar="S",
        help="random seed; the same seed gives byte-identical images (default 0)",
    )
    ray = parser.add_mutually_exclusive_group()
    ray.add_argument(
        "--ray",
        dest="use_ray",
        action="store_const",
        const=True,
        default=None,
        help="always render over Ray tasks",
    )
    ray.add_argument(
        "--no-ray",
        dest="use_ray",
        action="store_const",
        const=False,
        help="never use Ray (default: Ray above 200 identities or scenes)",
    )


def _merged(args: argparse.Namespace) -> SynthConfig:
    cfg = config_from_args(SynthConfig, args)
    data = cfg.synth.model_dump()
    keys = ("out", "mode", "identities", "count", "seed", "min_size", "max_size", "use_ray",
            "faces", "labels", "only_split", "seeds", "native", "min_face_px")  # fmt: skip
    for key in keys:
        val = getattr(args, key, None)
        if val is not None:
            data[key] = val
    scene_size = None
    if getattr(args, "size", None) is not None:
        if data["mode"] == "scenes":
            scene_size = args.size
        else:
            data["size"] = args.size
    cfg = SynthConfig(synth=SynthSection.model_validate(data), s3=cfg.s3)
    cfg.__dict__["_scene_size"] = scene_size  # not part of the schema
    return cfg


def run(args: argparse.Namespace) -> int:
    """Render and write; prints the summary as JSON."""
    from beardnet.synth.dataset import write_crops_dataset, write_scenes_dataset

    cfg = _merged(args)
    sy = cfg.synth
    if not sy.out:
        raise SystemExit("beardnet synth: --out URI is required (or synth.out in the config)")
    s3 = cfg.s3.settings()
    if sy.mode == "composite":
        from beardnet.synth.pairs import CompositeOptions, write_composite_dataset

        if not sy.faces:
            raise SystemExit("beardnet synth --mode composite: --faces URI is required")
        opts = CompositeOptions(size=sy.size, seeds=sy.seeds, seed=sy.seed,
                                min_face_px=sy.min_face_px, native=sy.native,
                                only_split=sy.only_split or None)  # fmt: skip
        summary = write_composite_dataset(
            sy.faces, sy.out, opts, labels_uri=sy.labels or None, s3=s3, use_ray=sy.use_ray
        )
    elif sy.mode == "crops":
        summary = write_crops_dataset(
            sy.out, sy.identities, size=sy.size, seed=sy.seed, s3=s3, use_ray=sy.use_ray
        )
    else:
        lo, hi = sy.min_size, sy.max_size
        scene_size = cfg.__dict__.get("_scene_size")
        if scene_size:
            lo = hi = int(scene_size)
        summary = write_scenes_dataset(
            sy.out, sy.count, seed=sy.seed, min_size=lo, max_size=hi, s3=s3, use_ray=sy.use_ray
        )
    print(json.dumps(summary, indent=2))
    return 0
