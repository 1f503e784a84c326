"""The column validator (``bulkops.engine.columns``) against DRF's per-row ``to_internal_value``.

Hypothesis draws, per supported field type, the field's options and columns of valid,
borderline and invalid cells (repeating, so the per-distinct-value cache is used), and
every row's outcome must be DRF's: the validated dict with the same keys, order, values
and types, or the error detail with the same keys, order, messages and codes, or the
same exception escaping. Hand-written cases pin each fast path's edges and prove the
fast paths are taken, and that per-row-only fields see rows in order.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import string
import types
import zoneinfo
from decimal import Decimal
from unittest import mock

import pytest
from django.core import validators as dj
from django.db import models
from django.http import QueryDict
from django.utils.safestring import mark_safe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError

from bulkops.engine.columns import ColumnPlan, ValidatedColumns
from bulkops.engine.lookups import RelationResolver
from bulkops.engine.serializer import SURROGATE_CHECK
from bulkops.engine.validate import ChunkValidator
from project.catalog.models import Category

MISSING = object()  # a cell whose key the row does not have
UTC = datetime.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
# Hypothesis settings: many rows per example, so each field type compares thousands of cells.
EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MIN_CELLS = 10000


# -- comparing outcomes exactly ------------------------------------------------------


def canon(value):
    """A value made comparable by type, exact text and order (Decimal('1.0') is not
    Decimal('1.00'), -0.0 is not 0.0, an ErrorDetail carries its code)."""
    if isinstance(value, ErrorDetail):
        return ("ErrorDetail", str(value), value.code)
    if isinstance(value, dict):
        return (type(value).__name__, [(k, canon(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [canon(v) for v in value])
    if isinstance(value, models.Model):
        return ("model", type(value).__name__, value.pk, id(value))
    if isinstance(value, datetime.datetime):
        return ("datetime", repr(value), value.fold)
    return (type(value).__name__, repr(value))


def drf_outcome(serializer, row):
    try:
        return ("ok", canon(serializers.Serializer.to_internal_value(serializer, row)))
    except ValidationError as exc:
        return ("error", canon(exc.detail))
    except Exception as exc:
        return ("raise", type(exc).__name__, str(exc))


def column_outcomes(serializer, rows):
    columns = ColumnPlan.for_serializer(serializer).validate_columns(rows)
    outcomes = []
    for index in range(len(rows)):
        try:
            outcomes.append(("ok", canon(columns.to_internal_value(index))))
        except ValidationError as exc:
            outcomes.append(("error", canon(exc.detail)))
        except Exception as exc:
            outcomes.append(("raise", type(exc).__name__, str(exc)))
    return outcomes


def assert_same_as_drf(serializer, rows):
    expected = [drf_outcome(serializer, row) for row in rows]
    assert column_outcomes(serializer, rows) == expected
    if not any(o[0] == "raise" for o in expected):
        # The batch call gives the same, as (validated, detail) pairs.
        pairs = ColumnPlan.for_serializer(serializer).to_internal_values(rows)
        assert [
            ("ok", canon(v)) if d is None else ("error", canon(d)) for v, d in pairs
        ] == expected


# -- cells ---------------------------------------------------------------------------

SPECIAL_TEXT = [
    "",
    " ",
    "  \t",
    "\n",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfff",
    "null",
    "None",
    "true",
    "True",
    "FALSE",
    "yes",
    "on",
    "off",
    "t",
    "0",
    "1",
    "-0",
    "+5",
    "0012",
    "1e3",
    "1E-2",
    " 12 ",
    "12.",
    ".5",
    "1_000",
    "\u0661\u0662\u0663",
    "12.0",
    "12.00",
    "1.005",
    "-1.5",
    "NaN",
    "nan",
    "sNaN",
    "Infinity",
    "-inf",
    "9999999999",
    "99999.99",
    "1,5",
    "2024-01-31",
    "2024-02-30",
    "31/01/2024",
    "20240131",
    "2024-01-31T12:30:00",
    "2024-01-31 12:30:00+02:00",
    "2024-03-31T02:30:00",
    "2024-10-27T02:30:00",
    "0001-01-01T00:00:00+01:00",
    "12:30",
    "25:00",
    "1 02:03:04",
    "P1D",
    "550e8400-e29b-41d4-a716-446655440000",
    "127.0.0.1",
    "::1",
    "::ffff:1.2.3.4",
    "a@b.co",
    "not an email",
    "http://x.org",
    "slug-ok_1",
    "a b",
    "Tools",
    " Tools ",
    "tools",
    "Garden",
    "b",
    "B",
    "x" * 12,
    "%s %(x)s {0}",
]
digit_text = st.from_regex(r"[+-]?[0-9]{1,12}(\.[0-9]{0,6})?", fullmatch=True)
short_text = st.text(alphabet=string.ascii_letters + string.digits + " -_.", max_size=12)
tricky_characters = st.sampled_from(["a", "b", " ", "\t", "\x00", "\ud800", "\udfff", "é", "😀"])
# Any code point, NUL and lone surrogates included (and often).
any_text = st.text(
    alphabet=tricky_characters | st.characters(codec=None, exclude_categories=()), max_size=8
)
ints = st.integers(-(10**6), 10**6) | st.sampled_from(
    [0, 1, -1, 10**17, 10**18 - 1, 10**18, -(10**18) + 1, 2**63, 10**30, -(10**30), 10**5000]
)
floats = st.floats() | st.sampled_from([0.0, -0.0, 1.0, 1.5, 12.345, 1e-7, 1e20, 0.1])
decimals = st.decimals(places=None) | st.sampled_from(
    [
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("-0"),
        Decimal("1.0"),
        Decimal("1.00"),
        Decimal("1E+2"),
    ]
)
datetimes = st.datetimes(
    timezones=st.sampled_from([None, UTC, BERLIN]), allow_imaginary=True
) | st.sampled_from(
    [  # equal datetimes that are not the same input: the fold of an ambiguous hour, zones
        datetime.datetime(2024, 10, 27, 2, 30),
        datetime.datetime(2024, 10, 27, 2, 30, fold=1),
        datetime.datetime(2024, 1, 1, 12, tzinfo=UTC),
        datetime.datetime(2024, 1, 1, 13, tzinfo=BERLIN),
    ]
)
structures = st.lists(st.integers(0, 3), max_size=2) | st.dictionaries(
    st.sampled_from("ab"), st.integers(0, 3), max_size=2
)
json_scalars = st.one_of(st.none(), st.booleans(), ints, floats, short_text)
common = st.one_of(
    st.just(MISSING),
    st.none(),
    st.booleans(),
    st.sampled_from(SPECIAL_TEXT),
    json_scalars,
    structures,
    decimals,
    st.dates(),
    datetimes,
    st.just(mark_safe("Tools")),
)


# Equal to each other across types or forms, yet not the same input to DRF.
look_alikes = st.sampled_from(
    [0, 0.0, -0.0, False, 1, 1.0, True, Decimal("1.0"), Decimal("1.00"), Decimal("-0"), "1", "0"]
)


@st.composite
def columns(draw, cells, width=2, own=False):
    """Rows of ``width`` columns named a, b, ... Each column samples a small pool (so
    equal cells repeat) drawn from some of ``cells`` (so a column of only valid text
    happens often), by a Hypothesis-seeded random: many rows per example. ``own``:
    column i draws from ``cells[i]``, ``common`` and look-alikes only."""
    pools = []
    for column in range(width):
        kinds = [cells[column], common, look_alikes] if own else [*cells, look_alikes]
        chosen = draw(st.sets(st.sampled_from(range(len(kinds))), min_size=1))
        strategy = st.one_of(*(kinds[i] for i in sorted(chosen)))
        pools.append(draw(st.lists(strategy, min_size=1, max_size=10)))
    random = draw(st.randoms(use_true_random=True))
    choose = random.choice
    rows = []
    for _ in range(random.randint(1, 120)):
        row = {}
        for name, pool in zip("abcdefgh", pools, strict=False):
            value = choose(pool)
            if value is not MISSING:
                row[name] = value
        rows.append(row)
    return rows


# -- fields and their options --------------------------------------------------------


@st.composite
def common_options(draw, default=None):
    options = {"allow_null": draw(st.booleans())}
    choice = draw(st.sampled_from(["required", "optional", "default"]))
    if choice == "optional":
        options["required"] = False
    elif choice == "default" and default is not None:
        options["default"] = draw(default)
    return options


@st.composite
def text_fields(draw):
    kind = draw(
        st.sampled_from(
            [serializers.CharField] * 4
            + [serializers.EmailField, serializers.SlugField, serializers.URLField, "regex"]
        )
    )
    options = draw(common_options(st.sampled_from(["", "dflt", None])))
    options["allow_blank"] = draw(st.booleans())
    options["trim_whitespace"] = draw(st.booleans())
    low = draw(st.none() | st.integers(0, 4))
    if low is not None:
        options["min_length"] = low
    high = draw(st.none() | st.integers(0, 10))
    if high is not None:
        options["max_length"] = high
    if kind == "regex":
        return serializers.RegexField(r"^[a-z]+\d*$", **options)
    return kind(**options)


@st.composite
def integer_fields(draw):
    options = draw(common_options(st.sampled_from([0, 7, None])))
    for bound in ("min_value", "max_value"):
        limit = draw(st.none() | st.integers(-50, 50) | st.sampled_from([Decimal("2.5"), 2**63]))
        if limit is not None:
            options[bound] = limit
    # BigIntegerField is DRF 3.16+ (CI runs the oldest DRF allowed too).
    kinds = [
        serializers.IntegerField,
        *([serializers.BigIntegerField] if hasattr(serializers, "BigIntegerField") else []),
    ]
    return draw(st.sampled_from(kinds))(**options)


@st.composite
def float_fields(draw):
    options = draw(common_options(st.sampled_from([0.5, None])))
    for bound in ("min_value", "max_value"):
        limit = draw(st.none() | st.integers(-50, 50) | st.sampled_from([0.5, -0.0]))
        if limit is not None:
            options[bound] = limit
    return serializers.FloatField(**options)


@st.composite
def decimal_fields(draw):
    options = draw(common_options(st.sampled_from([Decimal("1.5"), None, "2"])))
    options["max_digits"] = draw(st.none() | st.integers(1, 12) | st.just(40))
    options["decimal_places"] = draw(st.none() | st.integers(0, 5))
    for bound in ("min_value", "max_value"):
        limit = draw(
            st.none() | st.integers(-50, 50) | st.sampled_from([Decimal("-0.5"), Decimal("99.99")])
        )
        if limit is not None:
            options[bound] = limit
    options["coerce_to_string"] = draw(st.sampled_from([None, True, False]))
    options["localize"] = draw(st.sampled_from([False, False, False, True]))
    options["normalize_output"] = draw(st.booleans())
    options["rounding"] = draw(st.sampled_from([None, decimal.ROUND_HALF_UP, decimal.ROUND_DOWN]))
    return serializers.DecimalField(**options)


@st.composite
def boolean_fields(draw):
    return serializers.BooleanField(**draw(common_options(st.sampled_from([True, False, None]))))


@st.composite
def date_fields(draw):
    options = draw(common_options(st.sampled_from([datetime.date(2024, 1, 1), None])))
    formats = draw(
        st.sampled_from([None, ["%d/%m/%Y"], ["iso-8601", "%Y%m%d"], ["%Y-%m-%dT%H:%M:%S"]])
    )
    if formats is not None:
        options["input_formats"] = formats
    return serializers.DateField(**options)


@st.composite
def datetime_fields(draw):
    options = draw(
        common_options(st.sampled_from([datetime.datetime(2024, 1, 1, tzinfo=UTC), None]))
    )
    formats = draw(st.sampled_from([None, ["%d/%m/%Y %H:%M"], ["iso-8601", "%Y%m%d"]]))
    if formats is not None:
        options["input_formats"] = formats
    zone = draw(st.sampled_from(["default", None, UTC, BERLIN]))
    if zone != "default":
        options["default_timezone"] = zone
    return serializers.DateTimeField(**options)


@st.composite
def other_fields(draw):
    options = draw(common_options())
    kind = draw(st.sampled_from(["time", "duration", "uuid", "ip4", "ip6", "ip"]))
    if kind == "time":
        return serializers.TimeField(
            input_formats=draw(st.sampled_from([None, ["%H.%M"], ["iso-8601"]])), **options
        )
    if kind == "duration":
        return serializers.DurationField(**options)
    if kind == "uuid":
        return serializers.UUIDField(**options)
    protocol = {"ip4": "IPv4", "ip6": "IPv6", "ip": "both"}[kind]
    return serializers.IPAddressField(protocol=protocol, **options)


GROUPED = [
    ("Fruit", [("apple", "Apple"), ("pear", "Pear")]),
    ("Veg", [(1, "One"), (2, "Two")]),
    "x",
]


@st.composite
def choice_fields(draw):
    options = draw(common_options(st.sampled_from(["a", 1, None])))
    options["allow_blank"] = draw(st.booleans())
    choices = draw(
        st.sampled_from(
            [
                ["a", "b", "c"],
                [(1, "one"), (2, "two"), ("2", "str two")],
                GROUPED,
                [True, None, 1.5],
            ]
        )
    )
    return serializers.ChoiceField(choices=choices, **options)


NUMERIC_TEXT = [digit_text, st.sampled_from(SPECIAL_TEXT)]
KINDS = {
    "text": (text_fields(), [short_text, short_text, any_text, common]),
    "integer": (integer_fields(), [digit_text, ints, common]),
    "float": (float_fields(), [digit_text, floats, common]),
    "decimal": (decimal_fields(), [digit_text, digit_text, ints, floats, common]),
    "boolean": (boolean_fields(), [common]),
    "date": (date_fields(), [st.dates(), st.dates().map(str), datetimes.map(str), common]),
    "datetime": (
        datetime_fields(),
        [datetimes, datetimes.map(lambda d: d.isoformat()), datetimes.map(str), common],
    ),
    "other": (other_fields(), [st.times(), st.timedeltas().map(str), st.uuids().map(str), common]),
    "choice": (
        choice_fields(),
        [st.sampled_from(["a", "b", "apple", "1", "2", 2, "True", "1.5", " a"]), common],
    ),
}


def build(declared, *, partial=False, attrs=None):
    """A fresh serializer instance declaring ``declared`` fields (bound copies)."""
    klass = type("Drawn", (serializers.Serializer,), {**declared, **(attrs or {})})
    return klass(partial=partial)


@pytest.mark.parametrize("kind", list(KINDS))
def test_columns_equal_drf_per_row(kind):
    field_strategy, cells = KINDS[kind]
    compared = []

    @EXAMPLES
    @given(st.data())
    def check(data):
        a, b = data.draw(field_strategy), data.draw(field_strategy)
        if data.draw(st.booleans()):
            b = b.__class__(*b._args, **{**b._kwargs, "source": "nested.b"})
        serializer = build({"a": a, "b": b}, partial=data.draw(st.booleans()))
        rows = data.draw(columns(cells))
        assert_same_as_drf(serializer, rows)
        compared.append(len(rows) * 2)

    check()
    assert sum(compared) >= MIN_CELLS


@pytest.mark.django_db
def test_related_columns_equal_drf_per_row():
    categories = [Category.objects.get_or_create(name=n)[0] for n in ("Tools", "Garden", "tools ")]
    pks = [c.pk for c in categories]
    cells = [
        st.sampled_from(["Tools", "Garden", " Tools ", "tools", "tools ", "Nope", "", "To\x00ols"]),
        st.sampled_from(pks + [str(pk) for pk in pks] + [f" {pks[0]} ", 10**9, -1, 1.5, 10**30]),
        common,
    ]
    compared = []

    @EXAMPLES
    @given(st.data())
    def check(data):
        options = data.draw(common_options())
        queryset = Category.objects.all()
        declared = {
            "a": serializers.SlugRelatedField(slug_field="name", queryset=queryset, **options),
            "b": serializers.PrimaryKeyRelatedField(queryset=queryset, **options),
        }
        serializer = build(declared, partial=data.draw(st.booleans()))
        rows = data.draw(columns(cells))
        for name in ("a", "b"):
            resolver = RelationResolver(serializer.fields[name])
            resolver.prefetch(rows)
        assert ColumnPlan.for_serializer(serializer).strategies == {
            "a": "distinct",
            "b": "distinct",
        }
        assert_same_as_drf(serializer, rows)
        compared.append(len(rows) * 2)

    check()
    assert sum(compared) >= MIN_CELLS


# -- the catalog's serializers, as the engine prepares them -------------------------

CATALOG_CELLS = {
    "sku": st.sampled_from(["SKU-1", " SKU-2 ", "", "x" * 65, "S\x00", 12]),
    "name": short_text | any_text,
    "category": st.sampled_from(["Tools", "Garden", "Nope", " Tools", None, 1]),
    "price": digit_text | floats | st.sampled_from(["-1", "1e3", "12345678.9", "0.001"]),
    "quantity": digit_text | ints | st.sampled_from(["-0", " 3 ", "2.0"]),
    "active": st.sampled_from(["true", "false", "1", "0", "yes", "maybe", True, 0, None]),
    "released": st.sampled_from(["2024-01-31", "2024-02-30", "", None]) | st.dates(),
    "email": st.sampled_from(["ann@example.com", "bob@example.com", "no", " ann@example.com "]),
    "country": st.sampled_from(["DE", "de", "DEU", "", None]),
    "customer": st.sampled_from(["ann@example.com", "nobody@example.com", ""]),
    "product": st.sampled_from(["P-1", "P-2", "p-1", None]),
    "placed_at": datetimes | st.sampled_from(["2024-01-31T12:00:00Z", "2024-01-31", "yesterday"]),
}


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["create", "update"])
@pytest.mark.parametrize("name", ["ProductSerializer", "CustomerSerializer", "OrderSerializer"])
def test_catalog_serializers_as_the_engine_prepares_them(name, mode):
    from project.catalog import serializers as catalog
    from tests.factories import CustomerFactory, ProductFactory

    tools = Category.objects.create(name="Tools")
    Category.objects.create(name="Garden")
    CustomerFactory(email="ann@example.com")
    ProductFactory(sku="P-1", category=tools)
    ProductFactory(sku="P-2", category=tools)
    validator = ChunkValidator(serializer_class=getattr(catalog, name), mode=mode)
    serializer = validator.serializer
    plan = ColumnPlan.for_serializer(serializer)
    assert plan.columnar
    # A unique field is validated whole too: its accepted cells note their unique slots
    # (engine/outcome.py) as the engine's run_validators would.
    assert "per-row" not in plan.strategies.values()
    names = list(plan.strategies)

    @settings(EXAMPLES, max_examples=40)
    @given(st.data())
    def check(data):
        rows = data.draw(columns([CATALOG_CELLS[n] for n in names], len(names), own=True))
        rows = [{names["abcdefgh".index(k)]: v for k, v in row.items()} for row in rows]
        for resolver in validator.relations:
            resolver.prefetch(rows)
        assert_same_as_drf(serializer, rows)

    check()


# -- which fields take which path ----------------------------------------------------


class Upper(serializers.CharField):
    def to_internal_value(self, data):
        return super().to_internal_value(data).upper()


class Labelled(serializers.CharField):
    """Changes only its representation: still DRF's validation, still column-safe."""

    def to_representation(self, value):
        return f"<{value}>"


