"""A bulk item's errors are exactly what the single endpoint answers for the same item.

For random valid and invalid items of the four catalog resources — values other rows
hold already, natural keys of nothing, wrong types, NUL characters and lone
surrogates, empty strings, missing fields — the errors of the item sent alone to
``bulk/`` as a dry run equal the single endpoint's 400 body (or both accept it): a
create against ``POST /api/<resource>/``, an update against ``PATCH`` of an existing
object. The order of the fields and of their messages counts too.
"""

import json
import os

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.helpers import bulk
from tests.factories import CategoryFactory, CustomerFactory, OrderFactory, ProductFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

TAKEN = {
    "category": ["Tools", "Garden"],
    "sku": ["E-0", "E-1"],
    "email": ["ann@example.com", "bob@example.com"],
}
NUL = "\x00"

junk = st.one_of(
    st.none(),
    st.just(""),
    st.just(" "),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.text(alphabet=st.sampled_from(["a", "1", NUL, "\ud800", " ", "é"]), max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["a", "name"]), st.integers(), max_size=1),
)


def text_with(*values):
    """One of ``values``, or one of them with a NUL or a blank added, or junk."""
    plain = st.sampled_from(values)
    return st.one_of(
        plain,
        plain.map(lambda v: v + NUL),
        plain.map(lambda v: f" {v} "),
        plain.map(str.upper),
        junk,
    )


decimals = st.one_of(
    st.sampled_from(["1.00", "0", "-1", "12345678.99", "123456789.00", "1.001", "abc", "1e3"]),
    st.decimals(min_value=-1000, max_value=10**9, places=3).map(str),
    junk,
)
integers = st.one_of(
    st.integers(min_value=-5, max_value=5), st.sampled_from([2**31, "7", "x"]), junk
)
dates = st.one_of(st.sampled_from(["2024-02-29", "2023-02-29", "20240101", "9999-12-31"]), junk)
datetimes = st.one_of(
    st.sampled_from(
        ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00+02:00", "9999-12-31T23:59:59-01:00", "x"]
    ),
    junk,
)

FIELDS = {
    "categories": {"name": text_with(*TAKEN["category"], "New")},
    "products": {
        "sku": text_with(*TAKEN["sku"], "N-1", "x" * 65),
        "name": text_with("Widget", ""),
        "category": text_with(*TAKEN["category"], "Nope"),
        "price": decimals,
        "quantity": integers,
        "active": st.one_of(st.booleans(), st.sampled_from(["yes", "0", "maybe"]), junk),
        "released": dates,
    },
    "customers": {
        "email": text_with(*TAKEN["email"], "new@example.com", "not-an-email"),
        "name": text_with("Ann", ""),
        "country": text_with("DE", "de", "DEU"),
    },
    "orders": {
        "customer": text_with(*TAKEN["email"], "nobody@example.com"),
        "product": text_with(*TAKEN["sku"], "NOPE"),
        "quantity": integers,
        "placed_at": datetimes,
    },
}


def items(resource):
    fields = FIELDS[resource]
    return st.fixed_dictionaries({}, optional=fields)


@pytest.fixture
def catalog():
    tools, garden = (CategoryFactory(name=name) for name in TAKEN["category"])
    products = [ProductFactory(sku=sku, category=tools) for sku in TAKEN["sku"]]
    customers = [CustomerFactory(email=email) for email in TAKEN["email"]]
    order = OrderFactory(customer=customers[0], product=products[0])
    return {
        "categories": garden,
        "products": products[1],
        "customers": customers[1],
        "orders": order,
    }


def single_errors(response):
    assert response.status_code in (200, 201, 400), (response.status_code, response.content)
    return None if response.status_code < 400 else list(response.json().items())


def bulk_errors(response):
    assert response.status_code == 200, (response.status_code, response.content)
    [result] = response.json()["results"]
    errors = result.get("errors")
    return None if errors is None else list(errors.items())


