"""Input key listing and the safe mapping of input keys to output keys.

An input object ``PREFIX/rel/key.jpg`` is written to ``OUT/rel/key.jpg``: on S3 the output key is
byte-for-byte the input key (``a%20b.jpg`` stays ``a%20b.jpg``). The relative key comes from a
bucket listing, so it is untrusted. :func:`safe_rel_key` judges it as it is *and* after every
percent-decoding (to a fixed point: ``%252e`` -> ``%2e`` -> ``.``), since a ``file://`` URI or a
downstream tool may decode it: ``.``/``..``/empty parts, absolute keys, backslashes, NUL and
control characters, keys over 1024 bytes or parts over 255 bytes and the job's own
``_beardnet/`` folder are refused per image with a reason, never written.

:func:`key_location` (alias :func:`output_location`) is where a reader or writer goes: an
``s3://`` URI, or for local prefixes a filesystem path built from the key's literal parts (never
a URI the filesystem layer would decode) whose resolved real path stays under the root.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import unquote

#: Folder under the output prefix that holds the job's own objects (manifest, runs, lease).
META_DIR = "_beardnet"

DEFAULT_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
#: S3's key limit, and the usual file name limit, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
MAX_PART_BYTES = 255


class UnsafeKeyError(ValueError):
    """A relative key that would not stay inside the output prefix."""


def normalize_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    """Lower-case extensions with a leading dot: ``["JPG", ".png"] -> (".jpg", ".png")``."""
    out: list[str] = []
    for ext in extensions:
        e = ext.strip().lower()
        if not e:
            continue
        if not e.startswith("."):
            e = "." + e
        if e not in out:
            out.append(e)
    return tuple(out)


def has_extension(key: str, extensions: Sequence[str]) -> bool:
    """True when ``key`` ends with one of ``extensions`` (case-insensitive, already normalized)."""
    if not extensions:
        return True
    low = key.lower()
    return any(low.endswith(e) for e in extensions)


def decodings(key: str, rounds: int = 8) -> list[str]:
    """``key`` and each distinct result of percent-decoding it again (``%252e`` -> ``%2e`` ->
    ``.``), up to a fixed point."""
    forms = [key]
    for _ in range(rounds):
        nxt = unquote(forms[-1], errors="replace")
        if nxt == forms[-1]:
            break
        forms.append(nxt)
    return forms


def _judge(form: str, how: str) -> None:
    if form.startswith("/"):
        raise UnsafeKeyError(f"absolute key{how}")
    if "\\" in form:
        raise UnsafeKeyError(f"backslash in key{how}")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in form):
        raise UnsafeKeyError(f"control character in key{how}")
    parts = form.split("/")
    for part in parts:
        if part == "":
            raise UnsafeKeyError(f"empty path part in key{how}")
        if part in (".", ".."):
            raise UnsafeKeyError(f"{part!r} path part in key{how}")
    if parts[0] == META_DIR:
        raise UnsafeKeyError(f"key{how} is in the job's own {META_DIR}/ folder")


def safe_rel_key(key: str) -> str:
    """Return ``key`` unchanged if it is a safe relative key, else raise :class:`UnsafeKeyError`
    with the reason. The key is judged as it is and after every percent-decoding
    (:func:`decodings`)."""
    if not isinstance(key, str) or not key:
        raise UnsafeKeyError("empty key")
    shown = repr(key if len(key) <= 80 else key[:77] + "...")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise UnsafeKeyError(f"key longer than {MAX_KEY_BYTES} bytes: {shown}")
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_PART_BYTES for p in key.split("/")):
        raise UnsafeKeyError(f"path part longer than {MAX_PART_BYTES} bytes in {shown}")
    for i, form in enumerate(decodings(key)):
        how = "" if i == 0 else f" after {i} percent-decoding(s)"
        try:
            _judge(form, how)
        except UnsafeKeyError as e:
            raise UnsafeKeyError(f"{e}: {shown}") from None
    return key


def is_meta_key(key: str) -> bool:
    """True for keys inside the job's own ``_beardnet/`` folder."""
    return key == META_DIR or key.startswith(META_DIR + "/")


def output_uri(output_prefix: str, rel_key: str) -> str:
    """``OUT/rel_key`` as a URI after :func:`safe_rel_key` (for S3; local writers use
    :func:`output_location`, since a ``file://`` URI would be percent-decoded)."""
    safe_rel_key(rel_key)
    return output_prefix.rstrip("/") + "/" + rel_key


def key_location(prefix: str, rel_key: str) -> str:
    """Where ``rel_key`` under ``prefix`` is read or written, after :func:`safe_rel_key`.

    ``s3://`` prefixes: ``s3://bucket/prefix/<rel_key>``, the key byte-for-byte. Local prefixes
    (``file://`` or a path): an absolute filesystem path built from the key's literal parts
    (``a%20b.jpg`` is the file ``a%20b.jpg``); :class:`UnsafeKeyError` if its resolved real path
    (symbolic links followed) is not under the root's.
    """
    from beardnet import storage

    safe_rel_key(rel_key)
    if storage.is_s3(prefix):
        return prefix.rstrip("/") + "/" + rel_key
    root = storage.local_path(prefix)
    path = os.path.join(root, *rel_key.split("/"))
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if real == real_root or os.path.commonpath([real_root, real]) != real_root:
        raise UnsafeKeyError(f"key {rel_key!r} resolves outside the output root (symbolic link)")
    return path


#: The writer's name for :func:`key_location`.
output_location = key_location


def meta_uri(output_prefix: str, *parts: str) -> str:
    """URI of a job object under ``OUT/_beardnet/``."""
    return "/".join([output_prefix.rstrip("/"), META_DIR, *parts])


def _norm_prefix(uri: str) -> str:
    return uri.rstrip("/") + "/"


def nested_rel(outer: str, inner: str) -> str | None:
    """If ``inner`` lies under ``outer`` (both URIs), the relative part (``""`` if equal)."""
    o, i = _norm_prefix(outer), _norm_prefix(inner)
    if i == o:
        return ""
    if i.startswith(o):
        return i[len(o) :]
    return None


def list_input_keys(
    input_uri: str,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    *,
    exclude_prefix: str | None = None,
    s3=None,
) -> Iterator[str]:
    """Relative keys under ``input_uri`` with one of ``extensions`` (paginated listing).

    Keys in a ``_beardnet/`` folder and keys under ``exclude_prefix`` (relative, e.g. the output
    prefix when it is nested inside the input) are left out. Unsafe keys are *not* dropped
    here: the job records them as errors so that nothing is lost silently.
    """
    from beardnet import storage

    exts = normalize_extensions(extensions)
    excl = exclude_prefix.rstrip("/") + "/" if exclude_prefix else None
    for key in storage.list_keys(input_uri, s3=s3):
        if is_meta_key(key) or (excl and key.startswith(excl)):
            continue
        if has_extension(key, exts):
            yield key
