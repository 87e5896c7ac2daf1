"""The training manifest: a Parquet table, one row per image.

Columns: ``uri``, ``identity``, ``category``, ``split`` (required, non-null);
``beard_mask_uri``, ``face_mask_uri`` (nullable strings), ``face_box`` (nullable list of 4
floats ``x0, y0, x1, y1`` in pixels). Missing optional columns are added as nulls; extra
columns are kept. URIs are relative to the manifest's folder or absolute (``s3://``,
``file://``, ``/path``); :func:`resolve_uri` makes them absolute. Validation is vectorised
(pyarrow/numpy) and every error names the first offending row.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from beardnet import storage
from beardnet.categories import DEFAULT, Categories
from beardnet.storage import S3Settings

SPLITS: tuple[str, ...] = ("train", "val", "test")
REQUIRED: tuple[str, ...] = ("uri", "identity", "category", "split")
OPTIONAL: tuple[str, ...] = ("beard_mask_uri", "face_mask_uri", "face_box")
COLUMNS: tuple[str, ...] = ("uri", "identity", "category", "beard_mask_uri", "face_mask_uri",
                            "face_box", "split")
FACE_BOX_TYPE = pa.list_(pa.float32())
SCHEMA = pa.schema(
    [
        ("uri", pa.string()),
        ("identity", pa.string()),
        ("category", pa.string()),
        ("beard_mask_uri", pa.string()),
        ("face_mask_uri", pa.string()),
        ("face_box", FACE_BOX_TYPE),
        ("split", pa.string()),
    ]
)


class ManifestError(ValueError):
    """A manifest that breaks the contract; the message names the row (or column)."""


def is_absolute_uri(uri: str) -> bool:
    """``s3://``, ``file://`` or an absolute local path."""
    return storage.is_s3(uri) or uri.startswith("file://") or os.path.isabs(uri)


def resolve_uri(manifest_uri: str, rel: str) -> str:
    """Absolute URI of ``rel`` as written in the manifest at ``manifest_uri``."""
    if is_absolute_uri(rel):
        return rel
    return storage.join(storage.parent(manifest_uri), rel)


def _where(row: int, uris: pa.ChunkedArray | pa.Array | None) -> str:
    if uris is not None and 0 <= row < len(uris):
        return f"row {row} (uri={uris[row].as_py()!r})"
    return f"row {row}"


def _to_table(table_or_rows: pa.Table | Iterable[Mapping[str, Any]] | Any) -> pa.Table:
    if isinstance(table_or_rows, pa.Table):
        return table_or_rows
    if hasattr(table_or_rows, "to_arrow"):  # e.g. a Ray Dataset-like or polars frame
        return table_or_rows.to_arrow()
    if hasattr(table_or_rows, "columns") and hasattr(table_or_rows, "to_dict"):  # pandas
        return pa.Table.from_pandas(table_or_rows, preserve_index=False)
    rows = list(table_or_rows)
    return pa.Table.from_pylist(rows)


def normalize(table: pa.Table, source: str = "manifest") -> pa.Table:
    """Add missing optional columns as nulls and cast the known ones to the canonical types."""
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise ManifestError(
            f"{source}: missing required column(s) {missing}; has {table.column_names}"
        )
    n = table.num_rows
    for c in OPTIONAL:
        if c not in table.column_names:
            typ = SCHEMA.field(c).type
            table = table.append_column(pa.field(c, typ), pa.nulls(n, typ))
    cols = {}
    for f in SCHEMA:
        col = table.column(f.name)
        if col.type != f.type:
            if f.name == "face_box" and pa.types.is_null(col.type):
                col = pa.chunked_array([pa.nulls(n, f.type)])
            else:
                try:
                    col = col.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise ManifestError(
                        f"{source}: column {f.name!r} has type {col.type}, expected {f.type}: {exc}"
                    ) from None
        cols[f.name] = col
    extra = [c for c in table.column_names if c not in cols]
    names = list(COLUMNS) + extra
    arrays = [cols[c] if c in cols else table.column(c) for c in names]
    return pa.Table.from_arrays(arrays, names=names)


def _first_true(mask: np.ndarray) -> int:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if len(idx) else -1


