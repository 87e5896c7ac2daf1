"""A synthetic crop set's identities with every category loaded as arrays (shared by the
evaluation runner and the style classifier's training, so neither imports the other)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from beardnet.storage import S3Settings

MANIFEST_NAME = "manifest.parquet"


def manifest_uri_of(data: str) -> str:
    """``data`` is a crop set folder or its manifest file; returns the manifest URI."""
    from beardnet import storage

    if data.endswith(".parquet"):
        return data
    return storage.join(data, MANIFEST_NAME)


def _decode(data: bytes, grey: bool = False) -> np.ndarray:
    import cv2

    arr = cv2.imdecode(
        np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    )
    if arr is None:
        raise ValueError("cannot decode image")
    return arr if grey else arr[..., ::-1].copy()


@dataclass
class IdentitySet:
    """Every category of some identities: images uint8 [N,C,H,W,3], beard masks bool [N,C,H,W]."""

    identities: list[str]
    categories: tuple[str, ...]
    images: np.ndarray
    beard: np.ndarray


def load_identities(
    data: str,
    split: str = "test",
    max_identities: int | None = None,
    categories: tuple[str, ...] | None = None,
    size: int | None = None,
    s3: S3Settings | None = None,
    threads: int = 8,
) -> IdentitySet:
    """Load the identities of ``split`` (``"all"``: every row) that have every category.

    ``max_identities`` keeps the first ones in sorted order (deterministic). Crops are resized
    to ``size`` when given and different.
    """
    import cv2

    from beardnet import storage
    from beardnet.categories import DEFAULT, Categories
    from beardnet.manifest import read_manifest, resolve_uri

    cats = Categories(tuple(categories)) if categories else DEFAULT
    muri = manifest_uri_of(data)
    t = read_manifest(muri, cats, s3=s3).to_pandas()
    if split != "all":
        t = t[t["split"] == split]
    if t.empty:
        raise ValueError(f"{muri}: no rows in split {split!r}")
    if t["beard_mask_uri"].isna().any():
        raise ValueError(f"{muri}: evaluation needs beard masks (beard_mask_uri) on every row")
    full = t.groupby("identity")["category"].nunique()
    ids = sorted(full[full == len(cats)].index.tolist())
    if not ids:
        raise ValueError(f"{muri}: no identity of split {split!r} has all {len(cats)} categories")
    if max_identities:
        ids = ids[:max_identities]
    t = t[t["identity"].isin(ids)]
    jobs = []
    pos = {i: k for k, i in enumerate(ids)}
    for row in t.itertuples(index=False):
        jobs.append(
            (
                pos[row.identity],
                cats.index(row.category),
                resolve_uri(muri, row.uri),
                resolve_uri(muri, row.beard_mask_uri),
            )
        )

    def fetch(job):
        i, c, u, m = job
        img = _decode(storage.read_bytes(u, s3=s3))
        mask = _decode(storage.read_bytes(m, s3=s3), grey=True)
        if size and img.shape[0] != size:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
        return i, c, img, mask > 127

    with ThreadPoolExecutor(max(1, threads)) as ex:
        got = list(ex.map(fetch, jobs))
    h, w = got[0][2].shape[:2]
    images = np.zeros((len(ids), len(cats), h, w, 3), np.uint8)
    beard = np.zeros((len(ids), len(cats), h, w), bool)
    for i, c, img, mask in got:
        images[i, c] = img
        beard[i, c] = mask
    return IdentitySet(ids, cats.names, images, beard)
