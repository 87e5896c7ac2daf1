"""The input listing as an Arrow table: ``key`` (relative), ``size``, ``etag``, ``mtime``.

Two sources:

- :func:`list_inputs`: the store itself, listed in parallel by prefix. S3: one delimited
  LIST at the input prefix (and one level below when it has few folders) finds the common
  prefixes; a thread pool lists each of them fully (paginated). Local folders: ``os.walk``.
- :func:`read_key_list`: a key list the user gives (``job.key_list``), e.g. an S3 Inventory
  report: Parquet or CSV with columns ``bucket, key, size, etag`` (``last_modified`` optional).
  A CSV with a header row is read by column names; a CSV without one is read as S3 Inventory
  writes it (``bucket, key, size, etag``, keys URL-encoded). Rows of other buckets or outside
  the input prefix are dropped; keys become relative to the input prefix.

Either way: keys in ``_beardnet/``, under the output (when nested in the input) or without a
wanted extension are dropped; unsafe keys are kept (the job records them as errors).
"""

from __future__ import annotations

import io
import os
import posixpath
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from beardnet.infer.keys import normalize_extensions

#: Threads listing S3 prefixes at once.
LIST_THREADS = 16


def listing_schema():
    import pyarrow as pa

    return pa.schema([("key", pa.string()), ("size", pa.int64()), ("etag", pa.string()),
                      ("mtime", pa.float64())])


def _table(keys: list, sizes: list, etags: list, mtimes: list):
    import pyarrow as pa

    s = listing_schema()
    return pa.Table.from_arrays([pa.array(keys, s.field("key").type),
                                 pa.array(sizes, pa.int64()), pa.array(etags, pa.string()),
                                 pa.array(mtimes, pa.float64())], schema=s)


def _filter(t, extensions: Sequence[str], exclude_prefix: str | None):
    """Drop meta keys, keys under ``exclude_prefix`` and keys without a wanted extension."""
    import pyarrow.compute as pc

    if t.num_rows == 0:
        return t
    keys = t["key"]
    keep = pc.invert(pc.or_(pc.equal(keys, "_beardnet"), pc.starts_with(keys, "_beardnet/")))
    if exclude_prefix:
        keep = pc.and_(keep, pc.invert(pc.starts_with(keys, exclude_prefix.rstrip("/") + "/")))
    exts = normalize_extensions(extensions)
    if exts:
        low = pc.utf8_lower(keys)
        has = pc.ends_with(low, exts[0])
        for e in exts[1:]:
            has = pc.or_(has, pc.ends_with(low, e))
        keep = pc.and_(keep, has)
    keep = pc.and_(keep, pc.invert(pc.ends_with(keys, "/")))
    keep = pc.and_(keep, pc.greater(pc.utf8_length(keys), 0))
    return t.filter(pc.fill_null(keep, False)).combine_chunks()


def _s3_list(client, bucket: str, prefix: str, delimiter: str | None):
    """All pages under ``prefix``: ``(objects, common prefixes)``."""
    objs, prefixes = [], []
    kw: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        kw["Delimiter"] = delimiter
    for page in client.get_paginator("list_objects_v2").paginate(**kw):
        objs.extend(page.get("Contents", []) or [])
        prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", []) or [])
    return objs, prefixes


def list_inputs(
    input_uri: str,
    extensions: Sequence[str],
    *,
    exclude_prefix: str | None = None,
    s3: Any = None,
    threads: int = LIST_THREADS,
):
    """The listing table of ``input_uri`` (see the module docstring)."""
    from beardnet import storage

    if storage.is_s3(input_uri):
        bucket, key = storage.split_s3(input_uri)
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        client = storage.boto3_client(s3)
        objs, prefixes = _s3_list(client, bucket, prefix, "/")
        with ThreadPoolExecutor(max(1, threads)) as ex:
            if 0 < len(prefixes) < threads:  # few folders: fan out one level deeper
                deeper = list(ex.map(lambda p: _s3_list(client, bucket, p, "/"), prefixes))
                prefixes = []
                for o, p in deeper:
                    objs.extend(o)
                    prefixes.extend(p)
            for o, _ in ex.map(lambda p: _s3_list(client, bucket, p, None), prefixes):
                objs.extend(o)
        n = len(prefix)
        objs.sort(key=lambda o: o["Key"])
        t = _table([o["Key"][n:] for o in objs], [int(o.get("Size", 0)) for o in objs],
                   [str(o.get("ETag", "")).strip('"') or None for o in objs],
                   [o["LastModified"].timestamp() if o.get("LastModified") else None
                    for o in objs])
        return _filter(t, extensions, exclude_prefix)
    root = storage.local_path(input_uri)
    keys, sizes, mtimes = [], [], []
    if os.path.isdir(root):
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            rel_dir = os.path.relpath(folder, root)
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                rel = name if rel_dir == "." else posixpath.join(*rel_dir.split(os.sep), name)
                try:
                    st = os.stat(os.path.join(folder, name))
                except OSError:
                    continue
                keys.append(rel)
                sizes.append(int(st.st_size))
                mtimes.append(float(st.st_mtime))
    order = sorted(range(len(keys)), key=keys.__getitem__)
    t = _table([keys[i] for i in order], [sizes[i] for i in order], [None] * len(keys),
               [mtimes[i] for i in order])
    return _filter(t, extensions, exclude_prefix)


