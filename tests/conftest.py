import pytest


@pytest.fixture(autouse=True)
def _bulkops_settings_reset(settings):
    """Every test starts from default BULKOPS settings."""
    settings.BULKOPS = {}
    yield
