"""The ``BULKOPS`` settings, with defaults.

Read through ``bulkops_settings.NAME``; values are looked up lazily and cached,
and the cache is cleared when ``settings.BULKOPS`` changes (``override_settings``
in tests), the way DRF's ``api_settings`` works.
"""

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

MiB = 1024 * 1024

DEFAULTS: dict[str, Any] = {
    "MAX_ITEMS": 1000,
    "MAX_BYTES": 5 * MiB,
    "MAX_ASYNC_ITEMS": 100_000,
    # Bytes of an asynchronous bulk request (a job): 100,000 items of ~330 bytes.
    "MAX_ASYNC_BYTES": 32 * MiB,
    "ASYNC_THRESHOLD": 1000,
    "DEFAULT_ATOMIC": "none",
    "CHUNK_SIZE": 1000,
    "MAX_CHUNK_SIZE": 10_000,
    "QUEUE": "bulkops",
    "IDEMPOTENCY_TTL": 86_400,
    "MAX_UPLOAD_BYTES": 200 * MiB,
    "MAX_ROWS": 2_000_000,
    "MAX_BATCH_REQUESTS": 50,
    # Requests of one /api/batch/ call (atomic false) that run side by side, each in
    # its own thread on its own database connection; 1 = one after another.
    "BATCH_CONCURRENCY": 4,
    "THROTTLE_ITEMS": None,
    # Jobs (bulkops.jobs).
    "STORAGE": "default",  # a STORAGES alias: uploads and payloads any worker can read
    "CHUNK_RETRIES": 3,  # retries of a chunk after a transient database error
    "MAX_RUNNING_JOBS_PER_USER": 2,
    "MAX_QUEUED_JOBS_PER_USER": 20,
    "JOB_FINISHED": None,  # dotted path of a callable(job) run when a job ends
    # The site's address, for the links in job e-mails ("https://bulk.example.com");
    # None: the links are paths.
    "SITE_URL": None,
    # A task renews its lease on its chunk every HEARTBEAT_INTERVAL seconds; a lease older
    # than STALE_AFTER seconds is a dead worker's, and live workers look for those every
    # HEAL_INTERVAL seconds.
    "HEARTBEAT_INTERVAL": 1,
    "STALE_AFTER": 30,
    "HEAL_INTERVAL": 10,
    # Readers: bounds that keep a hostile file from taking unbounded memory.
    "MAX_COLUMNS": 1000,
    "MAX_CELL_CHARS": 1 * MiB,
    # A spreadsheet whose parts unpack to more than this many bytes, or more than
    # MAX_COMPRESSION_RATIO times their packed size, is refused as a zip bomb.
    "MAX_UNPACKED_BYTES": 1024 * MiB,
    "MAX_COMPRESSION_RATIO": 200,
    # Legacy 8-bit encoding tried when a text file is not UTF-8/UTF-16.
    "FALLBACK_ENCODING": "cp1252",
}

ATOMIC_CHOICES = ("all", "chunk", "none")


class BulkOpsSettings:
    def __init__(self) -> None:
        self._cached: set[str] = set()

    @property
    def user_settings(self) -> dict[str, Any]:
        if not hasattr(self, "_user_settings"):
            from django.conf import settings

            value = getattr(settings, "BULKOPS", {}) or {}
            unknown = sorted(set(value) - set(DEFAULTS))
            if unknown:
                raise ImproperlyConfigured(
                    f"Unknown BULKOPS setting(s): {', '.join(unknown)}. "
                    f"Valid names are: {', '.join(sorted(DEFAULTS))}."
                )
            self._user_settings = value
        return self._user_settings

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Invalid BULKOPS setting: {name!r}")
        value = self.user_settings.get(name, DEFAULTS[name])
        if name == "DEFAULT_ATOMIC" and value not in ATOMIC_CHOICES:
            raise ImproperlyConfigured(
                f"BULKOPS['DEFAULT_ATOMIC'] is {value!r}; use one of {', '.join(ATOMIC_CHOICES)}."
            )
        self._cached.add(name)
        setattr(self, name, value)
        return value

    def reload(self) -> None:
        for name in self._cached:
            delattr(self, name)
        self._cached.clear()
        if hasattr(self, "_user_settings"):
            delattr(self, "_user_settings")


bulkops_settings = BulkOpsSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "BULKOPS":
        bulkops_settings.reload()


setting_changed.connect(_reload)