def test_strategies_name_the_path_each_field_takes():
    def custom(value):
        if value == "bad":
            raise serializers.ValidationError("custom says no")

    serializer = build(
        {
            "plain": serializers.CharField(max_length=5),
            "labelled": Labelled(),
            "model_validators": serializers.CharField(validators=[dj.RegexValidator(r"^[A-Z]+$")]),
            "engine_surrogates": serializers.CharField(),
            "custom_validator": serializers.CharField(validators=[custom]),
            "callable_limit": serializers.IntegerField(
                validators=[dj.MaxValueValidator(lambda: 5)]
            ),
            "overridden": Upper(),
            "with_method": serializers.CharField(),
            "price": serializers.DecimalField(max_digits=6, decimal_places=2, min_value=0),
            "localized": serializers.DecimalField(max_digits=6, decimal_places=2, localize=True),
            "qty": serializers.IntegerField(min_value=0),
            "flag": serializers.BooleanField(),
            "when": serializers.DateField(default=datetime.date.today),
            "hidden": serializers.HiddenField(default="x"),
            "slug": serializers.SlugRelatedField(
                slug_field="name", queryset=Category.objects.all()
            ),
            "nested": build({"x": serializers.CharField()}).__class__(),
            "anything": serializers.JSONField(),
            "method": serializers.SerializerMethodField(),
        },
        attrs={"validate_with_method": lambda self, value: value, "get_method": lambda s, o: 1},
    )
    engine = serializer.fields["engine_surrogates"]
    engine.validators = [
        v if type(v).__name__ != "ProhibitSurrogateCharactersValidator" else SURROGATE_CHECK
        for v in engine.validators
    ]
    assert ColumnPlan.for_serializer(serializer).strategies == {
        "plain": "text",
        "labelled": "text",
        "model_validators": "distinct",
        "engine_surrogates": "text",
        "custom_validator": "per-row",
        "callable_limit": "per-row",
        "overridden": "per-row",
        "with_method": "per-row",
        "price": "decimal",
        "localized": "distinct",
        "qty": "integer",
        "flag": "distinct",
        "when": "distinct",
        "hidden": "per-row",
        "slug": "per-row",  # no per-chunk map: DRF's query per row
        "nested": "per-row",
        "anything": "per-row",
    }


