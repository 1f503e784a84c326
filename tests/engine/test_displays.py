"""Dicts of known keys from a compiled display: what dict(zip()) makes, whatever the keys."""

import pytest

from bulkops.engine.displays import dict_display


@pytest.mark.parametrize(
    "items",
    [
        [("b", 2), ("a", 0)],
        [("it's", 0), ('say "x"', 1), ("back\\slash", 2), ("{x}", 3), ("new\nline", 0)],
        [("a", 1), ("b", 2), ("a", 0)],  # a key twice: its last value, at its first place
        [],
    ],
)
def test_a_display_makes_what_dict_of_zip_makes(items):
    values = ("v0", "v1", "v2", "v3")
    made = dict_display(items)(values)
    expected = dict(zip([k for k, _ in items], [values[p] for _, p in items], strict=True))
    assert made == expected
    assert list(made) == list(expected)


def test_a_row_shorter_than_the_display_fails_loudly():
    with pytest.raises(IndexError):
        dict_display([("a", 0), ("b", 1)])(("v0",))
