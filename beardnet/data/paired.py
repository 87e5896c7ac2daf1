"""Paired crop dataset: (source image of an identity, target style, target image, masks).

Index ``i`` is a *target* row of the manifest (its category is the target style, the one the
category and sampling ratios count; :meth:`PairedCropDataset.categories_array` gives them to the
sampler). The source is another row of the same identity with a different category, drawn by a
generator seeded from ``(seed, epoch, i)``, so a sample is a pure function of those. With
probability ``self_pair_share`` the source is the target itself (a "leave it alone" pair); an
identity with no row of another category pairs with itself too (a *forced* self-pair, counted
by :meth:`PairedCropDataset.pairing_report`). An optional boolean manifest column ``target``
marks rows that may be targets; rows with ``target = false`` only serve as sources (a source
set rendered with every style per identity whose *targets* follow a skewed distribution).

The epoch reaches the sample with the index: ``ds[(epoch, i)]`` (what
:class:`beardnet.train.data.EpochBatches` yields), so DataLoader worker processes, persistent
or not, re-draw pairing and augmentation every epoch; ``ds[i]`` uses :meth:`set_epoch`'s epoch.

Images and masks are read through :mod:`beardnet.storage` (local or S3), decoded with OpenCV
(RGB), resized to ``size`` when needed and kept in a small per-worker LRU cache (``preload=True``
reads every row once up front). A missing beard mask is empty; a missing face mask falls back to
the ``face_box`` rectangle, else the whole crop. With ``degrade`` (a probability), a pair is also
made to look like a small face in a JPEG photo (:func:`degrade_like_a_small_photo`).
With ``augment``, one draw of horizontal flip,
scale/shift jitter (±5 % scale, ±3 % shift) and colour jitter (brightness, contrast, per-channel
gain) is applied identically to source, target and masks.

``__getitem__`` returns ``src``, ``tgt`` (float32 ``[3,H,W]`` in 0..1), ``style`` (int64),
``beard_src``, ``beard_tgt``, ``face`` (float32 ``[1,H,W]``), ``src_style``, ``index`` and
``epoch``.
An acquired manifest may carry a ``repeat`` column (oversampled rows); each row then appears
``repeat`` times in the index.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from beardnet.categories import DEFAULT, Categories

if TYPE_CHECKING:
    import pyarrow as pa

    from beardnet.storage import S3Settings


def manifest_path(uri: str) -> str:
    """A crop set's folder or its manifest file -> the manifest file's URI."""
    from beardnet import storage

    return uri if uri.endswith(".parquet") else storage.join(uri, "manifest.parquet")


class PairedCropDataset:
    """Map-style dataset of paired crops (see module docstring)."""

    def __init__(
        self,
        manifest: str | pa.Table,
        categories: Categories = DEFAULT,
        split: str | None = "train",
        size: int = 128,
        augment: bool = True,
        s3: S3Settings | None = None,
        *,
        manifest_uri: str | None = None,
        rows: np.ndarray | None = None,
        preload: bool = False,
        seed: int = 0,
        cache_items: int = 4096,
        self_pair_share: float = 0.0,
        degrade: float = 0.0,
    ) -> None:
        from beardnet.manifest import read_manifest, validate

        if isinstance(manifest, str):
            manifest_uri = manifest_path(manifest)
            table = read_manifest(manifest_uri, categories, s3=s3)
        else:
            table = validate(manifest, categories, manifest_uri=manifest_uri)
        if split is not None:
            keep = np.asarray(table.column("split").to_numpy(zero_copy_only=False)) == split
            table = table.filter(keep)
        if table.num_rows == 0:
            raise ValueError(f"paired dataset: no rows with split={split!r}")
        self.categories = categories
        self.size = int(size)
        self.augment = bool(augment)
        self.s3 = s3
        self.seed = int(seed)
        if not 0.0 <= self_pair_share <= 1.0:
            raise ValueError(f"self_pair_share must be in 0..1, got {self_pair_share}")
        self.self_pair_share = float(self_pair_share)
        if not 0.0 <= degrade <= 1.0:
            raise ValueError(f"degrade must be in 0..1, got {degrade}")
        self.degrade = float(degrade)
        self.epoch = 0
        self.manifest_uri = manifest_uri
        self._cache_items = int(cache_items)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

        def col(name: str) -> list[Any]:
            return table.column(name).to_pylist()

        self._uri = [self._abs(u) for u in col("uri")]
        self._beard = [None if u is None else self._abs(u) for u in col("beard_mask_uri")]
        self._face = [None if u is None else self._abs(u) for u in col("face_mask_uri")]
        self._box = col("face_box")
        self._cat = categories.indices(col("category")).astype(np.int64)
        ident = np.asarray(col("identity"), dtype=object).astype(str)
        _, self._ident = np.unique(ident, return_inverse=True)
        self._order = np.argsort(self._ident, kind="stable")
        counts = np.bincount(self._ident)
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        # index -> target row (acquired selection, with repeats)
        if rows is None:
            rows = target_rows(table)
            if "repeat" in table.column_names:
                rep = np.asarray(table.column("repeat").to_numpy(zero_copy_only=False), np.int64)
                rows = np.repeat(rows, rep[rows])
        self._rows = np.asarray(rows, dtype=np.int64)
        if self._rows.size and (self._rows.min() < 0 or self._rows.max() >= table.num_rows):
            raise IndexError("paired dataset: rows out of range of the split")
        if preload:
            for r in np.unique(self._rows):
                for g in self._group(int(r)):
                    self._image(int(g))
                    self._masks(int(g))

    # -- helpers ----------------------------------------------------------------------------
    def _abs(self, u: str) -> str:
        from beardnet.manifest import is_absolute_uri, resolve_uri

        if is_absolute_uri(u) or self.manifest_uri is None:
            return u
        return resolve_uri(self.manifest_uri, u)

    def _group(self, row: int) -> np.ndarray:
        k = self._ident[row]
        return self._order[self._starts[k] : self._starts[k + 1]]

    def _read(self, uri: str, flags: int) -> np.ndarray:
        import cv2

        from beardnet import storage

        key = f"{flags}:{uri}"
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        data = storage.read_bytes(uri, s3=self.s3)
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
        if arr is None:
            raise ValueError(f"cannot decode image {uri}")
        if arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
        if arr.shape[:2] != (self.size, self.size):
            interp = cv2.INTER_AREA if arr.shape[0] > self.size else cv2.INTER_LINEAR
            arr = cv2.resize(arr, (self.size, self.size), interpolation=interp)
        self._cache[key] = arr
        if len(self._cache) > self._cache_items:
            self._cache.popitem(last=False)
        return arr

    def _image(self, row: int) -> np.ndarray:
        import cv2

        return self._read(self._uri[row], cv2.IMREAD_COLOR)

    def _masks(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        s = self.size
        b = self._beard[row]
        beard = (
            np.zeros((s, s), np.float32)
            if b is None
            else self._read(b, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
        )
        f = self._face[row]
        if f is not None:
            face = self._read(f, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
        elif self._box[row] is not None:
            face = np.zeros((s, s), np.float32)
            x0, y0, x1, y1 = (float(v) for v in self._box[row])
            face[max(0, int(y0)) : int(np.ceil(y1)), max(0, int(x0)) : int(np.ceil(x1))] = 1.0
        else:
            face = np.ones((s, s), np.float32)
        return beard, face

    # -- public API -------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._rows.size)

    def categories_array(self) -> np.ndarray:
        """Target category index per dataset index (int64), for the ratio sampler."""
        return self._cat[self._rows]

    def row_keys(self) -> np.ndarray:
        """Manifest row per dataset index (oversampled rows repeat): the sampler keeps a
        row out of a batch that already holds it."""
        return self._rows.copy()

    def pairing_report(self) -> dict[str, Any]:
        """Self-pairs: the configured share, and the indices that must pair with themselves
        because their identity has no row of another category (same every epoch)."""
        key = self._ident.astype(np.int64) * len(self.categories) + self._cat
        per_key = np.bincount(key, minlength=int(key.max()) + 1)
        others = np.bincount(self._ident)[self._ident] - per_key[key]
        forced = int((others[self._rows] == 0).sum())
        return {
            "self_pair_share": self.self_pair_share,
            "forced_self_pairs": forced,
            "expected_self_pairs_per_epoch": round(
                forced + self.self_pair_share * (len(self) - forced), 1
            ),
            "pairs_per_epoch": len(self),
        }

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (changes source choice and augmentation draws)."""
        self.epoch = int(epoch)

    def pair(self, i: int, epoch: int | None = None) -> tuple[int, int]:
        """(source row, target row) of index ``i`` in ``epoch``."""
        tgt = int(self._rows[i])
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, int(i)])
        group = self._group(tgt)
        cand = group[self._cat[group] != self._cat[tgt]]
        if rng.random() < self.self_pair_share or not len(cand):
            return tgt, tgt
        return int(cand[rng.integers(len(cand))]), tgt

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        import torch

        epoch, i = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (self.epoch, int(key))
        if not 0 <= i < len(self):
            raise IndexError(i)
        src_row, tgt_row = self.pair(i, epoch)
        rng = np.random.default_rng([self.seed, epoch, i, 1])
        src = self._image(src_row).astype(np.float32) / 255.0
        tgt = self._image(tgt_row).astype(np.float32) / 255.0
        bs, _ = self._masks(src_row)
        bt, face = self._masks(tgt_row)
        if self.augment:
            src, tgt, bs, bt, face = _augment(rng, [src, tgt], [bs, bt, face])
        if self.degrade and rng.random() < self.degrade:
            src, tgt = degrade_like_a_small_photo(rng, [src, tgt])
        return {
            "src": torch.from_numpy(np.ascontiguousarray(src.transpose(2, 0, 1))),
            "tgt": torch.from_numpy(np.ascontiguousarray(tgt.transpose(2, 0, 1))),
            "style": torch.tensor(int(self._cat[tgt_row]), dtype=torch.long),
            "src_style": torch.tensor(int(self._cat[src_row]), dtype=torch.long),
            "beard_src": torch.from_numpy(np.ascontiguousarray(bs[None])),
            "beard_tgt": torch.from_numpy(np.ascontiguousarray(bt[None])),
            "face": torch.from_numpy(np.ascontiguousarray(face[None])),
            "index": torch.tensor(i, dtype=torch.long),
            "epoch": torch.tensor(epoch, dtype=torch.long),
        }


