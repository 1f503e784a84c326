"""The batch endpoint in OpenAPI: envelope, responses, errors and limits."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker):
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def component(schema, ref: str) -> dict:
    return schema["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_the_batch_operation_is_described(schema):
    operation = schema["paths"]["/api/batch/"]["post"]

    assert set(schema["paths"]["/api/batch/"]) == {"post"}
    assert operation["operationId"] == "batch"
    assert "Limits: at most 50 requests" in operation["description"]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "409", "413", "415", "422"}
    assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"])
    assert operation["requestBody"]["required"] is True


def test_the_envelope_and_its_requests(schema):
    operation = schema["paths"]["/api/batch/"]["post"]
    envelope = component(
        schema, operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    )

    assert envelope["required"] == ["requests"]
    assert envelope["properties"]["requests"]["maxItems"] == 50
    assert envelope["properties"]["atomic"]["type"] == "boolean"
    request = component(schema, envelope["properties"]["requests"]["items"]["$ref"])
    assert set(request["properties"]) == {"id", "method", "url", "body", "headers", "depends_on"}
    assert request["required"] == ["id", "method", "url"]
    methods = component(schema, request["properties"]["method"]["$ref"])
    assert methods["enum"] == ["GET", "POST", "PUT", "PATCH", "DELETE"]
    headers = component(schema, request["properties"]["headers"]["$ref"])
    assert set(headers["properties"]) == {"Prefer", "Idempotency-Key", "If-Match"}


def test_the_responses(schema):
    responses = schema["paths"]["/api/batch/"]["post"]["responses"]
    ok = component(schema, responses["200"]["content"]["application/json"]["schema"]["$ref"])
    entry = component(schema, ok["properties"]["responses"]["items"]["$ref"])

    assert set(entry["properties"]) == {"id", "status", "body", "headers", "rolled_back"}
    assert set(entry["required"]) == {"id", "status", "body", "headers"}
    headers = component(schema, entry["properties"]["headers"]["$ref"])
    assert {"Location", "Retry-After"} <= set(headers["properties"])
    error = component(schema, responses["400"]["content"]["application/json"]["schema"]["$ref"])
    assert {"error", "message", "request"} <= set(error["properties"])
    limit = component(schema, responses["413"]["content"]["application/json"]["schema"]["$ref"])
    assert {"limit", "received"} <= set(limit["required"])


def test_the_limits_follow_the_settings(settings, client):
    settings.BULKOPS = {"MAX_BATCH_REQUESTS": 7}

    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    envelope = schema["components"]["schemas"]["BatchRequest"]
    assert envelope["properties"]["requests"]["maxItems"] == 7
    assert "at most 7 requests" in schema["paths"]["/api/batch/"]["post"]["description"]
