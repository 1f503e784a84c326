"""References ``{id.body.path}``: found, replaced with their JSON type, refused when missing."""

import pytest

from bulkops.batch.references import (
    UnresolvedReference,
    has_references,
    references_in,
    substitute,
    substitute_url,
)

BODIES = {
    "c": {"id": 17, "email": "ann@example.com", "active": True, "tags": ["a", "b"], "none": None},
    "l": {"count": 1, "results": [{"id": 5, "sku": "A/1"}]},
    "e": None,  # an empty (204) response
}


def lookup(request_id):
    return BODIES[request_id]


def test_references_are_found_at_any_depth():
    body = {"a": "{c.body.id}", "b": [{"c": "x {l.body.results.0.id} y"}], "n": 3, "t": True}

    found = {(r.request_id, r.path) for r in references_in(body)}

    assert found == {("c", ("id",)), ("l", ("results", "0", "id"))}
    assert has_references(body)
    assert not has_references({"a": "{not a reference}", "b": "{c.status}", "c": "{}"})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("{c.body.id}", 17),
        ("{c.body.email}", "ann@example.com"),
        ("{c.body.active}", True),
        ("{c.body.tags}", ["a", "b"]),
        ("{c.body.none}", None),
        ("{l.body.results.0}", {"id": 5, "sku": "A/1"}),
        ("{l.body.results.0.id}", 5),
        ("{c.body}", BODIES["c"]),
    ],
)
def test_a_string_that_is_one_reference_takes_the_value_with_its_type(text, value):
    assert substitute({"field": text}, lookup) == {"field": value}


def test_references_inside_text_are_inserted_as_text():
    body = {"note": "order {c.body.id} for {c.body.email}: {c.body.tags} {c.body.none}"}

    assert substitute(body, lookup) == {"note": 'order 17 for ann@example.com: ["a","b"] null'}


def test_nested_values_and_lists_are_replaced_and_the_rest_kept():
    body = {"a": [{"b": "{c.body.id}"}, "{l.body.count}", 2.5], "c": {"d": False, "e": "{x}"}}

    assert substitute(body, lookup) == {"a": [{"b": 17}, 1, 2.5], "c": {"d": False, "e": "{x}"}}


def test_a_reference_in_a_url_is_one_percent_encoded_segment():
    assert substitute_url("/api/customers/{c.body.id}/", lookup) == "/api/customers/17/"
    # A value can never add segments or query parameters.
    assert substitute_url("/api/products/{l.body.results.0.sku}/", lookup) == (
        "/api/products/A%2F1/"
    )
    assert substitute_url("/api/orders/?customer={c.body.email}&x=1", lookup) == (
        "/api/orders/?customer=ann%40example.com&x=1"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{c.body.missing}", "c.body has no member 'missing'"),
        ("{c.body.id.x}", "c.body.id is a number, which has no member 'x'"),
        ("{l.body.results.1.id}", "l.body.results has 1 items, so there is no item 1"),
        ("{l.body.results.first}", "l.body.results is a list, so 'first' must be an index"),
        ("{e.body.id}", "e.body is null, which has no member 'id'"),
    ],
)
def test_a_missing_value_says_what_is_missing(text, message):
    with pytest.raises(UnresolvedReference) as caught:
        substitute({"a": ["x", {"b": text}]}, lookup)

    assert message in caught.value.message
    assert text in caught.value.message