def target_rows(table: pa.Table) -> np.ndarray:
    """Rows that may be targets: all, or those whose optional ``target`` column is true."""
    if "target" not in table.column_names:
        return np.arange(table.num_rows)
    flags = table.column("target").to_numpy(zero_copy_only=False)
    return np.flatnonzero(np.asarray(flags, dtype=object) == True)


def degrade_like_a_small_photo(
    rng: np.random.Generator, images: list[np.ndarray]
) -> list[np.ndarray]:
    """One draw of what a face 40-110 px wide in a JPEG photo looks like once aligned to the
    crop: down to that width and back up (bilinear), then JPEG at quality 55-92; the same draw
    for every image (float RGB 0..1), so a pair stays a pair."""
    import cv2

    s = images[0].shape[0]
    small = int(rng.integers(40, 111))
    quality = int(rng.integers(55, 93))
    out = []
    for im in images:
        u8 = np.clip(np.rint(im * 255.0), 0, 255).astype(np.uint8)
        if small < s:
            u8 = cv2.resize(u8, (small, small), interpolation=cv2.INTER_AREA)
            u8 = cv2.resize(u8, (s, s), interpolation=cv2.INTER_LINEAR)
        ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            u8 = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        out.append(np.ascontiguousarray(u8).astype(np.float32) / 255.0)
    return out


