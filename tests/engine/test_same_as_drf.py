"""Unique checks done per chunk give exactly DRF's per-row errors, in DRF's order.

``tests/api/test_same_errors.py`` compares the catalog's endpoints; here serializers
with what the catalog lacks: a unique-together validator, validators before and after a
field's ``UniqueValidator``, a ``validate()`` that fails too.
"""

import pytest
from rest_framework import serializers
from rest_framework.validators import UniqueTogetherValidator, UniqueValidator

from bulkops.engine import run_batch
from bulkops.engine.errors import plain_errors
from project.catalog.models import Customer, Order, Product
from tests.factories import CustomerFactory, OrderFactory, ProductFactory

pytestmark = pytest.mark.django_db


def no_x(value):
    if "x" in value:
        raise serializers.ValidationError("No x here.")


def short(value):
    if len(value) > 3:
        raise serializers.ValidationError("At most 3 characters here.")


class OrderPairSerializer(serializers.ModelSerializer):
    customer = serializers.SlugRelatedField(slug_field="email", queryset=Customer.objects.all())
    product = serializers.SlugRelatedField(slug_field="sku", queryset=Product.objects.all())

    class Meta:
        model = Order
        fields = ["id", "customer", "product", "quantity", "placed_at"]
        validators = [
            UniqueTogetherValidator(queryset=Order.objects.all(), fields=["customer", "product"])
        ]

    def validate(self, attrs):
        if attrs.get("quantity") == 13:
            raise serializers.ValidationError("Not 13.")
        return attrs


class CheckedSkuSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(
        max_length=64,
        validators=[no_x, UniqueValidator(queryset=Product.objects.all()), short],
    )
    category = serializers.SlugRelatedField(
        slug_field="name", queryset=Product._meta.get_field("category").related_model.objects
    )

    class Meta:
        model = Product
        fields = ["id", "sku", "name", "category", "price"]


@pytest.fixture
def world():
    ann = CustomerFactory(email="ann@example.com")
    CustomerFactory(email="bob@example.com")
    widget = ProductFactory(sku="AB", name="Widget")
    ProductFactory(sku="xAB", category=widget.category)
    ProductFactory(sku="ABCD", category=widget.category)
    order = OrderFactory(customer=ann, product=widget)
    return {"order": order, "widget": widget, "category": widget.category.name}


def drf_errors(serializer_class, data, instance=None):
    serializer = serializer_class(instance, data=data, partial=instance is not None)
    return None if serializer.is_valid() else plain_errors(serializer.errors)


def engine_errors(serializer_class, data, instance=None):
    row = data if instance is None else {**data, "id": instance.pk}
    mode = "create" if instance is None else "update"
    result = run_batch(serializer_class=serializer_class, rows=[row], mode=mode, dry_run=True)
    return result.results[0].errors


def assert_same(serializer_class, data, instance=None):
    expected = drf_errors(serializer_class, data, instance)
    got = engine_errors(serializer_class, data, instance)
    assert got == expected
    assert list((got or {}).items()) == list((expected or {}).items())  # the order too
    return got


PLACED = "2024-05-01T12:00:00Z"


@pytest.mark.parametrize(
    "data",
    [
        {"customer": "ann@example.com", "product": "AB", "quantity": 1, "placed_at": PLACED},
        {"customer": "ann@example.com", "product": "AB", "quantity": 13, "placed_at": PLACED},
        {"customer": "ann@example.com", "product": "AB", "quantity": 0, "placed_at": PLACED},
        {"customer": "ann@example.com", "product": "AB", "quantity": 1},
        {"customer": "bob@example.com", "product": "AB", "quantity": 13, "placed_at": PLACED},
        {"customer": "bob@example.com", "product": "AB", "quantity": 1, "placed_at": PLACED},
        {"product": "AB", "quantity": 1, "placed_at": PLACED},
    ],
)
def test_unique_together_on_create(world, data):
    assert_same(OrderPairSerializer, data)


@pytest.mark.parametrize(
    "data",
    [
        {"quantity": 3},
        {"quantity": 13},
        {"customer": "bob@example.com"},
        {"customer": "ann@example.com", "product": "AB"},
    ],
)
def test_unique_together_on_update(world, data):
    OrderFactory(customer=Customer.objects.get(email="bob@example.com"), product=world["widget"])
    assert_same(OrderPairSerializer, data, instance=world["order"])


def test_a_taken_pair_is_the_only_error_even_when_validate_fails_too(world):
    data = {"customer": "ann@example.com", "product": "AB", "quantity": 13, "placed_at": PLACED}
    assert assert_same(OrderPairSerializer, data) == {
        "non_field_errors": ["The fields customer, product must make a unique set."]
    }


@pytest.mark.parametrize(
    "sku",
    ["AB", "xAB", "ABCD", "xABCDE", "new", " AB ", "x" * 65],
)
@pytest.mark.parametrize("price", ["1.00", "-1", None])
def test_a_fields_unique_message_stands_where_its_validator_stands(world, sku, price):
    data = {"sku": sku, "name": "n", "category": world["category"]}
    if price is not None:
        data["price"] = price
    assert_same(CheckedSkuSerializer, data)


def test_a_taken_value_among_a_fields_other_messages(world):
    errors = assert_same(
        CheckedSkuSerializer, {"sku": "xAB", "name": "n", "category": world["category"]}
    )
    assert errors == {
        "sku": ["No x here.", "This field must be unique."],
        "price": ["This field is required."],
    }