def validate(
    table: pa.Table,
    categories: Categories = DEFAULT,
    *,
    manifest_uri: str | None = None,
    check_uris: bool = False,
    s3: S3Settings | None = None,
) -> pa.Table:
    """Check a manifest table and return it normalised; :class:`ManifestError` names the row.

    Checks: required columns, nulls in required columns, unknown categories, bad splits,
    duplicate ``uri``, ``face_box`` not 4 finite floats with ``x1 > x0`` and ``y1 > y0``, and,
    with ``check_uris``, that every image and mask URI exists (relative ones resolved against
    ``manifest_uri``).
    """
    source = manifest_uri or "manifest"
    table = normalize(table, source)
    uris = table.column("uri")
    for c in REQUIRED:
        nulls = pc.is_null(table.column(c)).to_numpy(zero_copy_only=False)
        r = _first_true(nulls)
        if r >= 0:
            raise ManifestError(f"{source}: {_where(r, uris)}: {c} is null")
        empty = pc.equal(pc.utf8_length(table.column(c)), 0).to_numpy(zero_copy_only=False)
        r = _first_true(empty)
        if r >= 0:
            raise ManifestError(f"{source}: {_where(r, uris)}: {c} is empty")

    bad = pc.invert(pc.is_in(table.column("category"), pa.array(list(categories.names))))
    r = _first_true(bad.to_numpy(zero_copy_only=False))
    if r >= 0:
        cat = table.column("category")[r].as_py()
        raise ManifestError(
            f"{source}: {_where(r, uris)}: unknown category {cat!r}; "
            f"known: {', '.join(categories.names)}"
        )

    bad = pc.invert(pc.is_in(table.column("split"), pa.array(list(SPLITS))))
    r = _first_true(bad.to_numpy(zero_copy_only=False))
    if r >= 0:
        sp = table.column("split")[r].as_py()
        raise ManifestError(f"{source}: {_where(r, uris)}: bad split {sp!r}; use {list(SPLITS)}")

    if table.num_rows:
        arr = uris.combine_chunks() if isinstance(uris, pa.ChunkedArray) else uris
        codes = pc.dictionary_encode(arr).indices.to_numpy(zero_copy_only=False)
        counts = np.bincount(codes)
        if counts.max() > 1:
            dup = np.flatnonzero(counts[codes] > 1)
            first = int(dup[0])
            again = int(dup[1:][codes[dup[1:]] == codes[first]][0])
            raise ManifestError(
                f"{source}: {_where(again, uris)}: duplicate uri (first seen at row {first})"
            )

    _check_boxes(table, source, uris)
    if check_uris:
        check_uris_exist(table, manifest_uri or ".", s3=s3)
    return table


def _check_boxes(table: pa.Table, source: str, uris: pa.ChunkedArray) -> None:
    boxes = table.column("face_box").combine_chunks()
    valid = pc.is_valid(boxes).to_numpy(zero_copy_only=False)
    if not valid.any():
        return
    lengths = pc.list_value_length(boxes).fill_null(4).to_numpy(zero_copy_only=False)
    r = _first_true(valid & (lengths != 4))
    if r >= 0:
        raise ManifestError(
            f"{source}: {_where(r, uris)}: face_box must have 4 numbers (x0,y0,x1,y1), "
            f"got {boxes[r].as_py()}"
        )
    rows = np.flatnonzero(valid)
    flat = pc.list_flatten(boxes.take(pa.array(rows))).to_numpy(zero_copy_only=False)
    flat = np.asarray(flat, dtype=np.float64).reshape(-1, 4)
    bad = ~np.isfinite(flat).all(axis=1) | (flat[:, 2] <= flat[:, 0]) | (flat[:, 3] <= flat[:, 1])
    j = _first_true(bad)
    if j >= 0:
        r = int(rows[j])
        raise ManifestError(
            f"{source}: {_where(r, uris)}: bad face_box {boxes[r].as_py()} "
            "(need finite x0 < x1 and y0 < y1)"
        )


def check_uris_exist(table: pa.Table, manifest_uri: str, s3: S3Settings | None = None) -> None:
    """Raise :class:`ManifestError` for the first row whose image or mask does not exist.

    Everything under the manifest's folder is checked against one listing; other URIs one by
    one.
    """
    base = storage.parent(manifest_uri)
    listed = set(storage.list_keys(base, s3=s3)) if base else set()
    uris = table.column("uri")
    for col in ("uri", "beard_mask_uri", "face_mask_uri"):
        values = table.column(col).to_pylist()
        for r, v in enumerate(values):
            if v is None:
                continue
            if not is_absolute_uri(v):
                rel = v.removeprefix("./")
                if rel in listed:
                    continue
            absolute = resolve_uri(manifest_uri, v)
            if not storage.exists(absolute, s3=s3):
                raise ManifestError(
                    f"{manifest_uri}: {_where(r, uris)}: {col} points to a missing object "
                    f"{absolute}"
                )


def read_manifest(
    uri: str,
    categories: Categories = DEFAULT,
    check_uris: bool = False,
    s3: S3Settings | None = None,
) -> pa.Table:
    """Read and validate a manifest (local or S3)."""
    try:
        data = storage.read_bytes(uri, s3=s3)
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {uri}") from None
    try:
        table = pq.read_table(io.BytesIO(data))
    except pa.ArrowInvalid as exc:
        raise ManifestError(f"{uri}: not a Parquet file: {exc}") from None
    return validate(table, categories, manifest_uri=uri, check_uris=check_uris, s3=s3)


def write_manifest(
    table_or_rows: pa.Table | Sequence[Mapping[str, Any]] | Any,
    uri: str,
    categories: Categories = DEFAULT,
    *,
    check: bool = True,
    s3: S3Settings | None = None,
) -> pa.Table:
    """Validate (unless ``check=False``) and write a manifest as Parquet; returns the table."""
    table = _to_table(table_or_rows)
    table = (
        validate(table, categories, manifest_uri=uri) if check else normalize(table, uri)
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    storage.write_bytes(uri, buf.getvalue(), s3=s3)
    return table
