"""Input key listing and the output key mapping: nothing may escape the output prefix."""

from __future__ import annotations

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
