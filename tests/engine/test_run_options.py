"""run_batch options: checking them, their defaults from settings, and the hooks."""

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from rest_framework.exceptions import ValidationError

from bulkops.engine import check_options, run_batch
from bulkops.exceptions import InvalidOptions
from project.catalog.models import Product
from project.catalog.serializers import ProductSerializer
from tests.factories import ProductFactory, ProductItemFactory


def untouchable_rows():
    """Rows that fail the test if anyone reads them."""
    raise AssertionError("rows were read before the options were checked")
    yield  # pragma: no cover


def run(rows, mode="create", **options):
    return run_batch(serializer_class=ProductSerializer, rows=rows, mode=mode, **options)


# -- bad options ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "merge"}, "Unknown mode 'merge'; use one of create, update, upsert, delete."),
        ({"mode": "CREATE"}, "Unknown mode 'CREATE'; use one of create, update, upsert, delete."),
        ({"atomic": "some"}, "Unknown atomic 'some'; use one of all, chunk, none."),
        ({"atomic": True}, "Unknown atomic True; use one of all, chunk, none."),
        ({"chunk_size": 0}, "chunk_size must be a whole number from 1 to 10000; got 0."),
        ({"chunk_size": -1}, "chunk_size must be a whole number from 1 to 10000; got -1."),
        (
            {"chunk_size": 10**9},
            "chunk_size must be a whole number from 1 to 10000; got 1000000000.",
        ),
        ({"chunk_size": 10_001}, "chunk_size must be a whole number from 1 to 10000; got 10001."),
        ({"chunk_size": True}, "chunk_size must be a whole number from 1 to 10000; got True."),
        ({"chunk_size": 2.0}, "chunk_size must be a whole number from 1 to 10000; got 2.0."),
        ({"chunk_size": "10"}, "chunk_size must be a whole number from 1 to 10000; got '10'."),
    ],
)
def test_bad_options_raise_invalid_options_before_any_row_is_read(options, message):
    options = {"mode": "create", **options}

    with pytest.raises(InvalidOptions) as raised:
        run(untouchable_rows(), **options)

    assert raised.value.message == message
    assert raised.value.as_dict() == {"error": "invalid_options", "message": message}


@pytest.mark.parametrize("chunk_size", [1, 10_000])
def test_chunk_size_bounds_are_inclusive(chunk_size):
    assert check_options(mode="update", atomic="chunk", chunk_size=chunk_size) == (
        "chunk",
        chunk_size,
    )


def test_max_chunk_size_setting_bounds_chunk_size(settings):
    settings.BULKOPS = {"MAX_CHUNK_SIZE": 50}

    assert check_options(mode="create", atomic="none", chunk_size=50) == ("none", 50)
    with pytest.raises(InvalidOptions, match="from 1 to 50; got 51"):
        check_options(mode="create", atomic="none", chunk_size=51)


@pytest.mark.parametrize(
    ("bulkops", "expected"),
    [
        ({}, ("none", 1000)),
        ({"DEFAULT_ATOMIC": "all"}, ("all", 1000)),
        ({"DEFAULT_ATOMIC": "chunk", "CHUNK_SIZE": 250}, ("chunk", 250)),
        ({"CHUNK_SIZE": 5000, "MAX_CHUNK_SIZE": 300}, ("none", 300)),
    ],
)
def test_defaults_come_from_settings(settings, bulkops, expected):
    settings.BULKOPS = bulkops

    assert check_options(mode="create", atomic=None, chunk_size=None) == expected


def test_a_bad_default_atomic_setting_is_a_configuration_error(settings):
    settings.BULKOPS = {"DEFAULT_ATOMIC": "sometimes"}

    with pytest.raises(ImproperlyConfigured, match="BULKOPS\\['DEFAULT_ATOMIC'\\] is 'sometimes'"):
        check_options(mode="create", atomic=None, chunk_size=None)


@pytest.mark.django_db
def test_default_atomic_all_from_settings_writes_nothing_when_a_row_fails(settings, tools):
    settings.BULKOPS = {"DEFAULT_ATOMIC": "all"}
    rows = [ProductItemFactory(sku="A"), ProductItemFactory(sku="B", price="-1")]

    result = run(rows)

    assert result.atomic == "all"
    assert [r.status for r in result.results] == ["rolled_back", "error"]
    assert Product.objects.count() == 0


@pytest.mark.django_db
def test_explicit_atomic_wins_over_the_setting(settings, tools):
    settings.BULKOPS = {"DEFAULT_ATOMIC": "all"}
    rows = [ProductItemFactory(sku="A"), ProductItemFactory(sku="B", price="-1")]

    result = run(rows, atomic="none")

    assert result.atomic == "none"
    assert [r.status for r in result.results] == ["created", "error"]
    assert list(Product.objects.values_list("sku", flat=True)) == ["A"]


