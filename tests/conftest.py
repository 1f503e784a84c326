from decimal import Decimal

import pytest

from tests.factories import CategoryFactory, ProductFactory


@pytest.fixture(autouse=True)
def _bulkops_settings_reset(settings):
    """Every test starts from default BULKOPS settings."""
    settings.BULKOPS = {}
    yield


@pytest.fixture
def tools():
    """The category "Tools" (tests using it are marked ``django_db``)."""
    return CategoryFactory(name="Tools")


@pytest.fixture
def products(tools):
    """E-0 .. E-4 in Tools, price 10.00."""
    return [
        ProductFactory(sku=f"E-{i}", name=f"Existing {i}", category=tools, price=Decimal("10.00"))
        for i in range(5)
    ]
