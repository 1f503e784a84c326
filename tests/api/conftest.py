"""Fixtures for the REST bulk API: users with given permissions, clients, a catalog,
Redis for the rate counts, a live gunicorn server."""

import contextlib

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bulkops import ratelimit
from tests.api.live import LiveServer, database_url

# What the live server runs with (tests/api/live_settings.py).
LIVE_BULKOPS = {"THROTTLE_ITEMS": 300}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def clear_rate_counts() -> None:
    """Drop the rate counts in the test Redis db (and the fallback cache): user ids repeat
    from test to test."""
    with contextlib.suppress(Exception):  # a test pointed CACHES at a server not there
        cache.clear()
    ratelimit.reset()
    url = getattr(django_settings, "REDIS_URL", None)
    if not url:
        return
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        keys = list(client.scan_iter(match=ratelimit.KEY_PREFIX + "*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass


@pytest.fixture(autouse=True)
def _empty_cache():
    """Every test starts with nothing counted (tests/batch imports this fixture too)."""
    clear_rate_counts()
    yield
    clear_rate_counts()


@pytest.fixture
def need_redis():
    problem = ratelimit.redis_status()
    if problem is not None:
        pytest.skip(f"needs Redis: {problem}")


@pytest.fixture(scope="session")
def live_server_process(django_db_setup):
    """gunicorn, three worker processes, on the test database (PostgreSQL only: SQLite's
    test database lives in this process's memory). BULKOPS: ``LIVE_BULKOPS``."""
    if connection.vendor != "postgresql":
        pytest.skip("a live server needs PostgreSQL (SQLite's test database is in memory)")
    server = LiveServer(database=database_url(connection.settings_dict), bulkops=LIVE_BULKOPS)
    yield server
    server.stop()


@pytest.fixture
def live(live_server_process, transactional_db, make_user):
    """The live server and a superuser's token header (the test's data is committed)."""
    token = Token.objects.create(user=make_user(superuser=True))
    live_server_process.auth = {"Authorization": f"Token {token.key}"}
    return live_server_process


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
