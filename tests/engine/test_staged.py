"""Staged chunks as JSON (``StagedChunk.to_json``/``from_json``) and ``with_errors``."""

import datetime
import json
import math
from decimal import Decimal

import pytest
from django.db import connection

from bulkops.engine import Batch, SourceRow, StagedChunk, StagedRow
from bulkops.engine.tagged import decode, encode
from project.catalog.models import Order, Product
from project.catalog.serializers import (
    CategorySerializer,
    CustomerSerializer,
    OrderSerializer,
    ProductSerializer,
)
from tests.factories import CustomerFactory, OrderFactory, ProductFactory

pytestmark = pytest.mark.django_db


def round_trip(staged, model):
    text = json.dumps(staged.to_json(), allow_nan=False)  # no custom encoder, strict JSON
    return StagedChunk.from_json(json.loads(text), model=model)


@pytest.fixture
def world(tools):
    customer = CustomerFactory(email="ann@example.com")
    product = ProductFactory(
        sku="E-1", category=tools, price=Decimal("3.50"), released=datetime.date(2024, 2, 29)
    )
    order = OrderFactory(customer=customer, product=product)
    return customer, product, order


def product_rows():
    return [
        SourceRow(
            {
                "sku": "N-1",
                "name": "Widget",
                "category": "Tools",
                "price": Decimal("12.30"),  # a spreadsheet cell, as a reader gives it
                "quantity": 4,
                "active": False,
                "released": datetime.date(2024, 5, 1),
            },
            row=2,
            ref="a",
        ),
        SourceRow(
            {"sku": "N-2", "name": "Gadget", "category": "Tools", "price": "1", "released": None},
            row=3,
            ref={"nested": [1, 2.5]},
        ),
        SourceRow(  # invalid: its source and errors must survive
            {
                "sku": "N-3",
                "category": "Nope",
                "price": "-1",
                "released": datetime.date(2020, 1, 1),
            },
            row=4,
        ),
        SourceRow({"sku": "R-1"}, row=5, errors={"non_field_errors": ["Row has 9 cells."]}),
    ]