_ALIASES = {"bucket": "bucket", "key": "key", "size": "size", "etag": "etag", "e_tag": "etag",
            "last_modified": "mtime", "last_modified_date": "mtime", "lastmodifieddate": "mtime"}


def read_key_list(
    uri: str,
    input_uri: str,
    extensions: Sequence[str],
    *,
    exclude_prefix: str | None = None,
    s3: Any = None,
):
    """The listing table from a user-given key list (see the module docstring)."""
    import urllib.parse

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from beardnet import storage

    data = storage.read_bytes(uri, s3=s3)
    if uri.lower().endswith(".csv") or uri.lower().endswith(".csv.gz"):
        first = data[:4096].split(b"\n", 1)[0].decode("utf-8", "replace").lower()
        header = "key" in [c.strip().strip('"') for c in first.split(",")]
        if header:
            t = pcsv.read_csv(io.BytesIO(data), convert_options=pcsv.ConvertOptions(
                column_types={"key": pa.string(), "etag": pa.string(), "bucket": pa.string()}))
            encoded = False
        else:  # S3 Inventory CSV: bucket, key, size, etag ..., keys URL-encoded
            names = ["bucket", "key", "size", "etag"]
            ncol = len(first.split(","))
            names = names[:ncol] + [f"extra{i}" for i in range(max(0, ncol - len(names)))]
            t = pcsv.read_csv(io.BytesIO(data),
                              read_options=pcsv.ReadOptions(column_names=names),
                              convert_options=pcsv.ConvertOptions(column_types={
                                  "bucket": pa.string(), "key": pa.string(),
                                  "etag": pa.string()}))
            encoded = True
    else:
        t = pq.read_table(io.BytesIO(data))
        encoded = False
    cols = {}
    for name in t.column_names:
        canon = _ALIASES.get(name.lower().replace(" ", "_"))
        if canon and canon not in cols:
            cols[canon] = t[name]
    if "key" not in cols:
        raise ValueError(f"key list {uri}: no 'key' column (columns: {t.column_names})")
    keys = cols["key"].cast(pa.string())
    if encoded:
        keys = pa.array([urllib.parse.unquote_plus(k) if k is not None else None
                         for k in keys.to_pylist()], pa.string())
    n = len(keys)
    if storage.is_s3(input_uri):
        bucket, key = storage.split_s3(input_uri)
    else:
        bucket, key = None, ""
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    keep = pc.starts_with(keys, prefix) if prefix else pa.array([True] * n)
    if bucket and "bucket" in cols:
        keep = pc.and_(keep, pc.equal(cols["bucket"].cast(pa.string()), bucket))
    keep = pc.fill_null(keep, False)
    rel = pc.utf8_slice_codeunits(keys, len(prefix)) if prefix else keys
    size = cols["size"].cast(pa.int64()) if "size" in cols else pa.nulls(n, pa.int64())
    etag = cols["etag"].cast(pa.string()) if "etag" in cols else pa.nulls(n, pa.string())
    etag = pc.replace_substring(etag, '"', "")
    if "mtime" in cols:
        m = cols["mtime"]
        if pa.types.is_timestamp(m.type):
            mtime = pc.divide(m.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
                              .cast(pa.float64()), 1e6)
        else:
            mtime = m.cast(pa.float64())
    else:
        mtime = pa.nulls(n, pa.float64())
    t = pa.Table.from_arrays([rel, size, etag, mtime], schema=listing_schema()).filter(keep)
    t = t.sort_by("key")
    return _filter(t, extensions, exclude_prefix)

