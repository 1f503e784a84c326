"""What bulkops keeps in the database: idempotency records (see ``bulkops.idempotency``)
and jobs (``bulkops.jobs.models``)."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from bulkops.jobs.models import BulkChunk, BulkJob, BulkPayload, BulkRowError

__all__ = [
    "BulkChunk",
    "BulkJob",
    "BulkPayload",
    "BulkRowError",
    "IdempotencyRecord",
    "ItemIdempotencyRecord",
]


class IdempotencyRecord(models.Model):
    """One ``Idempotency-Key`` of one user: claimed while its request runs, then the
    response it produced, replayed for a retry with the same payload."""

    IN_FLIGHT = "in_flight"
    DONE = "done"
    STATES = [(IN_FLIGHT, "in flight"), (DONE, "done")]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(
        max_length=64, help_text="SHA-256 of the method, path and canonical JSON body."
    )
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    state = models.CharField(max_length=10, choices=STATES, default=IN_FLIGHT)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # JSON text, not a JSONField: a response may hold strings PostgreSQL's jsonb refuses (NUL).
    response_body = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="bulkops_idempotency_user_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"


class ItemIdempotencyRecord(models.Model):
    """One item ``_idempotency_key`` of one user on one resource: pending while the batch
    that claimed it runs, then the outcome (object id and output data) a repeat replays.

    The outcome is written in the transaction that writes the item, so ``done`` means
    the item committed and ``pending`` that it did not (yet)."""

    PENDING = "pending"
    DONE = "done"
    STATES = [(PENDING, "pending"), (DONE, "done")]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    resource = models.CharField(max_length=100, help_text='The model, e.g. "catalog.product".')
    key = models.CharField(max_length=255)
    claim = models.UUIDField(help_text="The request that claimed the key.")
    fingerprint = models.CharField(
        max_length=64,
        blank=True,
        help_text="SHA-256 of the operation and the item as canonical JSON.",
    )
    state = models.CharField(max_length=10, choices=STATES, default=PENDING)
    status = models.CharField(max_length=10, blank=True, help_text="created, updated or deleted.")
    object_id = models.CharField(max_length=64, blank=True)
    data = models.TextField(blank=True, help_text="The item's output data, as JSON text.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "resource", "key"], name="bulkops_item_idempotency_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resource} {self.key} ({self.state})"


# Models of the admin import (remembered column mappings) live beside its views.
from bulkops.admin.models import ColumnMapping  # noqa: E402, F401