def test_a_serializer_with_its_own_to_internal_value_keeps_it():
    class Own(serializers.Serializer):
        a = serializers.CharField()

        def to_internal_value(self, data):
            return {"a": "mine"}

    plan = ColumnPlan.for_serializer(Own())
    assert plan.strategies == {}
    assert plan.to_internal_values([{"a": "x"}, "not a dict"]) == [
        ({"a": "mine"}, None),
        ({"a": "mine"}, None),
    ]


# -- per-row fields: DRF's steps, in row order ---------------------------------------


def stateful_serializer():
    """Fields whose outcome depends on more than the value: a counter shared by a
    callable default, a validate_<field> method reading the instance, a custom
    validator and an overriding subclass; and plain fields around them."""
    counter = itertools.count()

    def default():
        return next(counter)

    def custom(value):
        if value == "bad":
            raise serializers.ValidationError("custom says no", code="custom")

    class Stateful(serializers.Serializer):
        first = serializers.CharField(max_length=4)
        seq = serializers.IntegerField(default=default)
        checked = serializers.CharField(validators=[custom], required=False)
        upper = Upper(required=False)
        owner = serializers.CharField(required=False)
        price = serializers.DecimalField(max_digits=5, decimal_places=2, required=False)
        hidden = serializers.HiddenField(default=serializers.CreateOnlyDefault(default))

        def validate_owner(self, value):
            if value != getattr(self.instance, "name", None):
                raise serializers.ValidationError(f"owner must be {self.instance}")
            return value.upper()

    return Stateful()


