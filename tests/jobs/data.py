"""Rows for job tests: orders of existing customers and products, products by SKU."""

from __future__ import annotations

import csv
from pathlib import Path

from project.catalog.models import Category, Customer, Product

ORDER_HEADER = ["customer", "product", "quantity", "placed_at"]
PRODUCT_HEADER = ["sku", "name", "category", "price", "quantity"]


def catalog(customers: int = 20, products: int = 20) -> None:
    """Customers c0..@example.com and products P-0.. in the category Tools (once)."""
    tools, _ = Category.objects.get_or_create(name="Tools")
    if Customer.objects.exists():
        return
    Customer.objects.bulk_create(
        [Customer(email=f"c{i}@example.com", name=f"C {i}", country="DE") for i in range(customers)]
    )
    Product.objects.bulk_create(
        [Product(sku=f"P-{i}", name=f"P {i}", category=tools, price=1) for i in range(products)]
    )


def order_rows(count: int, *, customers: int = 20, products: int = 20) -> list[list[str]]:
    return [
        [
            f"c{i % customers}@example.com",
            f"P-{i % products}",
            str(1 + i % 5),
            f"2024-05-{1 + i % 28:02d}T12:00:00Z",
        ]
        for i in range(count)
    ]


def order_items(count: int, **kwargs) -> list[dict]:
    return [dict(zip(ORDER_HEADER, row, strict=True)) for row in order_rows(count, **kwargs)]


def product_rows(count: int, *, prefix: str = "N") -> list[list[str]]:
    return [[f"{prefix}-{i}", f"New {i}", "Tools", "10.00", "1"] for i in range(count)]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
