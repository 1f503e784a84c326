"""Rows as JSON text: what a reader hands over comes back as it was."""

import datetime
import enum
import json
import math
import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkops.jobs import codec

ROWS = [
    [{"sku": "A", "released": datetime.date(2024, 5, 1)}, 2, None, None],
    [
        {"placed_at": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC)},
        3,
        "r",
        {"x": ["bad"]},
    ],
    [{"at": datetime.time(8, 15), "price": Decimal("1.10"), "n": 1.5, "ok": True}, 4, None, None],
]


def test_dates_times_and_decimals_come_back_as_such():
    assert codec.loads(codec.dumps(ROWS)) == ROWS


@pytest.mark.parametrize(
    "value",
    [
        {"$date": "2024-05-01"},
        [{"a": {"$dict": []}}, datetime.date(2024, 1, 1)],
        ["nul \x00 and a lone surrogate \ud800"],
    ],
)
def test_what_looks_like_a_tag_or_cannot_be_stored_stays_data(value):
    text = codec.dumps(value)
    assert "\x00" not in text
    assert codec.loads(text) == value


def test_plain_json_is_plain():
    text = codec.dumps([{"a": "ü", "b": [1, None], "$date": "x"}])
    assert text == 'p[{"a":"ü","b":[1,null],"$date":"x"}]'
    assert codec.loads(text) == [{"a": "ü", "b": [1, None], "$date": "x"}]


def test_jsonb_safe_replaces_nul_and_keeps_structure():
    assert codec.jsonb_safe({"a\x00": ["x\x00y", 1, None, Decimal("2.5")]}) == {
        "a\ufffd": ["x\ufffdy", 1, None, "2.5"]
    }


# -- orjson where it writes and reads exactly as json does ------------------------------

TEXT = st.text(st.characters(codec=None), max_size=12)  # NUL, lone surrogates, any plane
FINITE = st.floats(allow_nan=False, allow_infinity=False)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | FINITE | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def same(a, b):
    """Equal, and of the same types all the way down (1 is not 1.0, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (a != a and b != b) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b


@settings(max_examples=300, deadline=None)
@given(JSONISH)
def test_orjson_writes_what_json_reads_as_json_would(data):
    want = json.loads(json.dumps(data))
    assert same(json.loads(codec.compact(data)), want)
    assert same(codec.loads_data(codec.dumps_data(data)), want)  # big integers: json's


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(ANY_JSON)
def test_loads_data_reads_any_json_as_json_does(data):
    text = json.dumps(data, separators=(",", ":"))  # NaN, huge integers, escaped surrogates
    assert same(codec.loads_data(text), json.loads(text))


def test_integers_past_64_bits_never_go_through_orjson():
    big = [2**64, -(2**63) - 1, 10**30]
    for value in big:
        assert codec.loads_data(codec.dumps_data({"n": value})) == {"n": value}
        rows = [[{"n": value}, 2, None, None]]
        assert codec.loads(codec.dumps(rows)) == rows
        assert type(codec.loads(codec.dumps(rows))[0][0]["n"]) is int


CELL = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats()
    | TEXT | st.dates() | st.decimals(allow_nan=False)
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.sampled_from(["sku", "name", "price", "$date"]), CELL),
            st.integers(min_value=2, max_value=10**6),
            st.none() | st.floats() | TEXT,
            st.none() | st.dictionaries(TEXT, st.lists(TEXT, max_size=2), max_size=2),
        ),
        max_size=5,
    )
)
def test_reader_rows_come_back_exactly(rows):
    rows = [list(row) for row in rows]
    back = codec.loads(codec.dumps(rows))
    assert len(back) == len(rows)
    for got, want in zip(back, rows, strict=True):
        assert got[1:2] == want[1:2] and same(got[3], want[3])
        assert same(got[2], want[2])
        assert got[0].keys() == want[0].keys()
        for key, value in want[0].items():
            if isinstance(value, float | dict | list | str | bool | int) or value is None:
                assert same(got[0][key], value), key
            else:
                assert got[0][key] == value and type(got[0][key]) is type(value), key


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ("text", True),
        (12, True),
        (1.5, True),
        (None, True),
        (float("nan"), False),  # orjson would write null
        (enum.Enum("Colour", "RED")(1), False),  # orjson writes it, json refuses it
        (uuid.UUID(int=1), False),
        ({"json": "field"}, False),  # a JSONField's data: json writes it
        (2**70, True),  # orjson refuses it: json writes it then
    ],
)
def test_only_plain_staged_values_go_through_orjson(value, plain):
    data = {"rows": [[0, 2, None, "create", None, ["A", value], None, None]]}
    assert codec.plain_staged(data) is plain
    if plain:
        assert same(codec.loads_data(codec.dumps_data(data)), json.loads(json.dumps(data)))