@settings(EXAMPLES, max_examples=80)
@given(st.data())
def test_per_row_fields_run_in_row_order_with_the_rows_instance(data):
    cells = st.sampled_from(
        ["ok", "bad", "toolong", "", "ann", "bob", "1.5", "x" * 9, MISSING, None, 3]
    )
    rows = data.draw(columns([cells], width=6))
    names = ["first", "seq", "checked", "upper", "owner", "price"]
    for row in rows:
        for old, new in zip("abcdef", names, strict=True):
            if old in row:
                row[new] = row.pop(old)
    owners = [types.SimpleNamespace(name=data.draw(st.sampled_from(["ann", "bob"]))) for _ in rows]
    expected, got = [], []
    reference, subject = stateful_serializer(), stateful_serializer()
    for row, owner in zip(rows, owners, strict=True):
        reference.instance = owner
        expected.append(drf_outcome(reference, row))
    columns_ = ColumnPlan.for_serializer(subject).validate_columns(rows)
    for index, owner in enumerate(owners):
        subject.instance = owner
        try:
            got.append(("ok", canon(columns_.to_internal_value(index))))
        except ValidationError as exc:
            got.append(("error", canon(exc.detail)))
    assert got == expected


def test_dotted_and_whole_object_sources_are_set_as_drf_sets_them():
    inner = build({"x": serializers.IntegerField(), "y": serializers.CharField(required=False)})
    serializer = build(
        {
            "a": serializers.CharField(source="deep.a"),
            "whole": inner.__class__(source="*"),
            "b": serializers.IntegerField(source="deep.b", required=False),
        }
    )
    rows = [
        {"a": "1", "whole": {"x": "2", "y": " z "}, "b": "3"},
        {"a": "1", "whole": {"x": "no"}},
        {"whole": None},
        {"a": "", "whole": {"x": 1}, "b": 1.5},
    ]
    assert ColumnPlan.for_serializer(serializer).strategies == {
        "a": "text",
        "whole": "per-row",
        "b": "integer",
    }
    assert_same_as_drf(serializer, rows)
    assert ColumnPlan.for_serializer(serializer).to_internal_values(rows)[0] == (
        {"deep": {"a": "1", "b": 3}, "x": 2, "y": "z"},
        None,
    )


