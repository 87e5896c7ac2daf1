"""Writing one output photo: the object gets the ``ContentType`` of its encoded bytes."""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@lru_cache(maxsize=1)
def _storage_takes_content_type() -> bool:
    from beardnet import storage

    return "content_type" in inspect.signature(storage.write_bytes).parameters


def write_photo(uri: str, data: bytes, s3: Any = None) -> None:
    """Write ``data`` to ``uri``; on S3 with ``ContentType`` from the bytes' signature
    (``image/jpeg``, ``image/png``, ...). Local files are written as ``storage.write_bytes``."""
    from beardnet import storage

    mime = content_type(data)
    if _storage_takes_content_type():
        storage.write_bytes(uri, data, s3=s3, content_type=mime)
        return
    if storage.is_s3(uri):
        bucket, key = storage.split_s3(uri)
        storage.boto3_client(s3).put_object(Bucket=bucket, Key=key, Body=bytes(data),
                                            ContentType=mime)
        return
    storage.write_bytes(uri, data, s3=s3)


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (_PNG_SIGNATURE, "image/png"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def content_type(data: bytes) -> str:
    """The MIME type of encoded image bytes, from their signature (``image/jpeg``, ``image/png``,
    ``image/webp``, ``image/bmp``, ``image/tiff``; else ``application/octet-stream``)."""
    head = bytes(data[:16])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    return "application/octet-stream"
