"""bulkops.engine.readers.headers: header rows -> serializer fields."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from bulkops.engine.readers.headers import (
    FieldIndex,
    check_required_columns,
    column_letters,
    map_headers,
    normalise_header,
)
from bulkops.exceptions import InvalidOptions, MissingColumns, UnreadableFile
from project.catalog.serializers import CustomerSerializer, OrderSerializer, ProductSerializer


class LineSerializer(serializers.Serializer):
    """Fields of every kind the index has to sort out."""

    id = serializers.IntegerField(read_only=True)
    code = serializers.CharField()
    unit_price = serializers.DecimalField(max_digits=8, decimal_places=2, label="Price each")
    note = serializers.CharField(required=False, label="Code")  # a label clashing with a name
    created = serializers.DateTimeField(read_only=True)
    owner = serializers.HiddenField(default="me")
    secret = serializers.CharField(write_only=True, required=False)

    class Meta:
        natural_key = ("code",)


def header_map(headers, serializer=None):
    return map_headers(headers, FieldIndex(serializer or LineSerializer()))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Unit Price", "unit price"),
        ("unit_price", "unit price"),
        ("  UNIT-PRICE ", "unit price"),
        ("unit __ - price", "unit price"),
        ("Straße", "strasse"),
        ("", ""),
    ],
)
def test_normalise_header(header, expected):
    assert normalise_header(header) == expected


@pytest.mark.parametrize(
    ("index", "letters"), [(0, "A"), (25, "Z"), (26, "AA"), (27, "AB"), (701, "ZZ"), (702, "AAA")]
)
def test_column_letters(index, letters):
    assert column_letters(index) == letters


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("code", "code"),
        ("CODE", "code"),  # a name beats another field's label "Code"
        ("unit price", "unit_price"),
        ("Unit-Price", "unit_price"),
        ("Price each", "unit_price"),  # by label
        ("price_each", "unit_price"),
        ("note", "note"),
        ("secret", "secret"),  # write-only fields are writable
        ("id", "id"),  # read-only, but names rows for update/delete
        ("ID", "id"),
        ("created", None),  # read-only
        ("owner", None),  # hidden: never from a file
        ("price", None),
    ],
)
def test_field_index_matches_writable_fields_by_name_or_label(header, field):
    assert FieldIndex(LineSerializer()).match(header) == field


def test_id_is_accepted_when_the_serializer_has_no_id_field():
    class NoId(serializers.Serializer):
        code = serializers.CharField()

    index = FieldIndex(NoId())
    assert index.match("ID") == "id"
    assert isinstance(index.fields["id"], serializers.IntegerField)
    assert index.required_names() == ["code"]


def test_field_index_takes_model_verbose_names_as_labels():
    index = FieldIndex(ProductSerializer())
    assert index.match("SKU") == "sku"
    assert FieldIndex(OrderSerializer()).match("Placed at") == "placed_at"


def test_map_headers_reports_known_and_unknown_columns():
    result = header_map(["Code", "", "colour", "Price each", "  ", ""])
    assert result.headers == ["Code", "", "colour", "Price each"]
    assert result.width == 4
    assert result.columns == {"Code": "code", "Price each": "unit_price"}
    assert result.unknown_columns == ["colour"]
    assert result.positions == [(0, "code"), (3, "unit_price")]


def test_map_headers_turns_numbers_and_dates_into_text():
    import datetime

    result = header_map(["code", 2024.0, 1.5, datetime.date(2024, 1, 2)])
    assert result.unknown_columns == ["2024", "1.5", "2024-01-02"]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (
            ["code", "unit_price", "Price each"],
            "'unit_price' (column 2) and 'Price each' (column 3) both name the field 'unit_price'",
        ),
        (["code", "x", "x", "x"], "'x' is in columns 2, 3 and 4"),
        (
            ["Code", "code", "CODE "],
            "'Code' (column 1), 'code' (column 2) and 'CODE' (column 3) all name the field 'code'",
        ),
        (
            ["code", "Colour", "colour"],
            "'Colour' (column 2) and 'colour' (column 3) both name the same column",
        ),
    ],
)
def test_duplicate_columns_are_named_with_their_positions(headers, message):
    with pytest.raises(UnreadableFile) as caught:
        header_map(headers)
    assert caught.value.code == "duplicate_columns"
    assert caught.value.message == (
        f"Each column may appear only once, but {message}; remove or rename the extra columns."
    )


def test_several_duplicates_in_one_sentence():
    with pytest.raises(UnreadableFile) as caught:
        header_map(["code", "code", "note", "note"])
    assert caught.value.message == (
        "Each column may appear only once, but 'code' is in columns 1 and 2; "
        "'note' is in columns 3 and 4; remove or rename the extra columns."
    )


def test_duplicate_message_uses_the_given_column_labels():
    with pytest.raises(UnreadableFile, match=r"columns B and C"):
        map_headers(["code", "x", "x"], FieldIndex(LineSerializer()), column_label=column_letters)


def check(headers, mode, serializer=None, natural_key=("code",)):
    serializer = serializer or LineSerializer()
    index = FieldIndex(serializer)
    check_required_columns(map_headers(headers, index), index, mode=mode, natural_key=natural_key)


@pytest.mark.parametrize(
    ("headers", "mode"),
    [
        (["code", "price each"], "create"),
        (["code", "price each", "note"], "upsert"),
        (["id"], "update"),
        (["code"], "update"),
        (["ID", "note"], "delete"),
        (["code"], "delete"),
    ],
)
def test_required_columns_present(headers, mode):
    check(headers, mode)


@pytest.mark.parametrize(
    ("headers", "mode", "natural_key", "message"),
    [
        (
            ["code", "note"],
            "create",
            ("code",),
            "Column 'unit_price' is required; the file has: code, note",
        ),
        (
            ["note", "", "colour"],
            "create",
            ("code",),
            "Columns 'code' and 'unit_price' are required; the file has: note, colour",
        ),
        (
            ["note"],
            "update",
            ("code",),
            "Column 'id' or 'code' is required to find the rows to update; the file has: note",
        ),
        (
            ["note"],
            "delete",
            (),
            "Column 'id' is required to find the rows to delete; the file has: note",
        ),
        (
            ["code", "price each"],
            "update",
            ("code", "note"),
            "Column 'id', or columns 'code' and 'note', must be present to find the rows to "
            "update; the file has: code, price each",
        ),
        (
            ["code", "unit price"],
            "upsert",
            ("code", "note"),
            "Column 'note' is required; the file has: code, unit price",
        ),
    ],
)
def test_missing_columns_say_which_and_what_the_file_has(headers, mode, natural_key, message):
    with pytest.raises(MissingColumns) as caught:
        check(headers, mode, natural_key=natural_key)
    assert caught.value.message == message
    assert caught.value.code == "missing_columns"


def test_missing_columns_for_the_demo_product():
    with pytest.raises(MissingColumns) as caught:
        check(["sku", "name", "qty"], "create", ProductSerializer(), ("sku",))
    assert caught.value.message == (
        "Columns 'category' and 'price' are required; the file has: sku, name, qty"
    )
    assert caught.value.extra == {"missing": ["category", "price"], "found": ["sku", "name", "qty"]}


def test_fields_with_defaults_are_not_required():
    # Customer: every field required; Product: quantity/active/released have defaults.
    check(["email", "name", "country"], "create", CustomerSerializer(), ("email",))
    check(["sku", "name", "category", "price"], "create", ProductSerializer(), ("sku",))


def test_a_column_map_wins_over_the_automatic_matching():
    index = FieldIndex(LineSerializer(), {"Unit cost": "unit_price", "Code": None})
    assert index.match("unit  COST") == "unit_price"  # compared as headers are
    assert index.match("code") is None  # ignored by choice, though it names a field
    assert index.match("note") == "note"  # headers the map leaves out match as usual


def test_a_column_map_naming_an_unknown_field_lists_the_fields():
    with pytest.raises(InvalidOptions) as caught:
        FieldIndex(LineSerializer(), {"a": "nope", "b": "created"})
    assert caught.value.message == (
        "The column map names 'created', 'nope', which no column can fill; "
        "the fields are: code, id, note, secret, unit_price."
    )


def test_open_rows_reads_mapped_columns_and_checks_required_ones_on_the_result(tmp_path):
    from bulkops.engine.readers import open_rows

    path = tmp_path / "items.csv"
    path.write_text("Reference,Unit cost,Remark\nA-1,2.50,x\n")
    with open_rows(
        path,
        serializer=LineSerializer(),
        column_map={"Reference": "code", "Unit cost": "unit_price", "Remark": None},
    ) as source:
        assert source.columns == {"Reference": "code", "Unit cost": "unit_price"}
        assert source.unknown_columns == ["Remark"]
        assert [row.values for row in source] == [{"code": "A-1", "unit_price": "2.50"}]
    with pytest.raises(MissingColumns):
        open_rows(path, serializer=LineSerializer(), column_map={"Unit cost": None})