def test_html_and_non_dict_rows_go_to_drf_whole():
    serializer = build(
        {
            "a": serializers.CharField(),
            "b": serializers.IntegerField(required=False),
            "c": serializers.BooleanField(),
        }
    )
    rows = [QueryDict("a=x&b=&c=on"), QueryDict("b=2"), ["a"], None, "row", {"a": "y", "b": "3"}]
    assert_same_as_drf(serializer, rows)
    assert ColumnPlan.for_serializer(serializer).to_internal_values(rows)[0] == (
        {"a": "x", "c": True},
        None,
    )


# -- fast paths: their edges, and proof they are taken ------------------------------

INTEGER_EDGES = [
    "0",
    "-0",
    "+5",
    "0012",
    "007",
    "123456789012345678",
    "1234567890123456789",
    "-999999999999999999",
    " 12 ",
    "12 ",
    "1e3",
    "1_000",
    "\u0661\u0662\u0663",
    "12.",
    "12.0",
    "12.00",
    ".5",
    "12.5",
    "",
    "-",
    "+",
    "--1",
    "0x1F",
    10**17,
    10**18 - 1,
    10**18,
    -(10**18),
    10**30,
    2**63,
    True,
    1.0,
    Decimal("3"),
    None,
]
DECIMAL_EDGES = INTEGER_EDGES + [
    "999.99",
    "1000.00",
    "999.999",
    "0.001",
    "0.00",
    "0.000",
    "-0.00",
    "00000.10",
    "1000",
    "99999",
    "0",
    "000",
    ".50",
    "5.",
    "+0.5",
    "1E+2",
    "NaN",
    "-Infinity",
    0.5,
    -0.0,
    1e-7,
    1e20,
    123.456,
    Decimal("NaN"),
    Decimal("1.00"),
]


@pytest.mark.parametrize(
    "field",
    [
        serializers.IntegerField(),
        serializers.IntegerField(min_value=0, max_value=10**18),
        serializers.IntegerField(min_value=-5, max_value=Decimal("12.5"), allow_null=True),
    ],
    ids=repr,
)
def test_integer_edges(field):
    assert_same_as_drf(build({"a": field}), [{"a": v} for v in INTEGER_EDGES])


@pytest.mark.parametrize(
    "field",
    [
        serializers.DecimalField(max_digits=5, decimal_places=2),
        serializers.DecimalField(
            max_digits=5, decimal_places=2, min_value=0, max_value=Decimal("100")
        ),
        serializers.DecimalField(max_digits=3, decimal_places=3),
        serializers.DecimalField(max_digits=None, decimal_places=2),
        serializers.DecimalField(max_digits=4, decimal_places=None),
        serializers.DecimalField(max_digits=None, decimal_places=None, allow_null=True),
        serializers.DecimalField(max_digits=2, decimal_places=5),
        serializers.DecimalField(max_digits=40, decimal_places=30),
    ],
    ids=repr,
)
def test_decimal_edges(field):
    rows = [{"a": v} for v in DECIMAL_EDGES] + [{"a": "9" * 30}, {"a": "1." + "0" * 31}]
    assert_same_as_drf(build({"a": field}), rows)


