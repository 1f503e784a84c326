"""The column-mapping step's logic: reading the head of a file, suggesting, checking."""

from __future__ import annotations

import io
import json

import pytest

from bulkops.admin.mapping import (
    abbreviates,
    check_mapping,
    inspect_file,
    remember_mapping,
    suggest_mapping,
)
from bulkops.admin.models import ColumnMapping, headers_signature
from bulkops.exceptions import MissingColumns, UnreadableFile
from project.catalog.serializers import OrderSerializer, ProductSerializer
from tests.admin.conftest import csv_bytes, xlsx_bytes

HEADERS = ["SKU", "Name", "Category", "Unit price", "Qty", "Notes"]
ROWS = [
    ["A-1", "Hammer", "Tools", "9.99", "3", "red"],
    ["A-2", "Saw", "Tools", "19.99", "1", ""],
    ["A-3", "Drill", "Tools", "99", "2", "blue"],
    ["A-4", "Nails", "Tools", "1", "9", "green"],
]


def inspect(data: bytes, name: str, **kwargs):
    return inspect_file(io.BytesIO(data), name, serializer=ProductSerializer(), **kwargs)


@pytest.mark.parametrize(
    "name, data",
    [
        ("p.csv", csv_bytes([HEADERS, *ROWS])),
        ("p.xlsx", xlsx_bytes([HEADERS, *ROWS])),
        ("p.tsv", "\n".join("\t".join(r) for r in [HEADERS, *ROWS]).encode()),
    ],
)
def test_inspect_reads_header_and_three_samples(name, data):
    preview = inspect(data, name)

    assert preview.headers == HEADERS
    assert [c.matched for c in preview.columns] == ["sku", "name", "category", None, None, None]
    assert preview.columns[0].samples == ["A-1", "A-2", "A-3"]
    assert preview.columns[5].samples == ["red", "blue"]  # empty cells are not samples
    assert [c.header for c in preview.unmatched] == ["Unit price", "Qty", "Notes"]


def test_inspect_workbook_labels_columns_by_letter_and_counts_rows():
    preview = inspect(xlsx_bytes([HEADERS, *ROWS]), "p.xlsx")
    assert [c.label for c in preview.columns][:3] == ["A", "B", "C"]
    assert preview.total_rows == 4
    assert preview.sheet == "Sheet1"


def test_inspect_json_takes_keys_of_the_first_objects():
    items = [{"sku": "A-1", "Unit price": "1"}, {"sku": "A-2", "colour": "red"}]
    preview = inspect(json.dumps(items).encode(), "p.json")
    assert preview.headers == ["sku", "Unit price", "colour"]
    assert preview.columns[2].samples == ["red"]


def test_long_samples_are_shortened():
    preview = inspect(csv_bytes([["sku"], ["x" * 500]]), "p.csv")
    assert len(preview.columns[0].samples[0]) == 60
    assert preview.columns[0].samples[0].endswith("…")


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("p.pdf", b"%PDF", "Files of type '.pdf' cannot be imported"),
        ("p.xlsx", b"\x00junk" * 100, "not a readable XLSX workbook"),
        ("p.csv", b"", "empty"),
        ("p.csv", csv_bytes([HEADERS]), "no rows below them"),
        ("p.xlsx", xlsx_bytes([HEADERS]), "no rows below them"),
        ("p.csv", csv_bytes([["sku", "SKU"], ["a", "b"]]), "Each column may appear only once"),
        ("p.json", b'{"sku": 1}', "must hold an array of objects"),
    ],
)
def test_inspect_refuses_bad_files_with_one_sentence(name, data, message):
    with pytest.raises(UnreadableFile) as caught:
        inspect(data, name)
    assert message in caught.value.message


def test_inspect_refuses_files_over_the_size_limit(settings):
    settings.BULKOPS = {"MAX_UPLOAD_BYTES": 100}
    with pytest.raises(UnreadableFile, match="more than the limit of 100 bytes"):
        inspect(csv_bytes([HEADERS, *ROWS] * 5), "p.csv")


@pytest.mark.django_db
def test_suggestions_by_name_spelling_and_abbreviation():
    preview = inspect(csv_bytes([HEADERS, *ROWS]), "p.csv")
    remembered = suggest_mapping(
        preview, ProductSerializer(), model_label="catalog.product", with_id=False
    )

    assert remembered is None
    suggested = {c.header: (c.suggested, c.reason) for c in preview.columns}
    assert suggested == {
        "SKU": ("sku", "name"),
        "Name": ("name", "name"),
        "Category": ("category", "name"),
        "Unit price": ("price", "similar"),
        "Qty": ("quantity", "similar"),
        "Notes": (None, ""),
    }


