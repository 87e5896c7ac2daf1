"""Writing one output photo: the object gets the ``ContentType`` of its encoded bytes."""

from __future__ import annotations

from typing import Any

from beardnet.infer.png import PNG_SIGNATURE


def write_photo(uri: str, data: bytes, s3: Any = None) -> None:
    """Write ``data`` to ``uri``; on S3 with ``ContentType`` from the bytes' signature
    (``image/jpeg``, ``image/png``, ...). Local files are written as ``storage.write_bytes``."""
    from beardnet import storage

    storage.write_bytes(uri, data, s3=s3, content_type=content_type(data))


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (PNG_SIGNATURE, "image/png"),
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
