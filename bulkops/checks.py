"""System checks (``manage.py check``, ``runserver``, ``migrate``) for bulkops' settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from .conf import bulkops_settings
from .ratelimit import FALLBACK_CACHE, redis_status

_PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@checks.register("bulkops")
def check_throttle_store(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The item throttle needs Redis to hold across processes; say so when it has none."""
    if not bulkops_settings.THROTTLE_ITEMS:
        return []
    problem = redis_status()
    if problem is None:
        return []
    backend = settings.CACHES.get(FALLBACK_CACHE, {}).get("BACKEND", "")
    shared = backend not in _PER_PROCESS_CACHES
    return [
        checks.Warning(
            f"BULKOPS['THROTTLE_ITEMS'] is set but {problem}: items are counted in the "
            f"{FALLBACK_CACHE!r} cache instead"
            + (
                ", which is not atomic."
                if shared
                else f" ({backend.rsplit('.', 1)[-1]}), which every process keeps for "
                "itself: the limit does not hold across processes."
            ),
            hint="Set REDIS_URL in settings to a Redis server all web processes reach.",
            id="bulkops.W001" if shared else "bulkops.W002",
        )
    ]
