"""A throttle that counts items, not requests: one 1,000-item batch is 1,000 writes."""

from __future__ import annotations

import time
from typing import Any

from django.core.cache import cache as default_cache
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from .conf import bulkops_settings


class BulkItemThrottle(BaseThrottle):
    """At most ``BULKOPS["THROTTLE_ITEMS"]`` items per user per minute; off when ``None``.

    A sliding window kept in Django's cache (use a shared cache, such as Redis, when
    several processes serve the API). The view tells how many items a request carries
    through ``get_bulk_item_count()``; a view without it counts one per request. Denied
    requests get DRF's 429 with ``Retry-After``. Override ``get_cache_key`` to count per
    something other than the user (anonymous clients count per address).
    """

    cache = default_cache
    window = 60
    scope = "bulk_items"

    def __init__(self) -> None:
        self._wait: float | None = None

    def timer(self) -> float:
        return time.time()

    def get_cache_key(self, request: Any, view: Any) -> str:
        user = getattr(request, "user", None)
        ident = user.pk if user is not None and user.is_authenticated else self.get_ident(request)
        return f"bulkops:throttle:{self.scope}:{ident}"

    def get_item_count(self, request: Any, view: Any) -> int:
        count = getattr(view, "get_bulk_item_count", None)
        return count() if count is not None else 1

    def allow_request(self, request: Any, view: Any) -> bool:
        limit = bulkops_settings.THROTTLE_ITEMS
        if not limit:
            return True
        items = self.get_item_count(request, view)
        if items > limit:
            raise Throttled(
                wait=self.window,
                detail=(
                    f"This batch has {items} items; at most {limit} items per minute are "
                    "allowed. Send smaller batches."
                ),
            )
        key = self.get_cache_key(request, view)
        now = self.timer()
        history = [(at, n) for at, n in self.cache.get(key, []) if at > now - self.window]
        used = sum(n for _, n in history)
        if used + items > limit:
            # Wait until enough of the oldest requests leave the window.
            to_free = used + items - limit
            for at, n in history:
                to_free -= n
                if to_free <= 0:
                    self._wait = at + self.window - now
                    break
            return False
        if items:
            history.append((now, items))
            self.cache.set(key, history, self.window)
        return True

    def wait(self) -> float | None:
        return self._wait