TEXT_EDGES = [
    "abc",
    " abc ",
    "",
    "   ",
    "\t",
    "a\x00",
    "\ud800",
    "ab\udfffc",
    "x" * 5,
    "x" * 6,
    "é" * 5,
    "😀" * 5,
    5,
    5.0,
    -0.0,
    True,
    None,
    [],
    {},
    mark_safe(" s "),
    10**5000,
]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"max_length": 5},
        {"min_length": 2, "max_length": 5, "allow_blank": True},
        {"trim_whitespace": False, "allow_null": True},
        {"max_length": 0, "allow_blank": True},
    ],
    ids=repr,
)
def test_text_edges(options):
    serializer = build({"a": serializers.CharField(**options)})
    assert_same_as_drf(serializer, [{"a": v} for v in TEXT_EDGES])
    for text in TEXT_EDGES:  # one odd cell in a column of plain text: the whole-column check
        if isinstance(text, str):
            assert_same_as_drf(serializer, [{"a": "abc"}, {"a": text}, {"a": " ab "}])


def count_drf_calls(klass):
    calls = []
    original = klass.run_validation

    def spy(self, data=serializers.empty):
        calls.append(data)
        return original(self, data)

    return calls, mock.patch.object(klass, "run_validation", spy)


def test_fast_paths_call_drf_only_for_cells_they_cannot_prove():
    serializer = build(
        {
            "name": serializers.CharField(max_length=10),
            "qty": serializers.IntegerField(min_value=0),
            "price": serializers.DecimalField(max_digits=6, decimal_places=2, min_value=0),
        }
    )
    rows = [{"name": f" n{i} ", "qty": str(i), "price": f"{i}.5"} for i in range(200)]
    rows += [
        {"name": "x" * 11, "qty": "-1", "price": "1e3"},
        {"name": "", "qty": " 7 ", "price": "-1.00"},
    ]
    plan = ColumnPlan.for_serializer(serializer)
    assert plan.strategies == {"name": "text", "qty": "integer", "price": "decimal"}
    text_calls, text_spy = count_drf_calls(serializers.CharField)
    int_calls, int_spy = count_drf_calls(serializers.IntegerField)
    dec_calls, dec_spy = count_drf_calls(serializers.DecimalField)
    with text_spy, int_spy, dec_spy:
        outcomes = plan.to_internal_values(rows)
    assert sorted(text_calls) == ["", "x" * 11]
    assert sorted(int_calls) == [" 7 ", "-1"]
    assert sorted(dec_calls) == ["-1.00", "1e3"]
    assert outcomes[3] == ({"name": "n3", "qty": 3, "price": Decimal("3.50")}, None)
    assert outcomes[201][1] == {
        "name": [ErrorDetail("This field may not be blank.", code="blank")],
        "price": [
            ErrorDetail("Ensure this value is greater than or equal to 0.", code="min_value")
        ],
    }
    assert outcomes[201][1]["name"][0].code == "blank"


def test_drf_runs_once_per_distinct_value():
    serializer = build({"flag": serializers.BooleanField(), "day": serializers.DateField()})
    rows = [
        {"flag": ["true", "false", 1, True][i % 4], "day": f"2024-01-{1 + i % 3:02d}"}
        for i in range(300)
    ]
    calls, spy = count_drf_calls(serializers.DateField)
    with spy:
        outcomes = ColumnPlan.for_serializer(serializer).to_internal_values(rows)
    assert sorted(calls) == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert [o[0]["flag"] for o in outcomes[:4]] == [True, False, True, True]
    assert type(outcomes[2][0]["flag"]) is bool


def test_options_are_read_per_chunk():
    serializer = build({"when": serializers.DateField(), "name": serializers.CharField()})
    plan = ColumnPlan.for_serializer(serializer)
    first = plan.to_internal_values([{"when": "2024-01-01", "name": "a"}])
    serializer.fields["when"].input_formats = ["%d/%m/%Y"]
    second = plan.to_internal_values(
        [{"when": "2024-01-01", "name": "a"}, {"when": "01/01/2024", "name": "a"}]
    )
    assert first[0][0] == {"when": datetime.date(2024, 1, 1), "name": "a"}
    assert second[0][0] is None and second[1][0]["when"] == datetime.date(2024, 1, 1)

    def no_a(value):
        if value == "a":
            raise serializers.ValidationError("no a")

    serializer.fields["name"].validators.append(no_a)  # after the plan was made
    assert plan.strategies["name"] == "per-row"
    assert plan.to_internal_values([{"when": "01/01/2024", "name": "a"}]) == [
        (None, {"name": ["no a"]})
    ]


@pytest.mark.django_db
def test_nothing_is_kept_between_chunks():
    """Chunk two's map (the engine prefetches per chunk) decides chunk two's rows."""
    serializer = build(
        {
            "category": serializers.SlugRelatedField(
                slug_field="name", queryset=Category.objects.all()
            )
        }
    )
    resolver = RelationResolver(serializer.fields["category"])
    plan = ColumnPlan.for_serializer(serializer)
    rows = [{"category": "Tools"}] * 3

    def chunk():
        resolver.prefetch(rows)
        return plan.to_internal_values(rows)

    missing = chunk()
    tools = Category.objects.create(name="Tools")
    found = chunk()
    assert missing[0] == (None, {"category": ["Object with name=Tools does not exist."]})
    assert found == [({"category": tools}, None)] * 3


def test_error_lists_are_each_rows_own():
    serializer = build({"a": serializers.IntegerField()})
    outcomes = ColumnPlan.for_serializer(serializer).to_internal_values([{"a": "x"}, {"a": "x"}])
    outcomes[0][1]["a"].append("mine")
    assert outcomes[1][1] == {"a": [ErrorDetail("A valid integer is required.", code="invalid")]}