def _augment(
    rng: np.random.Generator, images: list[np.ndarray], masks: list[np.ndarray]
) -> list[np.ndarray]:
    """One draw of flip, scale/shift and colour jitter applied to every image and mask alike."""
    import cv2

    s = images[0].shape[0]
    flip = rng.random() < 0.5
    scale = 1.0 + rng.uniform(-0.05, 0.05)
    dx, dy = rng.uniform(-0.03, 0.03, size=2) * s
    bright = rng.uniform(-0.06, 0.06)
    contrast = 1.0 + rng.uniform(-0.08, 0.08)
    gain = 1.0 + rng.uniform(-0.03, 0.03, size=3).astype(np.float32)
    c = (s - 1) / 2.0
    m = np.array([[scale, 0, (1 - scale) * c + dx], [0, scale, (1 - scale) * c + dy]], np.float32)
    out: list[np.ndarray] = []
    for im in images:
        if flip:
            im = im[:, ::-1]
        im = cv2.warpAffine(np.ascontiguousarray(im), m, (s, s), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT101)
        im = (im - 0.5) * contrast + 0.5 + bright
        out.append(np.clip(im * gain, 0.0, 1.0).astype(np.float32))
    for mk in masks:
        if flip:
            mk = mk[:, ::-1]
        out.append(
            cv2.warpAffine(np.ascontiguousarray(mk), m, (s, s), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        )
    return out
