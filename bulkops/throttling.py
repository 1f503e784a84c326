"""A throttle that counts items, not requests: one 1,000-item batch is 1,000 writes."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from .conf import bulkops_settings
from .ratelimit import admit


class BulkItemThrottle(BaseThrottle):
    """At most ``BULKOPS["THROTTLE_ITEMS"]`` items per user in any minute; off when ``None``.

    Counted by ``bulkops.ratelimit.admit`` in Redis (``settings.REDIS_URL``): the check
    and the count are one atomic step, so the limit holds across every web process and
    machine (without Redis: Django's cache, with a warning). The view tells how many
    items a request carries through ``get_bulk_item_count()``; a view without it counts
    one per request. Denied requests get DRF's 429 with ``Retry-After``. Override
    ``get_cache_key`` to count per something other than the user (anonymous clients
    count per address).
    """

    window = 60
    scope = "bulk_items"

    def __init__(self) -> None:
        self._wait: float | None = None

    def timer(self) -> float | None:
        """The time to count at; ``None``: the store's own clock (one clock for every
        machine). Tests return a fixed time here."""
        return None

    def get_cache_key(self, request: Any, view: Any) -> str:
        user = getattr(request, "user", None)
        ident = user.pk if user is not None and user.is_authenticated else self.get_ident(request)
        return f"throttle:{self.scope}:{ident}"

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
        admission = admit(
            self.get_cache_key(request, view),
            items,
            limit=limit,
            window=self.window,
            now=self.timer(),
        )
        self._wait = admission.retry_after
        return admission.allowed

    def wait(self) -> float | None:
        return self._wait
