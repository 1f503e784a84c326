"""DELETE /api/<resource>/bulk/: delete the objects named by id or natural key."""

import pytest

from project.catalog.models import Category
from tests.api.helpers import bulk, skus

pytestmark = pytest.mark.django_db


def test_deletes_objects_named_by_id_or_natural_key(api, products):
    items = [{"id": products[0].pk, "_ref": "a"}, {"sku": "E-1"}]

    response = bulk(api, "delete", "products", {"items": items})

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed"
    assert body["summary"]["deleted"] == 2
    assert [(r["status"], r["id"]) for r in body["results"]] == [
        ("deleted", products[0].pk),
        ("deleted", products[1].pk),
    ]
    assert body["results"][0]["ref"] == "a"
    assert skus() == ["E-2", "E-3", "E-4"]


def test_a_missing_object_is_that_items_error(api, products):
    body = bulk(api, "delete", "products", {"items": [{"sku": "E-0"}, {"sku": "NOPE"}]}).json()

    assert body["status"] == "partial"
    assert body["results"][1]["errors"] == {"sku": ["No product with sku=NOPE."]}
    assert "E-0" not in skus()


@pytest.mark.parametrize(("atomic", "left"), [("all", 5), ("none", 4)])
def test_atomic_modes(api, products, atomic, left):
    items = [{"sku": "E-0"}, {"sku": "NOPE"}]

    body = bulk(api, "delete", "products", {"items": items, "atomic": atomic}).json()

    assert body["results"][0]["status"] == ("rolled_back" if atomic == "all" else "deleted")
    assert len(skus()) == left


def test_a_protected_object_is_an_item_error_not_a_500(api, products):
    body = bulk(api, "delete", "categories", {"items": [{"name": "Tools"}]}).json()

    assert body["results"][0]["status"] == "error"
    assert Category.objects.filter(name="Tools").exists()


def test_dry_run_deletes_nothing(api, products):
    body = bulk(api, "delete", "products", {"items": [{"sku": "E-0"}], "dry_run": True}).json()

    assert body["results"][0]["status"] == "deleted"
    assert len(skus()) == 5
