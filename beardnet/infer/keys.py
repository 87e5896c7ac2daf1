"""Input key listing and the safe mapping of input keys to output keys (DESIGN.md §5, §7).

An input object ``PREFIX/rel/key.jpg`` is written to ``OUT/rel/key.jpg``. The relative key comes
from a bucket listing, so it is untrusted: a key that could climb out of the output prefix
(``..``, an absolute key, backslashes, empty or ``.`` parts, control characters) is rejected
per image (status ``error``), never written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

#: Folder under the output prefix that holds the job's own objects (manifest, runs, lease).
META_DIR = "_beardnet"

DEFAULT_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")


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


def safe_rel_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise :class:`UnsafeKeyError`.

    Rejected: empty keys, absolute keys (leading ``/``), backslashes, empty parts (``a//b``,
    trailing ``/``), ``.`` or ``..`` parts, and control characters (including NUL).
    """
    if not isinstance(key, str) or not key:
        raise UnsafeKeyError("empty key")
    if key.startswith("/"):
        raise UnsafeKeyError(f"absolute key {key!r}")
    if "\\" in key:
        raise UnsafeKeyError(f"backslash in key {key!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise UnsafeKeyError(f"control character in key {key!r}")
    for part in key.split("/"):
        if part == "":
            raise UnsafeKeyError(f"empty path part in key {key!r}")
        if part in (".", ".."):
            raise UnsafeKeyError(f"{part!r} path part in key {key!r}")
    return key


def is_meta_key(key: str) -> bool:
    """True for keys inside the job's own ``_beardnet/`` folder."""
    return key == META_DIR or key.startswith(META_DIR + "/")


def output_uri(output_prefix: str, rel_key: str) -> str:
    """``OUT/rel_key`` after checking ``rel_key`` with :func:`safe_rel_key`."""
    safe_rel_key(rel_key)
    return output_prefix.rstrip("/") + "/" + rel_key


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
