"""``bulkops.registry``: the bulk-enabled models, their serializers and natural keys."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from rest_framework import serializers

from bulkops.registry import AlreadyRegistered, BulkRegistry, NotRegistered, register, registry
from project.catalog.models import Category, Customer, Order, Product
from project.catalog.serializers import (
    CategorySerializer,
    CustomerSerializer,
    OrderSerializer,
    ProductSerializer,
)

ENABLED = "catalog.Category, catalog.Customer, catalog.Order, catalog.Product"


# -- the catalog, registered by project/catalog/bulk.py at start-up ------------------------


@pytest.mark.parametrize("key", [Product, "catalog.product", "catalog.Product", "Catalog.PRODUCT"])
def test_a_model_is_found_by_class_or_label(key):
    entry = registry.get(key)

    assert entry.model is Product
    assert entry.serializer_class is ProductSerializer
    assert entry.natural_key == ("sku",)
    assert (entry.label, entry.name) == ("catalog.product", "catalog.Product")


def test_the_catalog_registers_its_four_models_sorted_by_label():
    assert [(e.model, e.serializer_class, e.natural_key) for e in registry] == [
        (Category, CategorySerializer, ("name",)),
        (Customer, CustomerSerializer, ("email",)),
        (Order, OrderSerializer, ()),
        (Product, ProductSerializer, ("sku",)),
    ]
    assert len(registry) == 4


def test_membership_by_class_or_label():
    assert Product in registry
    assert "catalog.order" in registry
    assert "catalog.Order" in registry
    assert Group not in registry
    assert "auth.group" not in registry
    assert 42 not in registry


def test_a_model_that_is_not_registered_says_how_to_register_it():
    with pytest.raises(NotRegistered) as caught:
        registry.get(Group)

    assert isinstance(caught.value, ImproperlyConfigured)
    assert str(caught.value) == (
        "auth.Group is not bulk-enabled. Add `register(Group, GroupSerializer)` "
        "(from bulkops.registry import register) to the bulk.py module of an installed app, "
        f"e.g. django.contrib.auth.bulk. Bulk-enabled models are: {ENABLED}."
    )
    with pytest.raises(NotRegistered, match="^auth.Group is not bulk-enabled"):
        registry.get("auth.group")


@pytest.mark.parametrize("label", ["catalog.Nope", "nope", "", "a.b.c"])
def test_a_label_that_names_no_model_lists_the_registered_ones(label):
    with pytest.raises(NotRegistered) as caught:
        registry.get(label)

    assert str(caught.value) == (
        f"There is no model {label!r}; bulk-enabled models are: {ENABLED}."
    )


# -- registering ------------------------------------------------------------------------------


@pytest.fixture
def fresh(monkeypatch):
    """An empty registry in place of the global one."""
    empty = BulkRegistry()
    monkeypatch.setattr("bulkops.registry.registry", empty)
    return empty


def test_register_takes_the_natural_key_from_the_serializer_or_as_given(fresh):
    assert fresh.register(Product, ProductSerializer).natural_key == ("sku",)
    assert fresh.register(Order, OrderSerializer).natural_key == ()
    assert fresh.register(Customer, CustomerSerializer, natural_key=()).natural_key == ()
    assert list(fresh) == [fresh.get(Customer), fresh.get(Order), fresh.get(Product)]


def test_register_as_a_decorator_returns_the_serializer(fresh):
    @register(Category, natural_key=("name",))
    class Named(serializers.ModelSerializer):
        class Meta:
            model = Category
            fields = ["name"]

    assert issubclass(Named, serializers.ModelSerializer)
    assert fresh.get("catalog.category").serializer_class is Named
    assert register(Product, ProductSerializer) is fresh.get(Product)


def test_a_model_is_registered_once(fresh):
    fresh.register(Product, ProductSerializer)

    with pytest.raises(AlreadyRegistered) as caught:
        fresh.register(Product, ProductSerializer)
    assert str(caught.value) == (
        "catalog.Product is registered already (with ProductSerializer); register each model once."
    )
    fresh.unregister("catalog.Product")
    assert Product not in fresh
    fresh.register(Product, ProductSerializer)
    assert Product in fresh


class CategoryByPk(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "name"]


class PlainSerializer(serializers.Serializer):
    name = serializers.CharField()


@pytest.mark.parametrize(
    ("model", "serializer", "options", "message"),
    [
        (
            Product,
            CategoryByPk,
            {},
            "CategoryByPk.Meta.model is Category, not Product; register Product with a "
            "serializer of Product.",
        ),
        (
            Category,
            PlainSerializer,
            {},
            f"register(Category, ...) needs a ModelSerializer class; got {PlainSerializer!r}.",
        ),
        (
            Category,
            CategoryByPk(),
            {},
            "register(Category, ...) needs a ModelSerializer class; got ",
        ),
        ("catalog.Category", CategoryByPk, {}, "register() takes a model class; got "),
        (
            Product,
            ProductSerializer,
            {"natural_key": ("code",)},
            "natural_key ('code',) of catalog.Product: Product has no field 'code'.",
        ),
        (
            Product,
            ProductSerializer,
            {"natural_key": ("category",)},
            "natural_key field 'category' of catalog.Product is a relation; name the object "
            "by its own unique fields.",
        ),
        (
            Product,
            ProductSerializer,
            {"natural_key": ("name",)},
            "natural_key ('name',) of catalog.Product is not unique in the database: make it "
            "unique (unique=True, or a UniqueConstraint on name), or name another key.",
        ),
    ],
)
def test_misconfiguration_says_how_to_fix_it(fresh, model, serializer, options, message):
    with pytest.raises(ImproperlyConfigured) as caught:
        fresh.register(model, serializer, **options)

    assert str(caught.value).startswith(message)
    assert len(fresh) == 0


def test_a_key_that_holds_a_unique_field_is_unique(fresh):
    entry = fresh.register(Product, ProductSerializer, natural_key=("sku", "name"))

    assert entry.natural_key == ("sku", "name")
