"""``beardnet acquire``: a training manifest -> the acquired manifest (by category ratio) plus a
JSON report of the counts available, taken, dropped and oversampled per category.

Oversampled rows are written once with a ``repeat`` column (the manifest contract forbids
duplicate ``uri``); :class:`beardnet.data.paired.PairedCropDataset` expands it. URIs in the
output are made absolute unless the output sits in the source manifest's folder.
"""

from __future__ import annotations

import argparse
import json
import logging

from pydantic import Field

from beardnet.config import S3Section, StrictModel

DESCRIPTION = __doc__
log = logging.getLogger("beardnet.acquire")


class AcquireSection(StrictModel):
    """What to acquire."""

    data: str = Field("", description="crop set folder or manifest.parquet (source)")
    out: str = Field("", description="acquired manifest (.parquet) or a folder for it")
    report: str | None = Field(None, description="report JSON (default: next to the output)")
    categories: list[str] = Field(
        default_factory=lambda: ["none", "stubble", "mustache", "goatee", "full_beard"]
    )
    ratio: str | dict[str, float] | list[float] = "none:1,stubble:1,mustache:1,goatee:1,full_beard:1"
    total: int | None = Field(None, ge=0)
    seed: int = 0
    allow_oversample: bool = False
    split: str | None = Field("train", description="only rows of this split (None: all rows)")


class AcquireConfig(StrictModel):
    acquire: AcquireSection = Field(default_factory=AcquireSection)
    s3: S3Section = Field(default_factory=S3Section)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beardnet acquire`` (each is also ``--set acquire.<name>=...``)."""
    parser.add_argument("--data", help="source crop set folder or manifest.parquet")
    parser.add_argument("--out", help="acquired manifest .parquet (or a folder for it)")
    parser.add_argument("--ratio", help="category ratio, e.g. none:1,stubble:1,mustache:1")
    parser.add_argument("--total", type=int, help="rows to take (default: most without oversampling)")
    parser.add_argument("--seed", type=int, help="seed for the deterministic subsampling (default: config or 0)")
    parser.add_argument("--split", help="rows of this split only (default train; 'all' for every row)")
    parser.add_argument("--allow-oversample", action="store_true", default=None,
                        help="draw short categories with replacement instead of failing")
    parser.add_argument("--report", help="report JSON URI (default: next to the output)")


def run(args: argparse.Namespace) -> int:
    """Acquire and write the manifest and the report; prints the report."""
    import numpy as np
    import pyarrow as pa

    from beardnet import storage
    from beardnet.categories import Categories
    from beardnet.config import config_from_args
    from beardnet.data.acquire import acquire
    from beardnet.data.paired import manifest_path
    from beardnet.manifest import read_manifest, resolve_uri, write_manifest

    sets = list(getattr(args, "set", None) or [])
    for name in ("data", "out", "ratio", "total", "seed", "split", "report"):
        v = getattr(args, name, None)
        if v is not None:
            sets.append(f"acquire.{name}={v}")
    if getattr(args, "allow_oversample", None):
        sets.append("acquire.allow_oversample=true")
    ns = argparse.Namespace(config=getattr(args, "config", None), set=sets)
    cfg = config_from_args(AcquireConfig, ns)
    a = cfg.acquire
    if not a.data or not a.out:
        raise SystemExit("beardnet acquire: --data and --out are required")
    s3 = cfg.s3.settings()
    cats = Categories(tuple(a.categories))
    src = manifest_path(a.data)
    table = read_manifest(src, cats, s3=s3)
    if a.split not in (None, "all"):
        keep = np.asarray(table.column("split").to_numpy(zero_copy_only=False)) == a.split
        table = table.filter(keep)
    codes = cats.indices(table.column("category").to_pylist())
    idx, rep = acquire(codes, a.ratio, a.total, a.seed, a.allow_oversample, cats)
    rows, counts = np.unique(idx, return_counts=True)
    out_table = table.take(pa.array(rows))
    out = a.out if a.out.endswith(".parquet") else storage.join(a.out, "manifest.parquet")
    if storage.parent(out).rstrip("/") != storage.parent(src).rstrip("/"):
        for c in ("uri", "beard_mask_uri", "face_mask_uri"):
            vals = [None if u is None else resolve_uri(src, u) for u in out_table.column(c).to_pylist()]
            out_table = out_table.set_column(
                out_table.column_names.index(c), c, pa.array(vals, pa.string())
            )
    if np.any(counts > 1):
        out_table = out_table.append_column("repeat", pa.array(counts.astype(np.int32)))
    write_manifest(out_table, out, cats, s3=s3)
    report = rep.to_dict() | {"source": src, "manifest": out, "split": a.split, "rows": int(idx.size)}
    report_uri = a.report or storage.join(storage.parent(out), "acquire_report.json")
    storage.write_bytes(report_uri, json.dumps(report, indent=2).encode(), s3=s3)
    print(json.dumps(report, indent=2))
    log.info("acquired %d rows (%d distinct) -> %s; report %s", idx.size, rows.size, out, report_uri)
    return 0
