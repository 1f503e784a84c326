"""Fixtures for the batch endpoint: the REST tests' users and clients, and ``send``."""

import pytest

from tests.api.conftest import (  # noqa: F401  (fixtures shared with the REST tests)
    _empty_cache,
    _fast_passwords,
    admin,
    api,
    client_for,
    make_user,
)

URL = "/api/batch/"


def send(client, body, **extra):
    """POST ``body`` (JSON-encoded unless bytes/str) to the batch endpoint."""
    if isinstance(body, bytes | str):
        return client.post(URL, data=body, content_type="application/json", **extra)
    return client.post(URL, body, format="json", **extra)


def by_id(response) -> dict:
    """The sub-responses of a batch response, by request id."""
    return {entry["id"]: entry for entry in response.json()["responses"]}


@pytest.fixture
def customer():
    def make(email: str = "ann@example.com", **values) -> dict:
        return {"email": email, "name": "Ann", "country": "DE", **values}

    return make


@pytest.fixture
def category_writes_then_refuses(monkeypatch):
    """Creating a category writes it, then answers 400 (a view that fails half-way)."""
    from rest_framework.exceptions import ValidationError

    from project.catalog.models import Category
    from project.catalog.views import CategoryViewSet

    def write_then_refuse(self, serializer):
        serializer.save()
        raise ValidationError({"name": ["Refused after writing."]})

    monkeypatch.setattr(CategoryViewSet, "perform_create", write_then_refuse)
    return Category
