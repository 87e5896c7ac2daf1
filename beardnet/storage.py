"""One way to reach every path: ``s3://bucket/key``, ``file:///abs`` or a plain local path.

DESIGN.md §7. A URI becomes a ``pyarrow.fs`` filesystem plus a path (:func:`resolve`) or is
read, written, listed, tested and deleted directly. S3 endpoint, region and keys come from an
explicit :class:`S3Settings` or the standard ``AWS_*`` variables (:meth:`S3Settings.from_env`);
pass :meth:`S3Settings.to_env` to Ray workers. pyarrow is always given an endpoint (when one is
set) and a region, so it never asks AWS where a bucket lives. Secrets never appear in a repr.

``file://`` URIs are percent-decoded (``file:///a%20b`` is ``/a b``); ``s3://`` URIs and plain
paths are taken literally (``s3://b/a b/ü.png`` names the key ``a b/ü.png``).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow.fs

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Settings:
    """Where S3 is and how to sign for it. ``secret_access_key`` is hidden from ``repr``."""

    endpoint_url: str | None = None
    region: str = DEFAULT_REGION
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    scheme: str | None = None

    def __post_init__(self) -> None:
        if self.scheme is None:
            scheme = "https"
            if self.endpoint_url and "://" in self.endpoint_url:
                scheme = self.endpoint_url.split("://", 1)[0].lower()
            object.__setattr__(self, "scheme", scheme)
        if not self.region:
            object.__setattr__(self, "region", DEFAULT_REGION)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> S3Settings:
        """Read ``AWS_ENDPOINT_URL``, ``AWS_REGION``/``AWS_DEFAULT_REGION`` and the key pair."""
        env = os.environ if environ is None else environ
        return cls(
            endpoint_url=env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        )

    @property
    def endpoint_override(self) -> str | None:
        """The endpoint as pyarrow wants it: ``host:port`` without the scheme."""
        if not self.endpoint_url:
            return None
        ep = self.endpoint_url.split("://", 1)[-1]
        return ep.rstrip("/")

    def to_env(self) -> dict[str, str]:
        """Environment variables carrying these settings (for Ray ``runtime_env``, subprocesses)."""
        env = {
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
        if self.access_key_id:
            env["AWS_ACCESS_KEY_ID"] = self.access_key_id
        if self.secret_access_key:
            env["AWS_SECRET_ACCESS_KEY"] = self.secret_access_key
        return env


@contextlib.contextmanager
def exported_env(s3: S3Settings) -> Iterator[None]:
    """Export ``s3`` as the standard ``AWS_*`` variables (:meth:`S3Settings.to_env`) for the
    duration, so clients, subprocesses and Ray workers started meanwhile see it; restored after."""
    values = s3.to_env()
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def create_bucket(name: str, s3: S3Settings | None = None) -> str:
    """Create bucket ``name`` (no error if it exists already); returns ``s3://name``."""
    client = boto3_client(s3)
    try:
        client.create_bucket(Bucket=name)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    return f"s3://{name}"


def _settings(s3: S3Settings | None) -> S3Settings:
    return S3Settings.from_env() if s3 is None else s3


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


# --------------------------------------------------------------------------- clients

_lock = threading.Lock()
_fs_cache: dict[S3Settings, Any] = {}
_client_cache: dict[S3Settings, Any] = {}


def s3_filesystem(s3: S3Settings | None = None) -> pyarrow.fs.S3FileSystem:
    """A cached pyarrow ``S3FileSystem`` with endpoint, region and scheme always set."""
    import pyarrow.fs as pafs

    st = _settings(s3)
    with _lock:
        fs = _fs_cache.get(st)
        if fs is None:
            fs = pafs.S3FileSystem(
                access_key=st.access_key_id,
                secret_key=st.secret_access_key,
                region=st.region,
                scheme=st.scheme,
                endpoint_override=st.endpoint_override,
                connect_timeout=10,
                request_timeout=60,
                retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=5),
            )
            _fs_cache[st] = fs
        return fs


def boto3_client(s3: S3Settings | None = None) -> Any:
    """A cached, thread-safe boto3 S3 client (path-style addressing, standard retries)."""
    st = _settings(s3)
    with _lock:
        client = _client_cache.get(st)
        if client is None:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session()
            client = session.client(
                "s3",
                endpoint_url=st.endpoint_url,
                region_name=st.region,
                aws_access_key_id=st.access_key_id,
                aws_secret_access_key=st.secret_access_key,
                config=Config(
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=60,
                    max_pool_connections=32,
                ),
            )
            _client_cache[st] = client
        return client


def resolve(uri: str, s3: S3Settings | None = None) -> tuple[pyarrow.fs.FileSystem, str]:
    """Turn a URI into ``(pyarrow filesystem, path on it)``."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        return s3_filesystem(s3), f"{bucket}/{key}" if key else bucket
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem(), local_path(uri)


# --------------------------------------------------------------------------- operations


def _is_not_found(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


def read_bytes(uri: str, s3: S3Settings | None = None) -> bytes:
    """The whole object or file; ``FileNotFoundError`` when it is missing."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            obj = boto3_client(s3).get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if _is_not_found(exc):
                raise FileNotFoundError(uri) from None
            raise
        return obj["Body"].read()
    with open(local_path(uri), "rb") as f:
        return f.read()


def write_bytes(uri: str, data: bytes, s3: S3Settings | None = None) -> None:
    """Write (replace) an object or file; local writes are atomic and create parent folders."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        if not key or key.endswith("/"):
            raise ValueError(f"cannot write to a folder URI: {uri!r}")
        boto3_client(s3).put_object(Bucket=bucket, Key=key, Body=bytes(data))
        return
    path = local_path(uri)
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


def exists(uri: str, s3: S3Settings | None = None) -> bool:
    """Whether the object (s3) or file/folder (local) exists."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        client = boto3_client(s3)
        try:
            if key:
                client.head_object(Bucket=bucket, Key=key)
            else:
                client.head_bucket(Bucket=bucket)
        except Exception as exc:
            if _is_not_found(exc):
                return False
            raise
        return True
    return os.path.exists(local_path(uri))


def delete(uri: str, s3: S3Settings | None = None) -> None:
    """Delete one object or file; a missing one is not an error."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        boto3_client(s3).delete_object(Bucket=bucket, Key=key)
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
    paginated, so any number of keys is fine. Folder markers (keys ending in ``/``) and, for
    local folders, hidden temp files of :func:`write_bytes` are skipped.
    """
    sfx = tuple(s.lower() for s in suffixes) if suffixes is not None else None
    if is_s3(prefix_uri):
        bucket, key = split_s3(prefix_uri)
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        paginator = boto3_client(s3).get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []) or []:
                k = obj["Key"]
                if k.endswith("/"):
                    continue
                rel = k[len(prefix) :]
                if rel and _suffix_ok(rel, sfx):
                    yield rel
        return
    root = local_path(prefix_uri)
    if not os.path.isdir(root):
        return
    out: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel_dir = os.path.relpath(folder, root)
        for name in files:
            if name.startswith(".tmp-"):
                continue
            rel = name if rel_dir == "." else posixpath.join(*rel_dir.split(os.sep), name)
            if _suffix_ok(rel, sfx):
                out.append(rel)
    yield from sorted(out)
