"""Helpers for the REST bulk API tests."""

from project.catalog.models import Product

BULK_URL = "/api/{}/bulk/"


def bulk(client, method: str, resource: str, body, **extra):
    """Send ``body`` (JSON-encoded unless bytes/str) to ``/api/<resource>/bulk/``."""
    send = getattr(client, method.lower())
    if isinstance(body, bytes | str):
        return send(BULK_URL.format(resource), data=body, content_type="application/json", **extra)
    return send(BULK_URL.format(resource), body, format="json", **extra)


def new_product(sku: str, **values):
    return {"sku": sku, "name": f"Product {sku}", "category": "Tools", "price": "1.00", **values}


def skus() -> list[str]:
    return sorted(Product.objects.values_list("sku", flat=True))