@pytest.mark.django_db
def test_a_field_already_matched_is_not_suggested_again():
    preview = inspect(csv_bytes([["sku", "name", "Names"], ["a", "b", "c"]]), "p.csv")
    suggest_mapping(preview, ProductSerializer(), model_label="catalog.product", with_id=False)
    assert preview.columns[2].suggested is None


@pytest.mark.django_db
def test_remembered_mapping_is_offered_for_the_same_headers():
    headers = ["sku", "name", "category", "Cost", "Stock"]
    mapping = {"sku": "sku", "name": "name", "category": "category", "Cost": "price"}
    remember_mapping(
        model_label="catalog.product", headers=headers, mapping=mapping | {"Stock": None}, user=None
    )
    # The same headers, spelled differently: still the same signature.
    preview = inspect(csv_bytes([["SKU", "Name", "CATEGORY", "cost", "stock"], ["a"] * 5]), "p.csv")
    assert headers_signature(preview.headers) == headers_signature(headers)
    remembered = suggest_mapping(
        preview, ProductSerializer(), model_label="catalog.product", with_id=False
    )
    assert remembered is not None
    by_header = {c.header: (c.suggested, c.reason) for c in preview.columns}
    assert by_header["cost"] == ("price", "remembered")
    assert by_header["stock"] == (None, "remembered")


@pytest.mark.django_db
def test_a_choice_made_before_is_suggested_for_other_headers():
    remember_mapping(
        model_label="catalog.product",
        headers=["sku", "Cost"],
        mapping={"sku": "sku", "Cost": "price"},
        user=None,
    )
    preview = inspect(csv_bytes([["sku", "name", "COST"], ["a", "b", "1"]]), "p.csv")
    assert (
        suggest_mapping(preview, ProductSerializer(), model_label="catalog.product", with_id=False)
        is None
    )
    assert (preview.columns[2].suggested, preview.columns[2].reason) == ("price", "used before")


@pytest.mark.django_db
def test_exact_remembered_mapping_wins_over_the_engine_match():
    headers = ["sku", "name", "category", "price", "quantity"]
    remember_mapping(
        model_label="catalog.product",
        headers=headers,
        mapping={
            "sku": "sku",
            "name": "name",
            "category": "category",
            "price": "price",
            "quantity": None,
        },
        user=None,
    )
    preview = inspect(csv_bytes([headers, ["a", "b", "c", "1", "2"]]), "p.csv")
    remembered = suggest_mapping(
        preview, ProductSerializer(), model_label="catalog.product", with_id=False
    )
    assert remembered is not None
    assert preview.columns[4].suggested is None
    assert preview.columns[4].reason == "remembered"


@pytest.mark.django_db
def test_remember_mapping_updates_one_record_per_headers():
    headers = ["sku", "Cost"]
    remember_mapping(
        model_label="catalog.product", headers=headers, mapping={"Cost": "price"}, user=None
    )
    remember_mapping(
        model_label="catalog.product", headers=headers, mapping={"Cost": None}, user=None
    )
    assert ColumnMapping.objects.count() == 1
    assert ColumnMapping.objects.get().mapping == {"sku": None, "Cost": None}


def test_check_mapping_uses_the_engines_sentence_for_a_missing_column():
    headers = ["sku", "name", "Cost"]
    with pytest.raises(MissingColumns) as caught:
        check_mapping(
            headers,
            {"sku": "sku", "name": "name", "Cost": None},
            ProductSerializer(),
            mode="create",
            natural_key=("sku",),
        )
    assert caught.value.message == (
        "Columns 'category' and 'price' are required; the file has: sku, name, Cost"
    )


def test_check_mapping_refuses_two_columns_for_one_field():
    with pytest.raises(UnreadableFile, match="'Cost' and 'Price' are both mapped to the field"):
        check_mapping(
            ["Cost", "Price"],
            {"Cost": "price", "Price": "price"},
            ProductSerializer(),
            mode="update",
            natural_key=("sku",),
        )


def test_check_mapping_update_needs_id_or_the_key():
    with pytest.raises(MissingColumns, match="Column 'id' or 'sku' is required"):
        check_mapping(
            ["Cost"], {"Cost": "price"}, ProductSerializer(), mode="update", natural_key=("sku",)
        )
    check_mapping(["Id"], {"Id": "id"}, OrderSerializer(), mode="update", natural_key=())


@pytest.mark.parametrize(
    "short, long, expected",
    [
        ("qty", "quantity", True),
        ("desc", "description", True),
        ("cat", "category", True),
        ("ytq", "quantity", False),
        ("q", "quantity", False),
        ("price", "price", False),
    ],
)
def test_abbreviates(short, long, expected):
    assert abbreviates(short, long) is expected
