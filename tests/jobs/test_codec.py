"""Rows as JSON text: what a reader hands over comes back as it was."""

import datetime
from decimal import Decimal

import pytest

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
