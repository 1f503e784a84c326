"""What bulkops relies on in DRF and Django beyond their public API (``bulkops.compat``).

One test per private attribute, and one per DRF method bulkops copies or answers for
(its source must be one bulkops was checked against): an upgrade that changes one
fails here, with a message saying what to review, not deep inside a batch.
"""

import hashlib
import inspect
import io
import textwrap

import pytest
import rest_framework
from django.db import connection, models
from django.http import HttpRequest, RawPostDataException
from django.test import RequestFactory
from rest_framework import fields, relations, serializers, validators
from rest_framework.request import Request

from bulkops import compat
from project.catalog.models import Category, Order, Product
from project.catalog.serializers import ProductSerializer
from tests.factories import OrderFactory, ProductFactory


def review(what: str, where: str) -> str:
    return (
        f"DRF {rest_framework.VERSION} changed {what}, which bulkops relies on: review "
        f"{where} against it, then update tests/test_compat.py."
    )


# -- DRF serializers ----------------------------------------------------------------------


def test_writable_fields_lists_the_fields_to_internal_value_reads():
    serializer = ProductSerializer()
    writable = getattr(serializer, compat.WRITABLE_FIELDS, None)
    assert writable is not None, review("Serializer._writable_fields", "engine/serializer.py")
    assert [f.field_name for f in writable] == [
        "sku",
        "name",
        "category",
        "price",
        "quantity",
        "active",
        "released",
    ], review("what Serializer._writable_fields yields", "engine/serializer.py")
    source = inspect.getsource(serializers.Serializer.to_internal_value)
    assert f"self.{compat.WRITABLE_FIELDS}" in source, review(
        "how Serializer.to_internal_value finds its fields", "engine/serializer.py"
    )


def test_read_only_defaults_are_what_serializer_validators_see():
    class WithDefault(serializers.Serializer):
        owner = serializers.CharField(read_only=True, default="me")
        name = serializers.CharField()

    serializer = WithDefault()
    assert compat.read_only_defaults(serializers.Serializer, serializer) == {"owner": "me"}, review(
        "Serializer._read_only_defaults", "engine/serializer.py"
    )
    source = inspect.getsource(serializers.Serializer.run_validators)
    assert f"self.{compat.READ_ONLY_DEFAULTS}()" in source, review(
        "Serializer.run_validators", "engine/serializer.py (noting_run_validators)"
    )


def test_a_fields_arguments_are_kept_to_copy_it():
    field = serializers.CharField(max_length=3, required=False)
    args, kwargs = compat.field_arguments(field)
    assert (args, kwargs) == ((), {"max_length": 3, "required": False}), review(
        "Field._args/_kwargs", "openapi.py (bulk_item_serializer)"
    )
    assert type(field)(*args, **kwargs).max_length == 3


def _digest(function) -> str:
    source = textwrap.dedent(inspect.getsource(function))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


# DRF's methods bulkops copies (or whose behaviour it reproduces set-based), with the
# digests of their source in the DRF releases pyproject.toml allows that were checked.
COPIED = [
    (
        serializers.Serializer.to_internal_value,
        {"4ccc0e024b3e6e91"},
        "engine/serializer.py (_to_internal_value)",
    ),
    (
        serializers.Serializer.run_validation,
        {"1aad4243446abbf9"},
        "engine/outcome.py (validate_row)",
    ),
    (
        serializers.Serializer.run_validators,
        {"c535ae25a433e7b0"},
        "engine/serializer.py (noting_run_validators)",
    ),
    (
        fields.Field.run_validators,
        {"fc19a07474e0f3ee"},
        "engine/outcome.py (run_validators_noting)",
    ),
    (fields.Field.get_value, {"331d308773fef0c6"}, "engine/serializer.py (field_plan)"),
    (
        relations.SlugRelatedField.to_internal_value,
        {"6b2e0d38519ef10d"},
        "engine/lookups.py (RelationResolver)",
    ),
    (
        relations.PrimaryKeyRelatedField.to_internal_value,
        {"be0936f10962f24c"},
        "engine/lookups.py (RelationResolver)",
    ),
    (
        validators.UniqueValidator.__call__,
        {"696563f65689cb77", "a68bf1ed08372b78"},
        "engine/unique.py (UniqueCheck.existing)",
    ),
    (
        validators.UniqueTogetherValidator.__call__,
        {
            "15feb1b120c2b94b",  # 3.15
            "059d2316eadc89dc",  # 3.16.0
            "e9bc12726200e22a",  # 3.16.1
            "df42931a0761dab2",  # 3.17
            "aa15dd997542b52e",  # 3.18.0
            "a446ed072c20bd1b",  # 3.18.3
        },
        "engine/unique.py (UniqueCheck.key_of_noted, before_noting)",
    ),
]


