"""Categories and ratio parsing."""

from __future__ import annotations

import numpy as np
import pytest

from beardnet.categories import (
    DEFAULT,
    DEFAULT_CATEGORIES,
    Categories,
    RatioError,
    format_ratio,
    parse_ratio,
)


def test_default_order_is_the_conditioning_index():
    assert DEFAULT_CATEGORIES == ("none", "stubble", "mustache", "goatee", "full_beard")
    assert len(DEFAULT) == 5
    assert [DEFAULT.index(n) for n in DEFAULT_CATEGORIES] == [0, 1, 2, 3, 4]
    assert "goatee" in DEFAULT and "beard" not in DEFAULT


def test_indices_vectorised_and_unknown():
    names = np.array(["goatee", "none", "full_beard", "goatee"] * 1000, dtype=object)
    idx = DEFAULT.indices(names)
    assert idx.dtype == np.int16
    assert idx[:4].tolist() == [3, 0, 4, 3] and len(idx) == 4000
    with pytest.raises(KeyError, match="'beard'"):
        DEFAULT.indices(["none", "beard"])
    with pytest.raises(KeyError, match="unknown category 'x'"):
        DEFAULT.index("x")


def test_bad_category_sets():
    with pytest.raises(ValueError, match="duplicate"):
        Categories(("a", "a"))
    with pytest.raises(ValueError, match="at least one"):
        Categories(())
    with pytest.raises(ValueError, match="bad name"):
        Categories(("a b",))


def test_parse_ratio_forms():
    assert parse_ratio("none:1, stubble:2") == {
        "none": 1.0, "stubble": 2.0, "mustache": 0.0, "goatee": 0.0, "full_beard": 0.0}
    assert parse_ratio({"goatee": 3, 0: 1})["none"] == 1.0
    assert parse_ratio([1, 1, 1, 1, 2])["full_beard"] == 2.0
    r = parse_ratio("none:0.2,stubble:0.2,mustache:0.2,goatee:0.2,full_beard:0.2",
                    require_all=True)
    assert list(r) == list(DEFAULT_CATEGORIES)
    assert parse_ratio(format_ratio(r)) == r


@pytest.mark.parametrize(
    "spec, match",
    [
        ("none:1,beard:2", "unknown category 'beard'"),
        ("none:-1,stubble:1", "data.ratio.none: weight must be a finite number >= 0"),
        ("none:0,stubble:0", "all weights are zero"),
        ("none:abc", "data.ratio.none: weight 'abc' is not a number"),
        ("none=1", "expected name:weight"),
        ("none:1,none:2", "given twice"),
        ("none:nan", "finite"),
        ([1, 2], "2 weights for 5 categories"),
        ({7: 1}, "index 7 out of range"),
    ],
)
def test_parse_ratio_errors(spec, match):
    with pytest.raises(RatioError, match=match):
        parse_ratio(spec, field="data.ratio")


def test_require_all_names_missing():
    with pytest.raises(RatioError, match="missing categories"):
        parse_ratio("none:1", require_all=True)
