"""COPY text made a column at a time (``bulkops.engine.copytext``): the database stores
exactly what psycopg's own adapters (``Copy.write_row``) would have it store."""

from __future__ import annotations

import datetime
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkops.engine.copytext import copy_text
from bulkops.engine.statements import Statements
from project.catalog.models import Category, Product

PLAN_ROW = {"sku": "A", "name": "n", "category_id": 1, "price": Decimal("1.50"), "quantity": 2}


def plan():
    return Statements(Product, "default", ("sku",)).insert_plan


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_columns_render_as_copy_text():
    rows = [
        {**PLAN_ROW, "name": "tab\there\\", "active": True, "released": datetime.date(2024, 2, 29)},
        {**PLAN_ROW, "sku": "B", "name": "line\nend\r\b\f\v", "active": False, "released": None},
    ]
    text = copy_text([7, 8], rows, plan())
    assert text == (
        "7\tA\ttab\\there\\\\\t1\t1.50\t2\tt\t2024-02-29\n"
        "8\tB\tline\\nend\\r\\b\\f\\v\t1\t1.50\t2\tf\t\\N\n"
    )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
@pytest.mark.parametrize(
    "change",
    [
        {"name": "nul\x00"},
        {"name": "lone \ud800"},
        {"price": Decimal("NaN")},
        {"price": 1.5},
        {"quantity": True},
        {"released": datetime.datetime(2024, 1, 1, 12)},
    ],
)
def test_a_column_copy_text_cannot_render_goes_to_psycopg(change):
    rows = [{**PLAN_ROW, "active": True, "released": None}, {**PLAN_ROW, **change}]
    if "quantity" in change:  # ints and bools in one column
        rows[0]["quantity"] = 1
    assert copy_text([1, 2], rows, plan()) is None


def stored(rows, *, by_text):
    """Write ``rows`` by COPY (COPY text, or psycopg's adapters) and read them back."""
    statements = Statements(Product, "default", ("sku",))
    with transaction.atomic():
        if by_text:
            ids = statements.copy(rows)
        else:
            with mock.patch("bulkops.engine.statements.copy_text", return_value=None):
                ids = statements.copy(rows)
        found = list(
            Product.objects.filter(pk__in=ids)
            .order_by("pk")
            .values_list("sku", "name", "category_id", "price", "quantity", "active", "released")
        )
        transaction.set_rollback(True)
    return found


text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
) | st.sampled_from(["\\N", "\\", "\t", "\\t", "a\r\nb", "\b\f\v", "ünï ✓", " "])


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "name": text,
                "price": st.decimals(min_value=0, max_value=Decimal("99999999.99"), places=2),
                "quantity": st.integers(0, 2**31 - 1),
                "active": st.booleans(),
            },
            optional={"released": st.none() | st.dates()},
        ),
        min_size=1,
        max_size=30,
    )
)
def test_copy_text_stores_what_psycopg_stores(values):
    category = Category.objects.get_or_create(name="Tools")[0]
    rows = [{"sku": f"S-{i}", "category_id": category.pk, **row} for i, row in enumerate(values)]
    # A row without "released" is written with the field's default.
    assert copy_text([1] * len(rows), rows, plan()) is not None
    assert stored(rows, by_text=True) == stored(rows, by_text=False)
