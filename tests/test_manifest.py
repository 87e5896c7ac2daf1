"""Training manifest: round trips (local and S3), validation errors that name the row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from beardnet import storage
from beardnet.manifest import (
    COLUMNS,
    ManifestError,
    read_manifest,
    resolve_uri,
    validate,
    write_manifest,
)


def _rows(n_ids: int = 2) -> list[dict]:
    rows = []
    for i in range(n_ids):
        for c in ("none", "goatee"):
            rows.append({
                "uri": f"images/id{i}/{c}.png",
                "identity": f"id{i}",
                "category": c,
                "beard_mask_uri": f"masks/id{i}/{c}_beard.png",
                "face_mask_uri": f"masks/id{i}/{c}_face.png",
                "face_box": [1.0, 2.0, 100.0, 120.0] if i == 0 else None,
                "split": "train" if i else "val",
            })
    return rows


def _materialise(base: str, rows: list[dict]) -> None:
    for r in rows:
        for col in ("uri", "beard_mask_uri", "face_mask_uri"):
            if r.get(col):
                storage.write_bytes(storage.join(base, r[col]), b"png")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_round_trip_with_uri_check(where, tmp_path, request):
    base = str(tmp_path / "ds") if where == "local" else f"s3://{request.getfixturevalue('bucket')}/ds"
    rows = _rows()
    _materialise(base, rows)
    uri = storage.join(base, "manifest.parquet")
    write_manifest(rows, uri)
    t = read_manifest(uri, check_uris=True)
    assert t.column_names == list(COLUMNS)
    assert t.num_rows == 4
    assert t.column("face_box")[0].as_py() == [1.0, 2.0, 100.0, 120.0]
    assert t.column("face_box")[3].as_py() is None
    assert t.schema.field("face_box").type == pa.list_(pa.float32())
    assert resolve_uri(uri, t.column("uri")[0].as_py()) == storage.join(base, "images/id0/none.png")
    # a dangling uri is found and named
    storage.delete(storage.join(base, "masks/id1/goatee_face.png"))
    with pytest.raises(ManifestError, match=r"row 3 \(uri='images/id1/goatee.png'\): "
                       r"face_mask_uri points to a missing object"):
        read_manifest(uri, check_uris=True)
    read_manifest(uri)  # without the check it is fine


def test_optional_columns_filled_and_extra_kept(tmp_path):
    rows = [{"uri": "/abs/a.png", "identity": 7, "category": "none", "split": "test",
             "note": "x"}]
    t = write_manifest(rows, str(tmp_path / "m.parquet"))
    assert t.column_names == [*COLUMNS, "note"]
    assert t.column("identity").to_pylist() == ["7"]
    assert t.column("beard_mask_uri").null_count == 1
    assert resolve_uri(str(tmp_path / "m.parquet"), "/abs/a.png") == "/abs/a.png"
    assert resolve_uri("s3://b/x/m.parquet", "s3://c/y.png") == "s3://c/y.png"


def _bad(**change) -> list[dict]:
    rows = _rows(3)
    idx = change.pop("row", 4)
    rows[idx].update(change)
    return rows


@pytest.mark.parametrize(
    "rows, match",
    [
        (_bad(category="beard"), r"row 4 \(uri='images/id2/none.png'\): unknown category 'beard'"),
        (_bad(split="training"), r"row 4 .*bad split 'training'"),
        (_bad(uri="images/id0/goatee.png"),
         r"row 4 \(uri='images/id0/goatee.png'\): duplicate uri \(first seen at row 1\)"),
        (_bad(identity=None), r"row 4 .*identity is null"),
        (_bad(category=""), r"row 4 .*category is empty"),
        (_bad(face_box=[1.0, 2.0, 3.0]), r"row 4 .*face_box must have 4 numbers"),
        (_bad(face_box=[10.0, 2.0, 3.0, 50.0]), r"row 4 .*bad face_box"),
        (_bad(face_box=[1.0, 2.0, float("nan"), 50.0]), r"row 4 .*bad face_box"),
    ],
)
def test_validation_errors_name_the_row(rows, match):
    with pytest.raises(ManifestError, match=match):
        validate(pa.Table.from_pylist(rows))


def test_missing_column_and_not_parquet(tmp_path):
    t = pa.Table.from_pylist(_rows()).drop_columns(["split"])
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['split'\]"):
        validate(t)
    p = tmp_path / "m.parquet"
    p.write_bytes(b"not parquet")
    with pytest.raises(ManifestError, match="not a Parquet file"):
        read_manifest(str(p))
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(str(tmp_path / "none.parquet"))


def test_custom_categories():
    from beardnet.categories import Categories

    cats = Categories(("clean", "beard"))
    rows = [{"uri": "a", "identity": "i", "category": "beard", "split": "train"}]
    validate(pa.Table.from_pylist(rows), cats)
    with pytest.raises(ManifestError, match="known: clean, beard"):
        validate(pa.Table.from_pylist(_rows(1)), cats)


def test_large_manifest_validates_fast():
    n = 200_000
    rng = np.random.default_rng(0)
    cats = np.array(["none", "stubble", "mustache", "goatee", "full_beard"])
    t = pa.table({
        "uri": pa.array([f"images/{i}.png" for i in range(n)]),
        "identity": pa.array([str(i // 5) for i in range(n)]),
        "category": pa.array(cats[rng.integers(0, 5, n)]),
        "split": pa.array(np.where(rng.random(n) < 0.8, "train", "val")),
        "face_box": pa.array([[0.0, 0.0, 10.0, 10.0]] * n, type=pa.list_(pa.float32())),
    })
    out = validate(t)
    assert out.num_rows == n
