"""factory-boy factories for the demo catalog (CONTRACT §2)."""

from datetime import UTC, datetime
from decimal import Decimal

import factory

from project.catalog.models import Category, Customer, Order, Product


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Category {n}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.Sequence(lambda n: f"Product {n}")
    category = factory.SubFactory(CategoryFactory)
    price = Decimal("9.99")
    quantity = 5
    active = True
    released = None


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    name = factory.Sequence(lambda n: f"Customer {n}")
    country = "DE"


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    customer = factory.SubFactory(CustomerFactory)
    product = factory.SubFactory(ProductFactory)
    quantity = 1
    placed_at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class ProductItemFactory(factory.DictFactory):
    """One bulk item for ``ProductSerializer``: the payload shape, category by name."""

    sku = factory.Sequence(lambda n: f"NEW-{n:05d}")
    name = factory.Sequence(lambda n: f"New product {n}")
    category = "Tools"
    price = "10.00"
    quantity = 1
