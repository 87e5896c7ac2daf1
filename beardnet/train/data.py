"""The training data path of one Ray Train worker: acquisition, paired dataset, sampler, loader.

1. :func:`build_training_set` reads the manifest's train split, acquires the target rows by the
   **category ratio** (claim 2a; the same selection on every rank, a pure function of the
   config) among the rows that may be targets, and builds the
   :class:`~beardnet.data.paired.PairedCropDataset` (sources: any row of the identity).
2. :func:`build_sampler` gives this rank its batches: the **ratio sampler** (claim 2b) or, for
   the ablation baseline, plain shuffled batches; no manifest row twice in one batch.
3. :func:`make_loader` wraps the sampler in :class:`EpochBatches`, so every index carries its
   epoch into the DataLoader's worker processes (pairing and augmentation are re-drawn per
   epoch even with persistent workers).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of samples into a batch of tensors."""
    import torch

    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class EpochBatches:
    """A batch sampler that yields ``[(epoch, index), ...]`` for the dataset, from a planned
    batch sampler (``set_epoch``, ``state_dict`` and ``len`` pass through)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.sampler.epoch
        for batch in self.sampler:
            yield [(epoch, int(i)) for i in batch]


def join_crop_sets(sets: list[tuple[str, Any]]) -> Any:
    """One manifest table from several ``(manifest_uri, table)`` crop sets: image and mask
    URIs made absolute, the columns all sets share, identities prefixed by the set's number
    from the second set on (so two sets never pair with each other)."""
    import pyarrow as pa

    from beardnet.manifest import resolve_uri

    common = [c for c in sets[0][1].column_names if all(c in t.column_names for _, t in sets)]
    parts = []
    for n, (uri, t) in enumerate(sets):
        t = t.select(common)
        for c in ("uri", "beard_mask_uri", "face_mask_uri"):
            if c in common:
                vals = [None if v is None else resolve_uri(uri, v) for v in t.column(c).to_pylist()]
                t = t.set_column(t.column_names.index(c), c, pa.array(vals, pa.string()))
        if n:
            ids = [f"set{n}:{v}" for v in t.column("identity").to_pylist()]
            t = t.set_column(t.column_names.index("identity"), "identity", pa.array(ids))
        parts.append(t)
    return pa.concat_tables(parts, promote_options="permissive")


def build_training_set(cfg: Any, s3: Any) -> tuple[Any, dict[str, Any]]:
    """The paired training dataset after category-ratio acquisition, plus a report of the
    acquisition and of self-pairs (same on every rank)."""
    from beardnet.data.acquire import acquire
    from beardnet.data.paired import PairedCropDataset, manifest_path, target_rows
    from beardnet.manifest import read_manifest

    cats = cfg.data.cats
    muri = manifest_path(cfg.data.uri)
    table = read_manifest(muri, cats, s3=s3)
    if cfg.data.extra_uris:
        table = join_crop_sets([(muri, table)] + [
            (manifest_path(u), read_manifest(manifest_path(u), cats, s3=s3))
            for u in cfg.data.extra_uris
        ])
    split = np.asarray(table.column("split").to_numpy(zero_copy_only=False)) == cfg.data.train_split
    table = table.filter(split)
    if table.num_rows == 0:
        raise ValueError(f"{muri}: no rows in split {cfg.data.train_split!r}")
    eligible = target_rows(table)
    if eligible.size == 0:
        raise ValueError(f"{muri}: no row of split {cfg.data.train_split!r} may be a target")
    all_cats = cats.indices(table.column("category").to_pylist()).astype(np.int64)
    tcats = all_cats[eligible]
    report: dict[str, Any] = {
        "source_rows": int(eligible.size),
        "source_only_rows": int(table.num_rows - eligible.size),
        "source_counts": {n: int((tcats == i).sum()) for i, n in enumerate(cats.names)},
    }
    rows = eligible
    ratio = cfg.data.ratio_dict()
    if ratio is not None:
        pick, rep = acquire(
            tcats, ratio, cfg.data.total, cfg.train.seed, cfg.data.allow_oversample, cats
        )
        rows = eligible[pick]
        report["acquired"] = rep.to_dict()
    elif cfg.data.total is not None:
        rng = np.random.default_rng([cfg.train.seed, 0xACC])
        rows = np.sort(rng.choice(eligible, min(cfg.data.total, eligible.size), replace=False))
    ds = PairedCropDataset(
        table,
        cats,
        split=None,
        size=cfg.data.size,
        augment=cfg.data.augment,
        s3=s3,
        manifest_uri=muri,
        rows=rows,
        seed=cfg.train.seed,
        cache_items=cfg.data.cache_items,
        self_pair_share=cfg.data.self_pair_share,
        degrade=cfg.data.degrade,
    )
    report["rows"] = len(ds)
    report["counts"] = {
        n: int((ds.categories_array() == i).sum()) for i, n in enumerate(cats.names)
    }
    report["pairing"] = ds.pairing_report()
    return ds, report


def build_sampler(cfg: Any, ds: Any, rank: int, world: int) -> Any:
    """Ratio sampler (default) or plain shuffled batches (``train.shuffle``)."""
    from beardnet.data.sampler import RatioBatchSampler, ShuffleBatchSampler

    if cfg.train.shuffle:
        return ShuffleBatchSampler(
            len(ds),
            cfg.batch_size(),
            cfg.train.num_batches,
            rank=rank,
            world_size=world,
            seed=cfg.train.seed,
            keys=ds.row_keys(),
        )
    return RatioBatchSampler(
        ds.categories_array(),
        cfg.batch_counts(),
        cfg.train.num_batches,
        rank=rank,
        world_size=world,
        seed=cfg.train.seed,
        names=cfg.data.cats,
        keys=ds.row_keys(),
    )


def make_loader(cfg: Any, ds: Any, sampler: Any) -> Any:
    """A DataLoader over ``sampler``'s batches, each index tagged with its epoch."""
    from torch.utils.data import DataLoader

    return DataLoader(
        ds,
        batch_sampler=EpochBatches(sampler),
        num_workers=cfg.data.loader_workers,
        collate_fn=collate,
        persistent_workers=cfg.data.loader_workers > 0,
    )


def val_pairs(cfg: Any, s3: Any) -> Any:
    """The validation dataset (no augmentation, no self-pairs), or None when there is none."""
    from beardnet.data.paired import PairedCropDataset

    if cfg.data.val_samples <= 0:
        return None
    try:
        return PairedCropDataset(
            cfg.data.uri,
            cfg.data.cats,
            split=cfg.data.val_split,
            size=cfg.data.size,
            augment=False,
            s3=s3,
            seed=cfg.train.seed + 1,
        )
    except ValueError:
        return None


def _node_id() -> str | None:
    """This worker's Ray node id (None outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - not in a Ray worker
        return None


def record_batch(uri: str, rank: int, step: int, batch: dict[str, Any], s3: Any) -> None:
    """Diagnostics: write the indices, styles, epoch and Ray node id of the batch this rank
    trained on at ``step`` to ``URI/rank<r>/<step>.<pid>.json`` (one object per attempt, so a
    step trained twice around a restart shows both)."""
    import json
    import os

    from beardnet import storage

    body = {
        "rank": rank,
        "step": step,
        "epoch": int(batch["epoch"][0]),
        "index": [int(v) for v in batch["index"]],
        "style": [int(v) for v in batch["style"]],
        "node_id": _node_id(),
    }
    name = storage.join(uri, f"rank{rank}", f"{step:08d}.{os.getpid()}.json")
    storage.write_bytes(name, json.dumps(body).encode(), s3=s3)