def both(api, method, resource, item, target=None):
    """The single endpoint's errors and the bulk item's, on the same database."""
    with transaction.atomic():
        bulk_item = item if target is None else {**item, "id": target.pk}
        # JSON text with \u escapes: lone surrogates travel as clients send them.
        body = json.dumps({"items": [bulk_item], "dry_run": True})
        in_bulk = bulk_errors(bulk(api, method, resource, body))
        url = f"/api/{resource}/" if target is None else f"/api/{resource}/{target.pk}/"
        send = getattr(api, method)
        alone = single_errors(send(url, json.dumps(item), content_type="application/json"))
        transaction.set_rollback(True)
    return alone, in_bulk


SETTINGS = settings(
    max_examples=int(os.environ.get("SAME_ERRORS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
    database=None,
)


@pytest.mark.parametrize("resource", list(FIELDS))
@SETTINGS
@given(data=st.data())
def test_a_new_items_errors_are_the_single_create_s(api, catalog, resource, data):
    item = data.draw(items(resource))
    alone, in_bulk = both(api, "post", resource, item)
    assert in_bulk == alone, item


@pytest.mark.parametrize("resource", list(FIELDS))
@SETTINGS
@given(data=st.data())
def test_an_update_items_errors_are_the_single_update_s(api, catalog, resource, data):
    item = data.draw(items(resource))
    alone, in_bulk = both(api, "patch", resource, item, target=catalog[resource])
    assert in_bulk == alone, item


@pytest.mark.parametrize(
    ("item", "errors"),
    [
        (  # the set-based check beside another field's error (issue 6)
            {"sku": "E-0", "name": "x", "category": "Tools", "price": "-1"},
            {
                "sku": ["product with this SKU already exists."],
                "price": ["Ensure this value is greater than or equal to 0."],
            },
        ),
        (
            {"sku": "E-0" + NUL, "name": "x", "category": "To" + NUL, "price": "1"},
            {
                "sku": ["Null characters are not allowed."],
                "category": ["Null characters are not allowed."],
            },
        ),
        (
            {"sku": "x" * 65, "name": "", "category": "Nope"},
            {
                "sku": ["Ensure this field has no more than 64 characters."],
                "name": ["This field may not be blank."],
                "category": ["Object with name=Nope does not exist."],
                "price": ["This field is required."],
            },
        ),
    ],
)
def test_examples_of_equal_errors(api, catalog, item, errors):
    alone, in_bulk = both(api, "post", "products", item)
    assert alone == in_bulk == list(errors.items())


def test_envelope_refusals_are_added_to_the_items_errors(api, catalog):
    item = {"sku": "E-0", "name": "x", "category": "Tools", "price": "-1", "_ref": 5}
    [result] = bulk(api, "post", "products", {"items": [item], "dry_run": True}).json()["results"]
    assert result["errors"] == {
        "sku": ["product with this SKU already exists."],
        "price": ["Ensure this value is greater than or equal to 0."],
        "_ref": ["Must be a string of at most 255 characters."],
    }


@pytest.mark.parametrize(
    ("resource", "field", "item"),
    [
        ("products", "category", {"sku": "M-1", "name": "x", "price": "1"}),
        ("orders", "product", {"customer": "ann@example.com", "quantity": "1"}),
        ("orders", "customer", {"product": "E-0", "quantity": "1"}),
    ],
)
@pytest.mark.parametrize("body", ["multipart", "form", "json"])
def test_nul_in_a_related_field_is_a_400_on_the_single_endpoint(
    api, catalog, resource, field, item, body
):
    item = {**item, field: "E-0" + NUL, "placed_at": "2024-05-01T12:00:00Z"}
    if body == "json":
        response = api.post(f"/api/{resource}/", item, format="json")
    elif body == "multipart":
        response = api.post(f"/api/{resource}/", item, format="multipart")
    else:
        from urllib.parse import urlencode

        response = api.post(
            f"/api/{resource}/", urlencode(item), content_type="application/x-www-form-urlencoded"
        )
    assert response.status_code == 400, response.content
    assert response.json()[field] == ["Null characters are not allowed."]
