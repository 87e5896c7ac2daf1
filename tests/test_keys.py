"""Input key listing and the output key mapping: nothing may escape the output prefix."""

from __future__ import annotations

import os
import re

import pytest

from beardnet.infer.keys import (
    UnsafeKeyError,
    has_extension,
    is_meta_key,
    list_input_keys,
    meta_uri,
    nested_rel,
    normalize_extensions,
    output_uri,
    safe_rel_key,
)


@pytest.mark.parametrize(
    "key",
    [
        "a.jpg",
        "nested/deeper/x.png",
        "with space/ü ñ 写真.jpg",
        "dots.in.name..jpg",
        "...hidden/x.jpg",
        "a/.b/c.jpeg",
    ],
)
def test_safe_keys_pass_unchanged(key: str) -> None:
    assert safe_rel_key(key) == key
    assert output_uri("s3://out/pre/", key) == "s3://out/pre/" + key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs.jpg",
        "../up.jpg",
        "a/../../up.jpg",
        "a/..",
        "a/./b.jpg",
        "./b.jpg",
        "a//b.jpg",
        "dir/",
        "a\\..\\b.jpg",
        "win\\path.jpg",
        "nul\x00.jpg",
        "line\nbreak.jpg",
    ],
)
def test_unsafe_keys_rejected(key: str) -> None:
    with pytest.raises(UnsafeKeyError):
        safe_rel_key(key)
    with pytest.raises(UnsafeKeyError):
        output_uri("s3://out/pre", key)


def test_extensions() -> None:
    exts = normalize_extensions(["JPG", ".png", " jpeg ", "", ".png"])
    assert exts == (".jpg", ".png", ".jpeg")
    assert has_extension("A/B.JPG", exts)
    assert has_extension("x.jpeg", exts)
    assert not has_extension("x.gif", exts)
    assert not has_extension("jpg", exts)
    assert has_extension("anything", ())


def test_meta_and_nesting() -> None:
    assert meta_uri("s3://b/out/", "manifest", "r1") == "s3://b/out/_beardnet/manifest/r1"
    assert is_meta_key("_beardnet/lease.json")
    assert not is_meta_key("_beardnetx/a.jpg")
    assert nested_rel("s3://b/in", "s3://b/in/") == ""
    assert nested_rel("s3://b/in/", "s3://b/in/out") == "out/"
    assert nested_rel("s3://b/in", "s3://b/input") is None
    assert nested_rel("s3://b/in/out", "s3://b/in") is None


def test_list_input_keys_local(tmp_path) -> None:
    files = [
        "a.jpg",
        "B.PNG",
        "nested/x y/ü.jpeg",
        "notes.txt",
        "_beardnet/manifest/p.parquet",
        "out/already.jpg",
    ]
    for f in files:
        p = tmp_path / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    keys = sorted(list_input_keys(str(tmp_path), [".jpg", ".png", ".jpeg"], exclude_prefix="out"))
    assert keys == ["B.PNG", "a.jpg", "nested/x y/ü.jpeg"]


# --------------------------------------------------------------------- hostile keys, real writes
REFUSED = {
    "../up.jpg": "'..' path part",
    "a/../../up.jpg": "'..' path part",
    "%2e%2e/up.jpg": "after 1 percent-decoding",
    "%2E%2E/up.jpg": "after 1 percent-decoding",
    "%2E./up.jpg": "after 1 percent-decoding",
    "a/%2e/b.jpg": "'.' path part in key after 1",
    "%252e%252e/up.jpg": "after 2 percent-decoding",
    "..%2fup.jpg": "'..' path part in key after 1",
    "a\\..\\b.jpg": "backslash",
    "%5c..%5cb.jpg": "backslash in key after 1",
    "/abs.jpg": "absolute key",
    "%2fetc/passwd.jpg": "absolute key after 1",
    "nul\x00.jpg": "control character",
    "nul%00.jpg": "control character in key after 1",
    "esc\x1b[31m.jpg": "control character",
    "a//b.jpg": "empty path part",
    "x" * 300 + ".jpg": "longer than 255 bytes",
    "/".join(["d" * 200] * 6) + ".jpg": "longer than 1024 bytes",
    "_beardnet/lease.json": "own _beardnet/ folder",
    "%5fbeardnet/manifest/x.parquet": "own _beardnet/ folder",
}
WRITTEN = ["a%20b.jpg", "100%.jpg", "a%2fb.jpg", "dots..in..name.jpg", "...jpg",
           "ünï/ç 😀.jpg", "sub/%2e%2e.jpg"]


@pytest.mark.parametrize("kind", ["s3", "file"])
def test_hostile_keys_refused_with_reason_or_written_inside(kind, s3, bucket, tmp_path) -> None:
    """Each key is refused with its reason, or written, byte-for-byte, inside the prefix."""
    from beardnet import storage
    from beardnet.infer.keys import output_location

    (tmp_path / "outside").mkdir()
    if kind == "s3":
        prefix = f"s3://{bucket}/out/"
    else:
        root = tmp_path / "out dir"  # a space: the file:// prefix is itself percent-encoded
        root.mkdir()
        (root / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
        prefix = f"file://{str(root).replace(' ', '%20')}/"
    hostile = {**REFUSED, **({"link/x.jpg": "outside the output root"} if kind == "file" else {})}
    assert len(hostile) + len(WRITTEN) >= 15
    for key, reason in hostile.items():
        with pytest.raises(UnsafeKeyError, match=re.escape(reason)):
            output_location(prefix, key)
    for key in WRITTEN:
        loc = output_location(prefix, key)
        storage.write_bytes(loc, key.encode(), s3=s3.settings)
        assert storage.read_bytes(loc, s3=s3.settings) == key.encode()
    if kind == "s3":
        assert loc.startswith(prefix)
        everything = sorted(storage.list_keys(f"s3://{bucket}", s3=s3.settings))
        assert everything == sorted("out/" + k for k in WRITTEN)  # byte-for-byte keys
    else:
        listed = sorted(storage.list_keys(str(root)))
        assert listed == sorted(WRITTEN)
        assert all(os.path.realpath(output_location(prefix, k)).startswith(str(root) + os.sep)
                   for k in WRITTEN)
        assert not any((tmp_path / "outside").iterdir())
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out dir", "outside"]


def test_input_keys_are_read_from_the_literal_path(tmp_path) -> None:
    """A file named ``a%20b.jpg`` is that file, not ``a b.jpg`` (no decoding of the key)."""
    from beardnet import storage
    from beardnet.infer.keys import key_location

    (tmp_path / "a%20b.jpg").write_bytes(b"literal")
    (tmp_path / "a b.jpg").write_bytes(b"decoded")
    assert storage.read_bytes(key_location(f"file://{tmp_path}", "a%20b.jpg")) == b"literal"
    assert storage.read_bytes(key_location(str(tmp_path), "a b.jpg")) == b"decoded"
