"""Write synthetic datasets to any URI (local folder or ``s3://``), over Ray for large counts.

Crops layout (the training manifest)::

    OUT/manifest.parquet
    OUT/images/<identity>/<category>.png
    OUT/masks/<identity>/<category>_beard.png     uint8 0/255, one channel
    OUT/masks/<identity>/<category>_face.png

Identity ``i`` (0-based) of a dataset written with ``seed`` is rendered from
``identity_seed = seed * 1_000_000 + i`` and named ``id<identity_seed>``; the split is assigned
per identity from a permutation seeded by ``seed`` (80 / 10 / 10, at least one val and one test
identity once there are 3 or more), so every category of an identity lands in the same split.

Scenes layout::

    OUT/manifest.parquet      uri, width, height, n_faces, faces (JSON list of {box, style,
                              landmarks, identity_seed}), format
    OUT/images/scene_00000.jpg   (every 4th scene is a PNG)
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

import numpy as np

from beardnet.categories import DEFAULT_CATEGORIES
from beardnet.storage import S3Settings

#: Above this many identities (or scenes) the writers fan out over Ray by default.
RAY_THRESHOLD = 200
#: Identities (scenes) per Ray task.
CHUNK = 25
IDENTITY_STRIDE = 1_000_000


def identity_seed(seed: int, index: int) -> int:
    """The renderer seed of identity ``index`` in a dataset written with ``seed``."""
    return int(seed) * IDENTITY_STRIDE + int(index)


def assign_splits(n: int, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> list[str]:
    """Deterministic per-identity split labels (train/val/test) for ``n`` identities."""
    n_val = round(n * fractions[1])
    n_test = round(n * fractions[2])
    if n >= 3:
        n_val, n_test = max(1, n_val), max(1, n_test)
    n_test = min(n_test, n)
    n_val = min(n_val, n - n_test)
    labels = np.array(["train"] * n, dtype=object)
    order = np.random.default_rng([int(seed) & 0xFFFFFFFF, 4242]).permutation(n)
    labels[order[:n_val]] = "val"
    labels[order[n_val : n_val + n_test]] = "test"
    return [str(x) for x in labels]


def _png(img: np.ndarray) -> bytes:
    from beardnet.sheets import encode_png

    return encode_png(img)


def _box(mask: np.ndarray) -> list[float] | None:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


class _ObjectWriter:
    """Writes objects on a thread pool; leaving the ``with`` block waits for every write (and
    raises the first failure). ``nbytes`` counts what was handed over."""

    def __init__(self, s3: S3Settings | None, threads: int = 8) -> None:
        self.s3 = s3
        self.nbytes = 0
        self._pool = ThreadPoolExecutor(threads)
        self._futures: list[Any] = []

    def put(self, uri: str, data: bytes) -> None:
        from beardnet import storage

        self.nbytes += len(data)
        self._futures.append(self._pool.submit(storage.write_bytes, uri, data, self.s3))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is None:
                for f in self._futures:
                    f.result()
        finally:
            self._pool.shutdown(wait=True)


def _crops_chunk(
    out_uri: str,
    indices: Sequence[int],
    seed: int,
    size: int,
    splits: dict[int, str],
    s3: S3Settings | None,
    categories: tuple[str, ...],
) -> tuple[list[dict[str, Any]], int]:
    """Render and write identities ``indices``; returns (manifest rows, bytes written)."""
    from beardnet.storage import join
    from beardnet.synth.render import render_identity

    rows: list[dict[str, Any]] = []
    with _ObjectWriter(s3) as writer:
        for i in indices:
            iseed = identity_seed(seed, i)
            ident = f"id{iseed}"
            crops = render_identity(iseed, size, categories)
            for cat in categories:
                c = crops[cat]
                rel_img = f"images/{ident}/{cat}.png"
                rel_b = f"masks/{ident}/{cat}_beard.png"
                rel_f = f"masks/{ident}/{cat}_face.png"
                for rel, data in (
                    (rel_img, _png(c.image)),
                    (rel_b, _png(c.beard_mask.astype(np.uint8) * 255)),
                    (rel_f, _png(c.face_mask.astype(np.uint8) * 255)),
                ):
                    writer.put(join(out_uri, rel), data)
                rows.append(
                    {
                        "uri": rel_img,
                        "identity": ident,
                        "category": cat,
                        "beard_mask_uri": rel_b,
                        "face_mask_uri": rel_f,
                        "face_box": _box(c.face_mask),
                        "split": splits[i],
                    }
                )
    return rows, writer.nbytes


def _fan_out(
    fn: Callable[..., tuple[list[dict[str, Any]], int]],
    calls: list[tuple],
    s3: S3Settings | None,
) -> tuple[list[dict[str, Any]], int]:
    """Run ``fn(*call)`` for every call as Ray tasks; results concatenated in call order."""
    import ray

    from beardnet.raysession import init_ray

    init_ray(s3=s3)
    remote = ray.remote(num_cpus=1, max_retries=2)(fn)
    refs = [remote.remote(*call) for call in calls]
    rows: list[dict[str, Any]] = []
    nbytes = 0
    for r, b in ray.get(refs):
        rows.extend(r)
        nbytes += b
    return rows, nbytes


def write_crops_dataset(
    out_uri: str,
    identities: int,
    size: int = 128,
    seed: int = 0,
    s3: S3Settings | None = None,
    use_ray: bool | None = None,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
) -> dict[str, Any]:
    """Render ``identities`` identities in every category and write the crops dataset.

    ``use_ray=None`` uses Ray above :data:`RAY_THRESHOLD` identities. Returns a summary:
    ``{"uri", "manifest", "identities", "images", "per_category", "per_split", "bytes",
    "seconds", "images_per_s", "ray"}``.
    """
    from beardnet.manifest import write_manifest
    from beardnet.storage import join

    if identities < 1:
        raise ValueError("identities must be >= 1")
    if size < 32:
        raise ValueError("size must be >= 32 pixels")
    cats = tuple(categories)
    for c in cats:
        if c not in DEFAULT_CATEGORIES:
            raise ValueError(f"unknown category {c!r}; the renderer draws {DEFAULT_CATEGORIES}")
    out_uri = out_uri.rstrip("/")
    t0 = time.perf_counter()
    split_list = assign_splits(identities, seed)
    splits = dict(enumerate(split_list))
    ray_on = identities > RAY_THRESHOLD if use_ray is None else bool(use_ray)
    if ray_on:
        chunks = [list(range(a, min(a + CHUNK, identities))) for a in range(0, identities, CHUNK)]
        calls = [(out_uri, c, seed, size, {i: splits[i] for i in c}, s3, cats) for c in chunks]
        rows, nbytes = _fan_out(_crops_chunk, calls, s3)
    else:
        rows, nbytes = _crops_chunk(out_uri, range(identities), seed, size, splits, s3, cats)
    manifest_uri = join(out_uri, "manifest.parquet")
    write_manifest(rows, manifest_uri, s3=s3)
    dt = time.perf_counter() - t0
    return {
        "uri": out_uri,
        "manifest": manifest_uri,
        "identities": identities,
        "images": len(rows),
        "size": size,
        "seed": seed,
        "per_category": dict(Counter(r["category"] for r in rows)),
        "per_split": dict(Counter(split_list)),
        "bytes": nbytes,
        "seconds": round(dt, 3),
        "images_per_s": round(len(rows) / dt, 2) if dt > 0 else None,
        "ray": ray_on,
    }


def _scenes_chunk(
    out_uri: str,
    indices: Sequence[int],
    seed: int,
    min_size: int,
    max_size: int,
    s3: S3Settings | None,
    png_every: int,
) -> tuple[list[dict[str, Any]], int]:
    import cv2

    from beardnet.storage import join
    from beardnet.synth.scenes import render_scene

    rows: list[dict[str, Any]] = []
    with _ObjectWriter(s3) as writer:
        for i in indices:
            sc = render_scene(identity_seed(seed, i), min_size=min_size, max_size=max_size)
            png = png_every > 0 and i % png_every == png_every - 1
            ext = "png" if png else "jpg"
            bgr = np.ascontiguousarray(sc.image[..., ::-1])
            if png:
                ok, buf = cv2.imencode(".png", bgr)
            else:
                ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
            if not ok:
                raise RuntimeError(f"encoding scene {i} failed")
            data = buf.tobytes()
            rel = f"images/scene_{i:05d}.{ext}"
            writer.put(join(out_uri, rel), data)
            h, w = sc.image.shape[:2]
            rows.append(
                {
                    "uri": rel,
                    "width": w,
                    "height": h,
                    "n_faces": len(sc.faces),
                    "faces": json.dumps(sc.faces),
                    "format": ext,
                }
            )
    return rows, writer.nbytes


def write_scenes_dataset(
    out_uri: str,
    count: int,
    seed: int = 0,
    min_size: int = 256,
    max_size: int = 1024,
    s3: S3Settings | None = None,
    use_ray: bool | None = None,
    png_every: int = 4,
) -> dict[str, Any]:
    """Render ``count`` photo-like scenes and write them with a manifest.

    Images are JPEG (quality 92) except every ``png_every``-th, which is PNG. The manifest
    records each face's ``box`` [x0, y0, x1, y1] (face-mask bbox in pixels), ``style`` and
    landmarks as a JSON list. Returns a summary like :func:`write_crops_dataset`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beardnet import storage
    from beardnet.storage import join

    if count < 1:
        raise ValueError("count must be >= 1")
    if not 64 <= min_size <= max_size:
        raise ValueError("need 64 <= min_size <= max_size")
    out_uri = out_uri.rstrip("/")
    t0 = time.perf_counter()
    ray_on = count > RAY_THRESHOLD if use_ray is None else bool(use_ray)
    args = (out_uri, seed, min_size, max_size, s3, png_every)
    if ray_on:
        chunks = [list(range(a, min(a + CHUNK, count))) for a in range(0, count, CHUNK)]
        rows, nbytes = _fan_out(_scenes_chunk, [(out_uri, c, *args[1:]) for c in chunks], s3)
    else:
        rows, nbytes = _scenes_chunk(out_uri, list(range(count)), *args[1:])
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("uri", pa.string()),
                ("width", pa.int32()),
                ("height", pa.int32()),
                ("n_faces", pa.int32()),
                ("faces", pa.string()),
                ("format", pa.string()),
            ]
        ),
    )
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd")
    manifest_uri = join(out_uri, "manifest.parquet")
    storage.write_bytes(manifest_uri, buf.getvalue().to_pybytes(), s3=s3)
    styles: Counter[str] = Counter()
    for r in rows:
        for f in json.loads(r["faces"]):
            styles[f["style"]] += 1
    dt = time.perf_counter() - t0
    return {
        "uri": out_uri,
        "manifest": manifest_uri,
        "scenes": len(rows),
        "faces": sum(r["n_faces"] for r in rows),
        "faces_per_style": dict(styles),
        "scenes_per_face_count": dict(Counter(r["n_faces"] for r in rows)),
        "bytes": nbytes,
        "seconds": round(dt, 3),
        "images_per_s": round(len(rows) / dt, 2) if dt > 0 else None,
        "ray": ray_on,
    }


def read_scene_faces(manifest_row_faces: str) -> list[dict[str, Any]]:
    """Parse the ``faces`` column of a scenes manifest row."""
    return list(json.loads(manifest_row_faces))
