"""One way to reach every path: ``s3://bucket/key``, ``file:///abs`` or a plain local path.

A URI becomes a ``pyarrow.fs`` filesystem plus a path (:func:`resolve`) or is read, written,
listed, tested and deleted directly. S3 settings and credentials: :mod:`beardnet.s3client`
(boto3's credential chain; re-exported here). Every S3 call is one retry budget
(:mod:`beardnet.retry`: at most 5 attempts, throttling backed off with jitter, then
:class:`GaveUp`). Puts carry the settings' server-side encryption. Conditional writes
(:func:`put_conditional`, :func:`delete_conditional`) work on S3 and, under a lock file, on
local files.

``file://`` URIs are percent-decoded (``file:///a%20b`` is ``/a b``); ``s3://`` URIs and plain
paths are taken literally (``s3://b/a b/ü.png`` names the key ``a b/ü.png``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import posixpath
import tempfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from beardnet.retry import (  # noqa: F401 - re-exported
    MAX_ATTEMPTS,
    GaveUp,
    attempts,
    error_code,
    is_not_found,
    is_precondition,
    is_throttle,
)
from beardnet.s3client import (  # noqa: F401 - re-exported
    DEFAULT_REGION,
    S3Settings,
    _settings,
    boto3_client,
    create_bucket,
    credentials,
    describe_credentials,
    exported_env,
    s3_filesystem,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow.fs


class PreconditionFailed(RuntimeError):
    """A conditional write or delete found the object changed (HTTP 412/409)."""


# --------------------------------------------------------------------------- URI parsing


def is_s3(uri: str) -> bool:
    """True for ``s3://`` URIs."""
    return str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not is_s3(uri):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    rest = str(uri)[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"s3 URI without a bucket: {uri!r}")
    return bucket, key


def local_path(uri: str | os.PathLike[str]) -> str:
    """Absolute local path of a ``file://`` URI or a plain path."""
    s = os.fspath(uri)
    if s.startswith("file://"):
        parts = urlsplit(s)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URI with a host is not supported: {s!r}")
        return os.path.abspath(unquote(parts.path))
    if "://" in s:
        raise ValueError(f"unsupported URI scheme: {s!r} (use s3://, file:// or a path)")
    return os.path.abspath(os.path.expanduser(s))


def join(base_uri: str, *parts: str) -> str:
    """Join path parts onto a URI with ``/`` (plain paths use the OS separator)."""
    base = os.fspath(base_uri)
    clean = [p.strip("/") for p in parts if p and p.strip("/")]
    if is_s3(base) or base.startswith("file://"):
        return "/".join([base.rstrip("/"), *clean]) if clean else base
    return os.path.join(base, *clean)


def parent(uri: str) -> str:
    """The folder a URI's object or file lives in."""
    s = os.fspath(uri).rstrip("/")
    if is_s3(s) or s.startswith("file://"):
        head, _, _ = s.rpartition("/")
        return head
    return os.path.dirname(os.path.abspath(s))


def resolve(uri: str, s3: S3Settings | None = None) -> tuple[pyarrow.fs.FileSystem, str]:
    """Turn a URI into ``(pyarrow filesystem, path on it)``."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        return s3_filesystem(s3), f"{bucket}/{key}" if key else bucket
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem(), local_path(uri)


# --------------------------------------------------------------------------- operations


def read_bytes(uri: str, s3: S3Settings | None = None) -> bytes:
    """The whole object or file; ``FileNotFoundError`` when it is missing."""
    return read_versioned(uri, s3)[0]


def read_versioned(uri: str, s3: S3Settings | None = None) -> tuple[bytes, str]:
    """``(data, etag)``: the S3 ETag, or a content digest for local files."""
    if is_s3(uri):
        bucket, key = split_s3(uri)

        def get() -> tuple[bytes, str]:
            obj = boto3_client(s3).get_object(Bucket=bucket, Key=key)
            return obj["Body"].read(), obj["ETag"]

        try:
            return attempts(get, uri)
        except Exception as exc:
            if is_not_found(exc):
                raise FileNotFoundError(uri) from None
            raise
    with open(local_path(uri), "rb") as f:
        data = f.read()
    return data, _digest(data)


def _digest(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest() + '"'


def write_bytes(
    uri: str, data: bytes, s3: S3Settings | None = None, content_type: str | None = None
) -> None:
    """Write (replace) an object or file; local writes are atomic and create parent folders.
    S3 puts carry the settings' server-side encryption and ``content_type`` when given."""
    if is_s3(uri):
        put_conditional(uri, data, s3=s3, content_type=content_type)
        return
    _write_local(local_path(uri), data)


