"""Schemathesis over /api/schema/: every operation, stateless, no input gives a 5xx.

Runs the generated requests through the WSGI application as a superuser with a token,
against the test database with a small catalog, with NUL characters allowed in the
generated strings (what PostgreSQL refuses) and enough examples per operation (50) to
reach the related fields. Skipped where schemathesis is not installed.
"""

import pytest
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings

pytestmark = pytest.mark.slow
schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
# ASCII only: a NUL then turns up often enough in 50 examples to reach every related
# field (non-ASCII text is covered by test_same_errors).
schema.config.generation.update(allow_x00=True, codec="ascii")
EXAMPLES = 50


@pytest.fixture
def _keep_the_test_connection():
    """Django closes the connection after each request it serves through WSGI, which would
    end the test's transaction; its test client disconnects the same signals."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def token(db, _keep_the_test_connection):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from tests.factories import CategoryFactory, OrderFactory, ProductFactory

    tools = CategoryFactory(name="Tools")
    ProductFactory.create_batch(3, category=tools)
    OrderFactory.create_batch(2)
    user = get_user_model().objects.create_superuser("fuzz", "fuzz@example.com", "pw")
    return Token.objects.create(user=user).key


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_no_input_gives_a_server_error(case, token):
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=[not_a_server_error])
