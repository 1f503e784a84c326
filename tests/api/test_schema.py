"""OpenAPI 3 at /api/schema/ and Swagger UI at /api/docs/: valid, and the bulk route in full."""

from io import StringIO

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db

RESOURCES = ("categories", "products", "customers", "orders")


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker):
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_validates_without_warnings(tmp_path):
    out = StringIO()
    # --validate checks it against the OpenAPI 3.0 JSON schema that drf-spectacular ships.
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(tmp_path / "s.yml"),
        stdout=out,
        stderr=out,
    )
    assert (tmp_path / "s.yml").read_text().startswith("openapi: 3")


def test_the_schema_passes_openapi_spec_validator(schema):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(schema)


def test_swagger_ui_is_served(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_bulk_method_is_described(schema, resource):
    operations = schema["paths"][f"/api/{resource}/bulk/"]
    assert set(operations) == {"post", "patch", "put", "delete"}
    for method, operation in operations.items():
        assert operation["requestBody"]["required"] is True, method
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("Request")
        assert set(operation["responses"]) == {
            "200",
            "202",
            "400",
            "401",
            "403",
            "409",
            "411",
            "413",
            "415",
            "422",
            "429",
            "500",
        }
        assert "Limits: at most 1000 items" in operation["description"]
        assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"])
        assert any(p["name"] == "Content-Encoding" for p in operation["parameters"])
        assert "Retry-After" in operation["responses"]["429"]["headers"]


def test_the_envelope_items_and_results_are_the_resource_not_a_generic_object(schema):
    components = schema["components"]["schemas"]
    request = components["ProductBulkCreateRequest"]
    assert request["required"] == ["items"]
    items = request["properties"]["items"]
    assert items["maxItems"] == 100_000  # MAX_ASYNC_ITEMS: more than 1000 run as a job
    item = components[items["items"]["$ref"].rsplit("/", 1)[1]]
    assert {"sku", "category", "price", "_ref", "_idempotency_key"} <= set(item["properties"])
    assert "sku" in item["required"]

    update_items = components["ProductBulkUpdateRequest"]["properties"]["items"]["items"]
    update_item = components[update_items["$ref"].rsplit("/", 1)[1]]
    assert "id" in update_item["properties"] and "required" not in update_item

    delete_items = components["ProductBulkDeleteRequest"]["properties"]["items"]["items"]
    assert set(components[delete_items["$ref"].rsplit("/", 1)[1]]["properties"]) == {
        "id",
        "sku",
        "_ref",
        "_idempotency_key",
    }

    response = components["ProductBulkResponse"]
    assert set(response["properties"]) == {"status", "atomic", "dry_run", "summary", "results"}
    result = components["ProductBulkResult"]
    assert result["properties"]["data"]["allOf"][0]["$ref"].endswith("/Product")
    assert components["BulkItemStatusEnum"]["enum"] == [
        "created",
        "updated",
        "deleted",
        "error",
        "rolled_back",
        "replayed",
    ]
    assert set(components["BulkLimitError"]["required"]) == {
        "error",
        "message",
        "limit",
        "received",
    }


def test_operation_ids_name_the_bulk_operation(schema):
    ids = {op["operationId"] for op in schema["paths"]["/api/products/bulk/"].values()}
    assert ids == {
        "products_bulk_create",
        "products_bulk_update",
        "products_bulk_upsert",
        "products_bulk_delete",
    }
