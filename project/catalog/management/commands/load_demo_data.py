"""Load the demo catalog: 8 categories, 200 products, 50 customers and 100 orders.

Safe to run again: rows are matched by their natural keys (category name, product SKU,
customer email; an order by customer, product and time), so only missing rows are
created and rows edited since are left alone. Creates the superuser admin/admin when the
database has no user at all, unless --no-admin is given.
"""

import itertools
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import Model

from project.catalog.models import Category, Customer, Order, Product

CATEGORIES = ["Books", "Electronics", "Garden", "Kitchen", "Office", "Sports", "Tools", "Toys"]
ADJECTIVES = ["Compact", "Classic", "Deluxe", "Eco", "Heavy-duty", "Mini", "Pro", "Smart"]
NOUNS = ["Adapter", "Basket", "Bottle", "Clamp", "Lamp", "Notebook", "Set", "Stand"]
FIRST_NAMES = ["Ann", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas"]
LAST_NAMES = ["Meyer", "Novak", "Okafor", "Rossi", "Silva"]
COUNTRIES = ["AT", "BR", "CH", "DE", "ES", "FR", "GB", "IT", "NL", "US"]
PRODUCT_COUNT = 200
ORDER_COUNT = 100
FIRST_ORDER_AT = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"


def demo_products(categories: dict[str, Category]) -> list[Product]:
    rng = random.Random(2025)  # the same demo data on every machine and every run
    names = sorted(categories)
    products = []
    for n in range(1, PRODUCT_COUNT + 1):
        released = date(2023, 1, 1) + timedelta(days=rng.randrange(900)) if n % 7 else None
        products.append(
            Product(
                sku=f"SKU-{n:05d}",
                name=f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {n}",
                category=categories[names[n % len(names)]],
                price=Decimal(rng.randrange(199, 49_999)) / 100,
                quantity=rng.randrange(0, 500),
                active=n % 10 != 0,
                released=released,
            )
        )
    return products


def demo_customers() -> list[Customer]:
    pairs = itertools.product(LAST_NAMES, FIRST_NAMES)
    return [
        Customer(
            email=f"{first.lower()}.{last.lower()}@example.com",
            name=f"{first} {last}",
            country=COUNTRIES[i % len(COUNTRIES)],
        )
        for i, (last, first) in enumerate(pairs)
    ]


def demo_orders(customers: list[Customer], products: list[Product]) -> list[Order]:
    rng = random.Random(2026)
    return [
        Order(
            customer=customers[rng.randrange(len(customers))],
            product=products[rng.randrange(len(products))],
            quantity=rng.randrange(1, 10),
            placed_at=FIRST_ORDER_AT + timedelta(hours=7 * i, minutes=13 * i),
        )
        for i in range(ORDER_COUNT)
    ]


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-admin",
            action="store_true",
            help="Do not create the admin/admin superuser, even when no user exists.",
        )

    def handle(self, *args, no_admin: bool = False, verbosity: int = 1, **options):
        models: list[type[Model]] = [Category, Product, Customer, Order]
        before = {model: model.objects.count() for model in models}
        with transaction.atomic():
            self.load_catalog()
            admin_created = not no_admin and self.create_admin()
        after = {model: model.objects.count() for model in models}
        counts = ", ".join(
            f"{after[model]} {model._meta.verbose_name_plural} ({after[model] - before[model]} new)"
            for model in models
        )
        if verbosity == 0:
            return
        self.stdout.write(f"Demo data: {counts}.")
        if admin_created:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created superuser '{ADMIN_USERNAME}' with password '{ADMIN_PASSWORD}'."
                )
            )
        elif not no_admin:
            self.stdout.write("Users already exist; no demo superuser created.")

    def load_catalog(self) -> None:
        # ignore_conflicts: rows already there (same natural key) stay as they are.
        Category.objects.bulk_create(
            [Category(name=name) for name in CATEGORIES], ignore_conflicts=True
        )
        categories = Category.objects.in_bulk(CATEGORIES, field_name="name")

        products = demo_products(categories)
        Product.objects.bulk_create(products, ignore_conflicts=True)
        customers = demo_customers()
        Customer.objects.bulk_create(customers, ignore_conflicts=True)

        # ignore_conflicts leaves primary keys unset: reload, keeping the demo order.
        by_sku = Product.objects.in_bulk([p.sku for p in products], field_name="sku")
        by_email = Customer.objects.in_bulk([c.email for c in customers], field_name="email")
        orders = demo_orders(
            [by_email[c.email] for c in customers], [by_sku[p.sku] for p in products]
        )
        # An order has no natural key of its own; (customer, product, placed_at) stands in.
        existing = set(
            Order.objects.filter(placed_at__in=[o.placed_at for o in orders]).values_list(
                "customer_id", "product_id", "placed_at"
            )
        )
        Order.objects.bulk_create(
            [o for o in orders if (o.customer.pk, o.product.pk, o.placed_at) not in existing]
        )

    def create_admin(self) -> bool:
        User = get_user_model()
        if User._default_manager.exists():
            return False
        User._default_manager.create_superuser(
            username=ADMIN_USERNAME, email="admin@example.com", password=ADMIN_PASSWORD
        )
        return True