# -- inside the engine's chunk validation ----------------------------------------------


def outcome_of(validate_chunk, rows):
    try:
        staged = validate_chunk(0, rows)
    except Exception as exc:
        return ("raise", type(exc).__name__, str(exc))
    rows = [(r.index, r.action, r.pk, canon(r.values), canon(r.errors)) for r in staged]
    return rows, staged.to_json()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name, mode",
    [
        ("ProductSerializer", "create"),
        ("ProductSerializer", "update"),
        ("ProductSerializer", "upsert"),
        ("CustomerSerializer", "create"),
        ("OrderSerializer", "create"),
    ],
)
def test_the_engine_validates_by_columns_with_the_same_staged_rows(name, mode):
    """``Batch.validate_chunk`` answers each row from the chunk's columns, and its staged
    rows (actions, values, errors, batch keys) are those of DRF's per-row path."""
    from bulkops.engine import Batch
    from project.catalog import serializers as catalog
    from tests.factories import CustomerFactory, ProductFactory

    tools = Category.objects.create(name="Tools")
    Category.objects.create(name="Garden")
    CustomerFactory(email="ann@example.com")
    ProductFactory(sku="P-1", category=tools)
    ProductFactory(sku="P-2", category=tools)
    serializer_class = getattr(catalog, name)
    cells = {**CATALOG_CELLS, "sku": st.sampled_from(["P-1", " P-2", "P-3", "", "x" * 65, 12])}
    names = list(
        ColumnPlan.for_serializer(
            Batch(serializer_class=serializer_class, mode=mode).validator.serializer
        ).strategies
    )
    counted = []

    @settings(EXAMPLES, max_examples=30)
    @given(st.data())
    def check(data):
        rows = data.draw(columns([cells[n] for n in names], len(names), own=True))
        rows = [{names["abcdefgh".index(k)]: v for k, v in row.items()} for row in rows]
        by_columns = Batch(serializer_class=serializer_class, mode=mode)
        per_row = Batch(serializer_class=serializer_class, mode=mode)
        per_row.validator.column_plan.columnar = False
        answered = []
        original = ValidatedColumns.to_internal_value
        original_whole = ValidatedColumns.answered

        def spy(self, index):
            answered.append(index)
            return original(self, index)

        def spy_whole(self, index):  # a row answered whole, without to_internal_value
            values = original_whole(self, index)
            if values is not None:
                answered.append(index)
            return values

        with (
            mock.patch.object(ValidatedColumns, "to_internal_value", spy),
            mock.patch.object(ValidatedColumns, "answered", spy_whole),
        ):
            staged = outcome_of(by_columns.validate_chunk, rows)
        expected = outcome_of(per_row.validate_chunk, rows)
        assert staged == expected  # or the same exception escapes (DRF's: a huge int)
        if staged[0] == "raise":
            return
        assert by_columns.validator.serializer._bulkops_columns is None  # not kept
        if mode == "create":
            assert sorted(answered) == list(range(len(rows)))  # every row from the columns
        counted.append(len(answered))

    check()
    assert sum(counted) > 0


@pytest.mark.django_db
def test_a_unique_column_is_validated_whole_and_keeps_its_unique_errors():
    from bulkops.engine import Batch
    from project.catalog.serializers import ProductSerializer
    from tests.factories import ProductFactory

    tools = Category.objects.create(name="Tools")
    ProductFactory(sku="P-1", category=tools)
    batch = Batch(serializer_class=ProductSerializer, mode="create")
    assert ColumnPlan.for_serializer(batch.validator.serializer).strategies["sku"] == "text"
    rows = [
        {"sku": sku, "name": "n", "category": "Tools", "price": "1.00", "quantity": 1}
        for sku in ("P-1", "P-2", "x" * 65, " P-1 ")
    ]
    staged = batch.validate_chunk(0, rows)
    taken = "product with this SKU already exists."
    assert [row.errors for row in staged] == [
        {"sku": [taken]},
        None,
        {"sku": ["Ensure this field has no more than 64 characters."]},
        {"sku": [taken]},
    ]


# -- thousands of distinct values per field type, drawn by a seeded random ----------------
# Hypothesis (above) varies the fields' options and shrinks failures, but draws a few
# hundred distinct cells per type; this sweep puts a few thousand distinct values of each
# type through a handful of fields, against DRF per row.

SWEEP_VALUES = 3000
ALPHABET = "ab Z09_-.,:@/ \t\n\x00\ud800éß✓" + "0123456789" * 3


def sweep_text(rnd):
    pick = rnd.random()
    if pick < 0.05:
        return rnd.choice([None, 0, 17, -3.5, True, "", " ", "\t"])
    return "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 14)))


def sweep_number(rnd):
    pick = rnd.random()
    digits = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 12)))
    if pick < 0.3:
        return digits
    if pick < 0.5:
        return (
            f"{rnd.choice(['', '-', '+', ' '])}{digits}.{rnd.randint(0, 10 ** rnd.randint(0, 6))}"
        )
    if pick < 0.6:
        return rnd.choice([f"{digits}e{rnd.randint(-5, 5)}", f" {digits} ", f"{digits}x", "nan"])
    if pick < 0.75:
        return rnd.randint(-(10**12), 10**12)
    if pick < 0.9:
        return rnd.uniform(-1e6, 1e6)
    return Decimal(rnd.randint(-(10**9), 10**9)).scaleb(-rnd.randint(0, 6))


def sweep_boolean(rnd):
    word = rnd.choice(["true", "false", "yes", "no", "on", "off", "1", "0", "t", "f", "null"])
    if rnd.random() < 0.2:
        return rnd.choice([word, word.upper(), word.title(), rnd.randint(-2, 3), None])
    return rnd.choice(
        [f"{word}{rnd.randint(0, 10**6)}", rnd.randint(-(10**6), 10**6), rnd.random()]
    )


