"""Fixtures for the REST bulk API: users with given permissions, clients, a catalog."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from rest_framework.test import APIClient


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_cache():
    """The item throttle counts in the cache: every test starts with none counted."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_user(db):
    """``make_user("add_product", "change_product", staff=True)``: a user with those
    catalog permissions."""
    counter = iter(range(10_000))

    def make(*codenames: str, staff: bool = True, superuser: bool = False):
        n = next(counter)
        user = get_user_model().objects.create_user(
            f"user{n}", f"user{n}@example.com", "pw", is_staff=staff, is_superuser=superuser
        )
        if codenames:
            user.user_permissions.set(
                Permission.objects.filter(content_type__app_label="catalog", codename__in=codenames)
            )
        return user

    return make


@pytest.fixture
def client_for():
    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def admin(make_user):
    return make_user(superuser=True)


@pytest.fixture
def api(admin, client_for):
    """A superuser's client."""
    return client_for(admin)
