"""Values that would break a lookup query become the row's error, never a crash."""

import pytest

from bulkops.engine import run_batch
from bulkops.engine.lookups import filter_in
from project.catalog.models import Category, Product
from project.catalog.serializers import ProductSerializer

pytestmark = pytest.mark.django_db


@pytest.fixture
def widget():
    tools = Category.objects.create(name="Tools")
    return Product.objects.create(sku="W-1", name="Widget", category=tools, price=1, quantity=1)


def _errors(rows, mode):
    result = run_batch(serializer_class=ProductSerializer, rows=rows, mode=mode)
    return [r.errors for r in result.results]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (1.5, "A valid integer is required."),
        (True, "Incorrect type for an identifier."),
        (10**27, "A valid integer is required."),
        ("7 OR 1=1", "A valid integer is required."),
        ({"id": 1}, "Incorrect type for an identifier."),
    ],
)
@pytest.mark.parametrize("mode", ["update", "delete"])
def test_an_id_that_is_not_an_integer_names_no_object(widget, raw, message, mode):
    assert _errors([{"id": raw, "name": "x"}], mode) == [{"id": [message]}]
    widget.refresh_from_db()
    assert widget.name == "Widget"


def test_an_id_given_as_text_names_its_object(widget):
    result = run_batch(
        serializer_class=ProductSerializer,
        rows=[{"id": f" {widget.pk} ", "name": "New"}],
        mode="update",
    )
    assert [r.status for r in result.results] == ["updated"]


@pytest.mark.parametrize("mode", ["update", "upsert", "delete"])
def test_nul_in_a_natural_key_is_the_rows_error(widget, mode):
    row = {"sku": "W-\x001", "name": "x", "category": "Tools", "price": "1", "quantity": 1}
    assert _errors([row], mode) == [{"sku": ["Null characters are not allowed."]}]


def test_nul_in_a_related_natural_key_is_the_rows_error(widget):
    row = {"sku": "N-1", "name": "x", "category": "To\x00ols", "price": "1", "quantity": 1}
    assert _errors([row], "create") == [{"category": ["Null characters are not allowed."]}]
    assert Product.objects.count() == 1


TEXTS = [
    "W-1",
    'quote " and \\ backslash',
    "new\nline, tab\t, bell \x07",
    "ünïcødé €",
    "emoji \U0001f600",
    "  spaced  ",
    "",
    "{braces,comma}",
    "NULL",
    "w-1",
]


@pytest.mark.parametrize("lookup", ["sku", "name"])
def test_filter_in_finds_texts_as_the_in_lookup_does(lookup):
    tools = Category.objects.create(name="Tools")
    for n, text in enumerate(TEXTS):
        Product.objects.create(
            sku=f"{text}|{n}" if lookup == "name" else text,
            name=text,
            category=tools,
            price=1,
            quantity=1,
        )
    wanted = [*TEXTS[1:], "absent", "W-1 "]
    queryset = Product.objects.all()

    found = filter_in(queryset, lookup, wanted).values_list("pk", flat=True)

    assert sorted(found) == sorted(
        queryset.filter(**{f"{lookup}__in": wanted}).values_list("pk", flat=True)
    )
    assert len(found) == len(TEXTS) - 1


def test_filter_in_of_texts_on_an_integer_column_compares_integers():
    tools = Category.objects.create(name="Tools")
    assert list(filter_in(Category.objects.all(), "pk", [str(tools.pk)])) == [tools]