def _write_local(path: str, data: bytes) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path)[-20:])
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _local_lock(path: str) -> Iterator[None]:
    """An exclusive ``flock`` on ``path + ".lock"`` (compare-and-swap on local files)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _local_etag(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return _digest(f.read())
    except FileNotFoundError:
        return None


def put_conditional(
    uri: str,
    data: bytes,
    *,
    if_match: str | None = None,
    if_none_match: bool = False,
    s3: S3Settings | None = None,
    content_type: str | None = None,
) -> str:
    """Write ``data`` and return the new ETag. ``if_none_match``: only if nothing is there;
    ``if_match``: only if the object's ETag is still this one. :class:`PreconditionFailed`
    otherwise. Local files do the same under a lock file."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        if not key or key.endswith("/"):
            raise ValueError(f"cannot write to a folder URI: {uri!r}")
        st = _settings(s3)
        args: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": bytes(data)}
        args.update(st.put_args())
        if content_type:
            args["ContentType"] = content_type
        if if_match is not None:
            args["IfMatch"] = if_match
        if if_none_match:
            args["IfNoneMatch"] = "*"
        try:
            return attempts(lambda: boto3_client(st).put_object(**args), uri)["ETag"]
        except Exception as exc:
            if is_precondition(exc):
                raise PreconditionFailed(f"{uri}: {error_code(exc)}") from None
            raise
    path = local_path(uri)
    if if_match is None and not if_none_match:
        _write_local(path, data)
        return _digest(data)
    with _local_lock(path):
        cur = _local_etag(path)
        if (if_none_match and cur is not None) or (if_match is not None and cur != if_match):
            raise PreconditionFailed(f"{uri}: changed")
        _write_local(path, data)
    return _digest(data)


def delete_conditional(uri: str, etag: str, s3: S3Settings | None = None) -> None:
    """Delete the object only if its ETag is still ``etag`` (:class:`PreconditionFailed`
    otherwise). Check the store honours it first: some ignore ``If-Match`` on delete."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            attempts(lambda: boto3_client(s3).delete_object(Bucket=bucket, Key=key, IfMatch=etag),
                     uri)
        except Exception as exc:
            if is_precondition(exc):
                raise PreconditionFailed(f"{uri}: {error_code(exc)}") from None
            raise
        return
    path = local_path(uri)
    with _local_lock(path):
        if _local_etag(path) != etag:
            raise PreconditionFailed(f"{uri}: changed")
        os.unlink(path)


def exists(uri: str, s3: S3Settings | None = None) -> bool:
    """Whether the object (s3) or file/folder (local) exists."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        client = boto3_client(s3)
        try:
            if key:
                attempts(lambda: client.head_object(Bucket=bucket, Key=key), uri)
            else:
                attempts(lambda: client.head_bucket(Bucket=bucket), uri)
        except Exception as exc:
            if is_not_found(exc):
                return False
            raise
        return True
    return os.path.exists(local_path(uri))


def delete(uri: str, s3: S3Settings | None = None) -> None:
    """Delete one object or file; a missing one is not an error."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        attempts(lambda: boto3_client(s3).delete_object(Bucket=bucket, Key=key), uri)
        return
    try:
        os.unlink(local_path(uri))
    except FileNotFoundError:
        pass


def _suffix_ok(key: str, suffixes: tuple[str, ...] | None) -> bool:
    return suffixes is None or key.lower().endswith(suffixes)


def list_keys(
    prefix_uri: str,
    suffixes: Iterable[str] | None = None,
    s3: S3Settings | None = None,
) -> Iterator[str]:
    """Keys under a folder-like prefix, relative to it, recursive, in sorted order.

    ``suffixes`` (e.g. ``(".jpg", ".png")``) filters case-insensitively. S3 listing is
    paginated (each page within the retry budget), so any number of keys is fine. Folder
    markers (keys ending in ``/``) and, for local folders, hidden temp files of
    :func:`write_bytes` are skipped.
    """
    sfx = tuple(s.lower() for s in suffixes) if suffixes is not None else None
    if is_s3(prefix_uri):
        bucket, key = split_s3(prefix_uri)
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        client = boto3_client(s3)
        token: str | None = None
        while True:
            args = {"Bucket": bucket, "Prefix": prefix}
            if token:
                args["ContinuationToken"] = token
            page = attempts(lambda a=args: client.list_objects_v2(**a), prefix_uri)
            for obj in page.get("Contents", []) or []:
                k = obj["Key"]
                if k.endswith("/"):
                    continue
                rel = k[len(prefix) :]
                if rel and _suffix_ok(rel, sfx):
                    yield rel
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            if not token:
                return
    root = local_path(prefix_uri)
    if not os.path.isdir(root):
        return
    out: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel_dir = os.path.relpath(folder, root)
        for name in files:
            if name.startswith(".tmp-") or name.endswith(".lock"):
                continue
            rel = name if rel_dir == "." else posixpath.join(*rel_dir.split(os.sep), name)
            if _suffix_ok(rel, sfx):
                out.append(rel)
    yield from sorted(out)