CASES = {
    "product create": (ProductSerializer, "create", product_rows),
    "product upsert": (
        ProductSerializer,
        "upsert",
        lambda: [
            {"sku": "E-1", "name": "Renamed", "category": "Tools", "price": "9.99"},
            {"sku": "N-9", "name": "New", "category": "Tools", "price": "0.01"},
        ],
    ),
    "product update by id": (
        ProductSerializer,
        "update",
        lambda: [{"id": Product.objects.get(sku="E-1").pk, "released": "2023-12-31"}],
    ),
    "product delete": (ProductSerializer, "delete", lambda: [{"sku": "E-1"}, {"sku": "NOPE"}]),
    "category create": (CategorySerializer, "create", lambda: [{"name": "Garden"}, {"name": ""}]),
    "customer upsert": (
        CustomerSerializer,
        "upsert",
        lambda: [
            {"email": "ann@example.com", "name": "Ann", "country": "FR"},
            {"email": "bob@example.com", "name": "Bob", "country": "de"},
        ],
    ),
    "order create": (
        OrderSerializer,
        "create",
        lambda: [
            {
                "customer": "ann@example.com",
                "product": "E-1",
                "quantity": 2,
                "placed_at": "2024-05-01T12:30:15.123456+02:00",
            },
            {"customer": "nobody@example.com", "product": "E-1", "quantity": 0},
        ],
    ),
    "order update": (
        OrderSerializer,
        "update",
        lambda: [{"id": Order.objects.get().pk, "placed_at": "2025-01-01T00:00:00Z"}],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_validated_chunk_survives_json_unchanged(world, case):
    serializer_class, mode, rows = CASES[case]
    batch = Batch(serializer_class=serializer_class, mode=mode)
    staged = batch.validate_chunk(0, rows())

    back = round_trip(staged, batch.model)

    assert back == staged
    assert back.keys == staged.keys
    for before, after in zip(staged.rows, back.rows, strict=True):
        assert after.instance is None and after.related is None  # never serialized
        for name, value in (before.values or {}).items():
            assert type(after.values[name]) is type(value), name
            if isinstance(value, datetime.datetime):
                assert after.values[name].utcoffset() == value.utcoffset()


@pytest.mark.parametrize("case", CASES)
def test_a_chunk_kept_without_its_sources_gets_them_back(world, case):
    serializer_class, mode, rows = CASES[case]
    batch = Batch(serializer_class=serializer_class, mode=mode)
    staged = batch.validate_chunk(0, rows())
    text = json.dumps(staged.to_json(sources=False), allow_nan=False)

    assert all(row[-1] is None for row in json.loads(text)["rows"])  # not kept twice
    back = StagedChunk.from_json(text, model=batch.model, sources=[r.source for r in staged.rows])
    assert back == staged
    with pytest.raises(ValueError, match="source rows for a staged chunk of"):
        StagedChunk.from_json(text, model=batch.model, sources=[r.source for r in staged.rows][1:])


def test_values_are_kept_as_the_model_fields_take_them(world):
    batch = Batch(serializer_class=ProductSerializer, mode="create")
    staged = round_trip(batch.validate_chunk(0, product_rows()), Product)
    first, second, invalid, ragged = staged.rows

    assert first.values == {
        "sku": "N-1",
        "name": "Widget",
        "category_id": world[1].category_id,
        "price": Decimal("12.30"),
        "quantity": 4,
        "active": False,
        "released": datetime.date(2024, 5, 1),
    }
    assert (first.action, first.pk, first.ref, first.row) == ("create", None, "a", 2)
    assert second.ref == {"nested": [1, 2.5]}
    assert second.values["released"] is None
    assert (invalid.action, invalid.values) == (None, None)
    assert invalid.errors == {
        "name": ["This field is required."],
        "category": ["Object with name=Nope does not exist."],
        "price": ["Ensure this value is greater than or equal to 0."],
    }
    assert invalid.source["released"] == datetime.date(2020, 1, 1)
    assert ragged.errors["non_field_errors"] == ["Row has 9 cells."]  # after DRF's own
    assert staged.keys == {"unique:sku": [["N-1", 2], ["N-2", 3]]}


HOSTILE = {
    "nul": "a\x00b",
    "surrogate": "\ud800x",
    "nan": math.inf,
    "decimal": Decimal("1.10"),
    "date": datetime.date(2024, 1, 2),
    "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC),
    "time": datetime.time(23, 59),
    "tag-like": {"$date": "not a date"},
    "key\x00": [None, True, 1, 1.5, {"deep": Decimal("0")}],
    "bytes": b"\x00\xff",
}


def test_source_values_round_trip_through_strict_json_and_jsonb(tools):
    staged = StagedChunk(
        0,
        [StagedRow(0, row=2, ref="\x00ref", errors={"sku": ["bad \x00"]}, source=HOSTILE)],
        {},
        Product,
    )
    text = json.dumps(staged.to_json(), allow_nan=False)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # what a job's JSONField would store
            cursor.execute("SELECT %s::jsonb::text", [text])
            text = cursor.fetchone()[0]

    back = StagedChunk.from_json(text, model=Product)

    assert back == staged
    assert back.rows[0].source == HOSTILE


@pytest.mark.parametrize(
    "value",
    [None, "", "text", 0, -7, 2**70, 1.25, True, [], {}, [1, [2, {"a": None}]], {"$x": 1}],
)
def test_plain_json_values_encode_to_themselves_or_round_trip(value):
    assert decode(json.loads(json.dumps(encode(value)))) == value
    if not (isinstance(value, dict) and any(k.startswith("$") for k in value)):
        assert encode(value) == value


def test_a_chunk_of_another_format_is_refused():
    with pytest.raises(ValueError, match="format 99 is not 1; .* validate the rows again"):
        StagedChunk.from_json({"format": 99, "start": 0, "rows": []}, model=Product)


def test_with_errors_returns_a_new_chunk_and_merges_messages_once():
    rows = [
        StagedRow(0, action="create", values={"sku": "A"}, source={"sku": "A"}),
        StagedRow(1, action="create", values={"sku": "B"}, source={"sku": "B"}),
        StagedRow(2, errors={"price": ["bad"]}, source={}),
    ]
    staged = StagedChunk(0, rows, {}, Product)
    extra = {"1": {"sku": ["dup"]}, 2: {"price": ["bad", "worse"]}}

    marked = staged.with_errors(extra)

    assert staged.rows[1].errors is None and staged.rows[1].action == "create"  # untouched
    assert marked.rows[0] is staged.rows[0]
    assert (marked.rows[1].errors, marked.rows[1].action) == ({"sku": ["dup"]}, None)
    assert marked.rows[2].errors == {"price": ["bad", "worse"]}
    assert marked.invalid == 2 and staged.invalid == 1
    assert marked.with_errors(extra) == marked  # applying twice changes nothing
    assert staged.with_errors({}) is staged