@pytest.mark.parametrize(
    ("method", "digests", "where"), COPIED, ids=[m.__qualname__ for m, _, _ in COPIED]
)
def test_the_drf_methods_bulkops_reproduces_are_the_ones_it_was_checked_against(
    method, digests, where
):
    assert _digest(method) in digests, review(method.__qualname__, where)


# -- Django models ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_mark_saved_is_what_save_leaves_in_model_state():
    saved = ProductFactory()
    built = Product(sku="X", name="x", category=saved.category, price=1)
    assert built._state.adding is True
    compat.mark_saved(built, "default")
    assert (built._state.adding, built._state.db) == (saved._state.adding, saved._state.db), review(
        "Model._state (adding, db)", "compat.mark_saved"
    )


def test_the_relations_a_delete_visits():
    names = {rel.related_model for rel in compat.candidate_relations_to_delete(Product)}
    assert names == {Order}, review(
        "django.db.models.deletion.get_candidate_relations_to_delete", "engine/protect.py"
    )
    assert {rel.related_model for rel in compat.candidate_relations_to_delete(Category)} == {
        Product
    }


@pytest.mark.django_db
def test_the_collector_refuses_a_protected_delete_without_deleting():
    from django.db.models.deletion import Collector, ProtectedError

    order = OrderFactory()
    collector = Collector(using="default", origin=None)
    with pytest.raises(ProtectedError) as refused:
        collector.collect(Product.objects.filter(pk=order.product_id))
    assert list(refused.value.protected_objects) == [order], review(
        "Collector.collect", "engine/protect.py"
    )
    assert Product.objects.filter(pk=order.product_id).exists()


@pytest.mark.django_db
def test_raw_cursor_is_the_drivers_cursor():
    with connection.cursor() as cursor:
        raw = compat.raw_cursor(cursor)
        if connection.vendor == "postgresql":
            import psycopg

            assert isinstance(raw, psycopg.Cursor) and hasattr(raw, "copy"), review(
                "CursorWrapper.cursor", "engine/statements.py (COPY)"
            )
        else:
            raw.execute("SELECT 1")
            assert raw.fetchone() == (1,)


def test_model_fields_prepare_lookup_values_as_the_resolver_expects():
    """RelationResolver compares what ``get_prep_value`` gives with what it fetched."""
    assert models.CharField().get_prep_value(["a"]) == "['a']"
    assert models.IntegerField().get_prep_value("7") == 7
    with pytest.raises(ValueError):
        models.IntegerField().get_prep_value("x")


# -- DRF / Django requests ---------------------------------------------------------------------


def test_a_drf_request_wraps_the_django_request():
    django_request = RequestFactory().post("/api/x/", data=b"{}", content_type="application/json")
    assert compat.django_request(Request(django_request)) is django_request, review(
        "Request._request", "compat.django_request (mixins.py, envelope.py)"
    )


def test_a_body_read_by_bulkops_is_the_requests_body():
    request = RequestFactory().generic(
        "POST", "/api/x/", b"b=2", content_type="application/x-www-form-urlencoded"
    )
    assert not compat.has_read_body(request)
    compat.keep_body(request, b"a=1", stream=io.BytesIO(b"a=1"))
    assert compat.has_read_body(request), review("HttpRequest._body", "compat.keep_body")
    assert compat.read_body(request) == b"a=1"
    assert request.body == b"a=1" and request.POST["a"] == "1", review(
        "HttpRequest._body/_stream", "compat.keep_body (envelope.py)"
    )


def test_a_stream_marked_read_has_no_body_to_read_again():
    request = HttpRequest()
    request._stream = io.BytesIO(b"x")
    compat.mark_read_started(request)
    with pytest.raises(RawPostDataException):
        request.body  # noqa: B018 - Django refuses: the stream was read from
    # (review compat.mark_read_started if Django reads the body here)


def test_drf_spectacular_builds_request_bodies_where_bulkops_overrides_it():
    from drf_spectacular.openapi import AutoSchema

    assert callable(getattr(AutoSchema, "_get_request_body", None)), (
        "drf-spectacular changed AutoSchema._get_request_body: review openapi.BulkAutoSchema."
    )


def test_update_sql_is_the_statement_update_runs(db):
    from django.db import connection

    from bulkops.compat import update_sql
    from project.catalog.models import Category

    category = Category.objects.create(name="Tools")
    queryset = Category.objects.filter(pk=category.pk, name="Tools")
    sql, params = update_sql(queryset, {"name": "Garden"})
    assert sql.startswith("UPDATE ") and "Garden" in params
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        assert cursor.rowcount == 1
    category.refresh_from_db()
    assert category.name == "Garden"