@pytest.mark.django_db
def test_chunk_size_default_from_settings_decides_the_chunks(settings, tools):
    settings.BULKOPS = {"CHUNK_SIZE": 2}
    progress = []

    run([ProductItemFactory() for _ in range(5)], on_progress=lambda *call: progress.append(call))

    assert progress == [
        ("validate", 2),
        ("validate", 4),
        ("validate", 5),
        ("write", 2),
        ("write", 4),
        ("write", 5),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("atomic", ["all", "chunk", "none"])
def test_progress_reports_every_chunk_of_both_passes(tools, atomic):
    progress = []

    run(
        [ProductItemFactory() for _ in range(7)],
        atomic=atomic,
        chunk_size=3,
        on_progress=lambda *call: progress.append(call),
    )

    assert progress == [
        ("validate", 3),
        ("validate", 6),
        ("validate", 7),
        ("write", 3),
        ("write", 6),
        ("write", 7),
    ]


@pytest.mark.django_db
def test_dry_run_reports_only_the_validation_pass(tools):
    progress = []

    run(
        [ProductItemFactory() for _ in range(3)],
        chunk_size=2,
        dry_run=True,
        on_progress=lambda *call: progress.append(call),
    )

    assert progress == [("validate", 2), ("validate", 3)]


# -- after_write: the hook that stands in for post_save -----------------------------------


@pytest.fixture
def hook_calls():
    calls = []

    def after_write(action, instances):
        pks = [obj.pk for obj in instances]
        visible = Product.objects.filter(pk__in=pks).count()
        calls.append(
            (
                action,
                [obj.sku for obj in instances],
                connection.in_atomic_block,
                visible,
                None not in pks,
            )
        )

    after_write.calls = calls
    return after_write


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("atomic", ["all", "chunk", "none"])
def test_after_write_sees_each_chunks_written_instances_inside_the_transaction(
    tools, hook_calls, atomic
):
    ProductFactory(sku="OLD-1", category=tools)
    ProductFactory(sku="OLD-2", category=tools)
    rows = [
        ProductItemFactory(sku="NEW-1"),
        ProductItemFactory(sku="OLD-1", name="Changed"),
        ProductItemFactory(sku="NEW-2"),
        ProductItemFactory(sku="OLD-2", name="Changed"),
        ProductItemFactory(sku="NEW-3"),
    ]

    run(rows, mode="upsert", atomic=atomic, chunk_size=3, after_write=hook_calls)

    assert hook_calls.calls == [
        ("create", ["NEW-1", "NEW-2"], True, 2, True),
        ("update", ["OLD-1"], True, 1, True),
        ("create", ["NEW-3"], True, 1, True),
        ("update", ["OLD-2"], True, 1, True),
    ]


@pytest.mark.django_db(transaction=True)
def test_after_write_on_delete_runs_after_the_rows_are_gone(tools, hook_calls):
    for sku in ("D-1", "D-2", "D-3"):
        ProductFactory(sku=sku, category=tools)

    run([{"sku": "D-1"}, {"sku": "D-3"}], mode="delete", after_write=hook_calls)

    assert hook_calls.calls == [("delete", ["D-1", "D-3"], True, 0, True)]
    assert list(Product.objects.values_list("sku", flat=True)) == ["D-2"]


@pytest.mark.django_db(transaction=True)
def test_after_write_skips_failed_rows_and_rolled_back_chunks(tools, hook_calls):
    rows = [
        ProductItemFactory(sku="A-1"),
        ProductItemFactory(sku="A-2", price="-1"),
        ProductItemFactory(sku="A-3"),
        ProductItemFactory(sku="A-4"),
    ]

    run(rows, atomic="chunk", chunk_size=2, after_write=hook_calls)
    assert hook_calls.calls == [("create", ["A-3", "A-4"], True, 2, True)]

    hook_calls.calls.clear()
    Product.objects.all().delete()
    run(rows, atomic="none", chunk_size=2, after_write=hook_calls)
    assert hook_calls.calls == [
        ("create", ["A-1"], True, 1, True),
        ("create", ["A-3", "A-4"], True, 2, True),
    ]


@pytest.mark.django_db(transaction=True)
def test_an_error_in_after_write_rolls_back_its_chunk_and_propagates(tools):
    def after_write(action, instances):
        if any(obj.sku == "H-3" for obj in instances):
            raise RuntimeError("hook failed")

    rows = [ProductItemFactory(sku=f"H-{i}") for i in range(5)]

    with pytest.raises(RuntimeError, match="hook failed"):
        run(rows, atomic="none", chunk_size=2, after_write=after_write)

    assert list(Product.objects.values_list("sku", flat=True)) == ["H-0", "H-1"]


@pytest.mark.django_db(transaction=True)
def test_an_error_in_after_write_under_atomic_all_writes_nothing(tools):
    def after_write(action, instances):
        if any(obj.sku == "H-3" for obj in instances):
            raise RuntimeError("hook failed")

    rows = [ProductItemFactory(sku=f"H-{i}") for i in range(5)]

    with pytest.raises(RuntimeError):
        run(rows, atomic="all", chunk_size=2, after_write=after_write)

    assert Product.objects.count() == 0


# -- context reaches the project's serializer ------------------------------------------


class ContextSerializer(ProductSerializer):
    """Project rules that DRF runs per row: validate_<field>, validate(), context."""

    class Meta(ProductSerializer.Meta):
        pass

    def validate_name(self, value):
        if value in self.context.get("banned_names", ()):
            raise ValidationError("This name is banned.")
        return value.strip()

    def validate(self, attrs):
        if attrs.get("active") is False and attrs.get("quantity", 0) > 0:
            raise ValidationError({"quantity": ["An inactive product holds no stock."]})
        return attrs


@pytest.mark.django_db
def test_serializer_rules_and_context_still_apply_per_row(tools):
    rows = [
        ProductItemFactory(sku="K-1", name="Banned"),
        ProductItemFactory(sku="K-2", active=False, quantity=3),
        ProductItemFactory(sku="K-3", name=" Fine "),
    ]

    result = run_batch(
        serializer_class=ContextSerializer,
        rows=rows,
        mode="create",
        context={"banned_names": {"Banned"}},
    )

    assert [(r.status, r.errors) for r in result.results] == [
        ("error", {"name": ["This name is banned."]}),
        ("error", {"quantity": ["An inactive product holds no stock."]}),
        ("created", None),
    ]
    product = Product.objects.get()
    assert (product.sku, product.name, product.price) == ("K-3", "Fine", Decimal("10.00"))