def sweep_date(rnd):
    day = datetime.date(1900, 1, 1) + datetime.timedelta(days=rnd.randint(0, 80000))
    pick = rnd.random()
    if pick < 0.4:
        return day.isoformat()
    if pick < 0.6:
        return day
    if pick < 0.8:
        return day.strftime(rnd.choice(["%d/%m/%Y", "%Y%m%d", "%Y-%m-%dT%H:%M:%S"]))
    return f"{day.year}-{rnd.randint(0, 13):02d}-{rnd.randint(0, 32):02d}"


def sweep_datetime(rnd):
    moment = datetime.datetime(1970, 1, 1, tzinfo=UTC) + datetime.timedelta(
        seconds=rnd.randint(0, 3 * 10**9), microseconds=rnd.randint(0, 999999)
    )
    pick = rnd.random()
    if pick < 0.3:
        return moment.isoformat()
    if pick < 0.5:
        return moment.astimezone(BERLIN) if rnd.random() < 0.5 else moment.replace(tzinfo=None)
    if pick < 0.8:
        return moment.strftime(rnd.choice(["%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M", "%Y%m%d"]))
    return moment.isoformat()[: rnd.randint(4, 30)]


def sweep_other(rnd):
    pick = rnd.random()
    if pick < 0.25:
        return f"{rnd.randint(0, 25):02d}:{rnd.randint(0, 61):02d}:{rnd.randint(0, 61):02d}"
    if pick < 0.5:
        return f"{rnd.randint(0, 99)} {rnd.randint(0, 24):02d}:{rnd.randint(0, 60):02d}:00"
    if pick < 0.75:
        return ".".join(str(rnd.randint(0, 300)) for _ in range(rnd.choice([3, 4, 4, 5])))
    bits = rnd.getrandbits(128)
    return f"{bits:032x}" if rnd.random() < 0.8 else f"{bits:031x}"[:31]


def sweep_choice(rnd):
    if rnd.random() < 0.3:
        return rnd.choice(["a", "b", "c", 1, 2, "1", "2", " a", "A", True, 1.0, None, ""])
    return rnd.choice([f"a{rnd.randint(0, 10**6)}", rnd.randint(-(10**6), 10**6), rnd.random()])


SWEEPS = {
    "text": (
        sweep_text,
        [
            serializers.CharField(),
            serializers.CharField(max_length=6, allow_blank=True, allow_null=True),
            serializers.CharField(min_length=3, trim_whitespace=False, required=False),
            serializers.EmailField(allow_blank=True),
            serializers.SlugField(max_length=10),
        ],
    ),
    "integer": (
        sweep_number,
        [
            serializers.IntegerField(),
            serializers.IntegerField(min_value=-50, max_value=10**9, allow_null=True),
            # BigIntegerField is DRF 3.16+ (CI runs the oldest DRF allowed too).
            getattr(serializers, "BigIntegerField", serializers.IntegerField)(required=False),
        ],
    ),
    "float": (
        sweep_number,
        [serializers.FloatField(), serializers.FloatField(min_value=0, allow_null=True)],
    ),
    "decimal": (
        sweep_number,
        [
            serializers.DecimalField(max_digits=10, decimal_places=2),
            serializers.DecimalField(max_digits=6, decimal_places=3, min_value=0),
            serializers.DecimalField(max_digits=None, decimal_places=None, allow_null=True),
            serializers.DecimalField(max_digits=12, decimal_places=4, coerce_to_string=False),
        ],
    ),
    "boolean": (
        sweep_boolean,
        [serializers.BooleanField(), serializers.BooleanField(allow_null=True)],
    ),
    "date": (
        sweep_date,
        [
            serializers.DateField(),
            serializers.DateField(input_formats=["%d/%m/%Y", "iso-8601"], allow_null=True),
        ],
    ),
    "datetime": (
        sweep_datetime,
        [
            serializers.DateTimeField(),
            serializers.DateTimeField(default_timezone=BERLIN, allow_null=True),
            serializers.DateTimeField(input_formats=["%Y-%m-%d %H:%M", "iso-8601"]),
        ],
    ),
    "other": (
        sweep_other,
        [
            serializers.TimeField(),
            serializers.DurationField(),
            serializers.UUIDField(),
            serializers.IPAddressField(),
        ],
    ),
    "choice": (
        sweep_choice,
        [
            serializers.ChoiceField(choices=["a", "b", (1, "one"), ("2", "two")]),
            serializers.ChoiceField(choices=GROUPED, allow_blank=True, allow_null=True),
        ],
    ),
}


@pytest.mark.parametrize("kind", list(SWEEPS))
def test_thousands_of_distinct_values_per_type_equal_drf(kind):
    import random

    make, fields = SWEEPS[kind]
    rnd = random.Random(f"bulkops-sweep-{kind}")
    values = [make(rnd) for _ in range(SWEEP_VALUES)]
    distinct = {distinct_key(v) for v in values}
    assert len(distinct) >= 2000
    # Some values twice in a chunk (the second time from the per-value cache).
    cells = [v for start in range(0, len(values), 800) for v in values[start : start + 1000]]
    rows = [{"a": cells[i], "b": cells[-1 - i]} for i in range(len(cells))]
    for n, field in enumerate(fields):
        serializer = build({"a": copy_field(field), "b": copy_field(field)}, partial=n == 1)
        for start in range(0, len(rows), 1000):
            assert_same_as_drf(serializer, rows[start : start + 1000])


def copy_field(field):
    return field.__class__(*field._args, **field._kwargs)


def distinct_key(value):
    """A cell as counted among distinct values (by type and value)."""
    try:
        hash((type(value), value))
    except TypeError:  # unhashable, a signaling NaN: each its own
        return (type(value), id(value))
    return (type(value), value)
