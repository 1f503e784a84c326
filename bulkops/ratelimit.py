"""Counting against a limit in a sliding window, atomically for every process and machine.

    from bulkops.ratelimit import admit
    admission = admit(f"bulk_items:{user.pk}", 500, limit=1000, window=60)
    if not admission.allowed:
        raise Throttled(wait=admission.retry_after)

``admit`` counts ``amount`` for ``key`` only if the amounts counted in the last
``window`` seconds plus ``amount`` stay within ``limit``: at most ``limit`` in *any*
``window``-second span, not per calendar minute. The check and the count are one
Lua script in Redis (``settings.REDIS_URL``), so concurrent requests on any number
of web processes and machines can never be admitted past the limit, and the clock
is Redis's own (``TIME``), the same for every machine.

Without a reachable Redis (no ``REDIS_URL``, or the server does not answer) the
count falls back to Django's default cache, which is only as shared as that cache
and not atomic (read, then write): this is logged once per process, the first time
it happens, and ``manage.py check`` warns about it (``bulkops.W001``/``W002``).
Redis is tried again after ``RETRY_REDIS_AFTER`` seconds.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches

logger = logging.getLogger("bulkops.ratelimit")

KEY_PREFIX = "bulkops:rate:"
CONNECT_TIMEOUT = 0.5  # seconds: a dead Redis must not hold a request for long
RETRY_REDIS_AFTER = 30.0  # seconds between attempts once Redis did not answer
FALLBACK_CACHE = "default"
_monotonic = time.monotonic  # (tests move this clock)

# KEYS[1]: a sorted set of "<amount>:<unique id>" scored by the time counted (ms).
# ARGV: amount, limit, window (ms), unique id, now (ms, or "" for Redis's TIME).
# Returns {admitted (0/1), counted in the window (incl. this amount if admitted),
#          ms until `amount` more would fit (0 if admitted, -1 if it never can)}.
_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end  -- TIME before writes (Redis < 5)
local key = KEYS[1]
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local now = tonumber(ARGV[5])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do
  used = used + tonumber(string.match(entries[i], '^(%d+):'))
end
if amount > limit then
  return {0, used, -1}
end
if used + amount > limit then
  local to_free = used + amount - limit
  for i = 1, #entries, 2 do
    to_free = to_free - tonumber(string.match(entries[i], '^(%d+):'))
    if to_free <= 0 then
      return {0, used, tonumber(entries[i + 1]) + window - now}
    end
  end
  return {0, used, window}
end
if amount > 0 then
  redis.call('ZADD', key, now, amount .. ':' .. ARGV[4])
  redis.call('PEXPIRE', key, window)
end
return {1, used + amount, 0}
"""


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer of ``admit``.

    ``used``: what the window holds now (with ``amount`` when it was admitted).
    ``retry_after``: seconds until ``amount`` would fit, ``None`` when admitted or when
    it never can (``amount`` over ``limit``). ``store``: ``"redis"`` or ``"cache"``.
    """

    allowed: bool
    used: int
    retry_after: float | None
    store: str


class _Store:
    """The process's Redis client for ``settings.REDIS_URL``, and whether it answers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.url: str | None = None
        self.client: Any = None
        self.script: Any = None
        self.down_until = 0.0
        self.warned = False

    def redis(self) -> Any:
        """The script bound to a client, or ``None`` while Redis is unusable."""
        url = getattr(settings, "REDIS_URL", None) or None
        if url is None:
            self._fall_back("settings.REDIS_URL is not set")
            return None
        if _monotonic() < self.down_until:
            return None
        with self.lock:
            if url != self.url:
                import redis

                self.client = redis.Redis.from_url(
                    url,
                    socket_connect_timeout=CONNECT_TIMEOUT,
                    socket_timeout=CONNECT_TIMEOUT * 4,
                )
                self.script = self.client.register_script(_SCRIPT)
                self.url = url
        return self.script

    def failed(self, exc: Exception) -> None:
        self.down_until = _monotonic() + RETRY_REDIS_AFTER
        self._fall_back(f"Redis at {_shown(self.url)} did not answer ({exc})")

    def answered(self) -> None:
        if self.warned:
            logger.warning("bulkops: Redis at %s answers again; counting there.", _shown(self.url))
            self.warned = False

    def _fall_back(self, why: str) -> None:
        if self.warned:
            return
        self.warned = True
        logger.warning(
            "bulkops: %s; rate limits count in Django's %r cache instead, which holds "
            "across processes only if that cache is shared, and not atomically. "
            "Point REDIS_URL at a Redis server for limits that hold.",
            why,
            FALLBACK_CACHE,
        )

    def reset(self) -> None:
        """Forget the client and any failure (tests, ``setting_changed``)."""
        with self.lock:
            self.url = self.client = self.script = None
            self.down_until = 0.0
            self.warned = False


_store = _Store()


def _shown(url: str | None) -> str:
    """The URL without its password."""
    if not url:
        return "(none)"
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def admit(
    key: str, amount: int, *, limit: int, window: float, now: float | None = None
) -> Admission:
    """Count ``amount`` for ``key`` if at most ``limit`` stay counted in any ``window``
    seconds; nothing is counted when it is refused.

    ``now`` (seconds since the epoch) is for tests; by default Redis's clock is used.
    """
    if amount < 0 or limit < 0 or window <= 0:
        raise ValueError("admit() needs amount >= 0, limit >= 0 and window > 0.")
    script = _store.redis()
    if script is not None:
        import redis

        window_ms = max(1, math.ceil(window * 1000))
        try:
            admitted, used, wait_ms = script(
                keys=[KEY_PREFIX + key],
                args=[
                    amount,
                    limit,
                    window_ms,
                    uuid.uuid4().hex,
                    "" if now is None else int(now * 1000),
                ],
            )
        except redis.RedisError as exc:  # unreachable, timed out, a read-only replica...
            _store.failed(exc)
        else:
            _store.answered()
            wait = None if admitted or wait_ms < 0 else int(wait_ms) / 1000
            return Admission(bool(admitted), int(used), wait, "redis")
    return _admit_in_cache(key, amount, limit=limit, window=window, now=now)


def _admit_in_cache(
    key: str, amount: int, *, limit: int, window: float, now: float | None
) -> Admission:
    """The same count in Django's cache: a read and a write, so only as good as that cache."""
    cache = caches[FALLBACK_CACHE]
    cache_key = KEY_PREFIX + key
    now = time.time() if now is None else now
    history = [(at, n) for at, n in cache.get(cache_key, []) if at > now - window]
    used = sum(n for _, n in history)
    if amount > limit:
        return Admission(False, used, None, "cache")
    if used + amount > limit:
        to_free = used + amount - limit
        wait = window
        for at, n in history:
            to_free -= n
            if to_free <= 0:
                wait = at + window - now
                break
        return Admission(False, used, wait, "cache")
    if amount:
        history.append((now, amount))
        cache.set(cache_key, history, math.ceil(window))
    return Admission(True, used + amount, None, "cache")


def redis_status() -> str | None:
    """``None`` when ``settings.REDIS_URL`` answers; otherwise why not (for system checks)."""
    url = getattr(settings, "REDIS_URL", None)
    if not url:
        return "settings.REDIS_URL is not set"
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT).ping()
    except redis.RedisError as exc:
        return f"Redis at {_shown(url)} does not answer ({exc})"
    return None


def reset() -> None:
    """Forget the Redis client and any recorded failure (for tests)."""
    _store.reset()
