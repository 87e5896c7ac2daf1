"""PNG specifics of the codec: chunk CRC checks (PIL skips IDAT's) and 16-bit reads."""

from __future__ import annotations

import struct
import zlib

import numpy as np

#: The eight bytes every PNG starts with.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk_problem(data: bytes) -> tuple[str, str] | None:
    """Walk the PNG chunks and verify every CRC: ``(reason, message)`` of the first problem
    (``truncated`` or ``bad_crc``), None when every chunk up to IEND is whole and sound."""
    pos = len(PNG_SIGNATURE)
    n = len(data)
    while pos + 8 <= n:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        end = pos + 8 + length
        if end + 4 > n:
            return "truncated", f"PNG chunk {ctype!r} ends past the data"
        crc = struct.unpack(">I", data[end : end + 4])[0]
        if zlib.crc32(data[pos + 4 : end]) & 0xFFFFFFFF != crc:
            return "bad_crc", f"PNG chunk {ctype.decode('latin-1')!r} has a bad CRC"
        pos = end + 4
        if ctype == b"IEND":
            return None
    return "truncated", "PNG has no IEND chunk"


def read_16bit(data: bytes) -> np.ndarray | None:
    """16-bit RGB(A) PNGs as uint8 RGB(A), rounded (PIL reduces them to 8 bits by truncation;
    OpenCV keeps 16 bits); None when ``data`` is not a 16-bit image OpenCV reads."""
    import cv2  # local: heavy import

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16:
        return None
    arr8 = np.clip(np.rint(arr.astype(np.float32) / 257.0), 0, 255).astype(np.uint8)
    if arr8.ndim == 3 and arr8.shape[2] == 3:
        return arr8[:, :, ::-1].copy()
    if arr8.ndim == 3 and arr8.shape[2] == 4:
        return arr8[:, :, [2, 1, 0, 3]].copy()
    return arr8
