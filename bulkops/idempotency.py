"""Safe retries of bulk requests (CONTRACT §3 "Idempotency", DESIGN "Idempotency").

Two levels, both per user:

- ``Idempotency-Key`` header: the request's first response (status and body) is stored
  and replayed, with ``Idempotent-Replayed: true``, for a retry with the same payload
  within ``IDEMPOTENCY_TTL``; 422 for another payload, 409 while the first still runs.
- ``_idempotency_key`` on an item: the item is applied at most once per resource,
  across batches; a repeat reports ``replayed`` with the first outcome's id and data.

Both claim their keys by inserting them before any work, committed at once, so the
unique constraint decides between concurrent requests; a claim whose work fails is
deleted, so a retry runs again.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, models, router, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from .conf import bulkops_settings
from .envelope import IDEMPOTENCY_KEY, MAX_KEY_LENGTH, InvalidEnvelope
from .exceptions import BulkOpsError
from .models import IdempotencyRecord, ItemIdempotencyRecord
from .results import CREATED, DELETED, REPLAYED, UPDATED, BatchResult, RowResult

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# A claim still in flight after this long belongs to a request that died (a killed
# worker): a synchronous bulk request never runs this long.
STALE_AFTER = timedelta(minutes=10)
_APPLIED = (CREATED, UPDATED, DELETED)
_LOOKUP_BATCH = 500  # keys per ``__in`` query: below SQLite's parameter cap


class IdempotencyKeyReused(BulkOpsError):
    """The key was used before for a different payload: 422."""

    default_code = "idempotency_key_reused"
    status_code = 422


class IdempotencyInFlight(BulkOpsError):
    """The first request with the key is still running: 409."""

    default_code = "idempotency_in_flight"
    status_code = 409


def _dumps(data: Any, *, canonical: bool = False) -> str:
    # ASCII JSON text: no NUL or surrogate reaches the database or the hash raw.
    return json.dumps(data, cls=JSONEncoder, sort_keys=canonical, separators=(",", ":"))


def fingerprint(*, method: str, path: str, body: Any) -> str:
    """SHA-256 of the method, the path and the body as canonical JSON."""
    text = f"{method.upper()}\n{path}\n{_dumps(body, canonical=True)}"
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# -- the request ---------------------------------------------------------------------


def idempotent_response(request: Request, *, body: Any, run: Callable[[], Response]) -> Response:
    """``run()``'s response, or the stored one when ``request`` repeats an ``Idempotency-Key``.

    Without the header, or for an anonymous user, this is just ``run()``.
    """
    key = request.headers.get(HEADER)
    user = request.user
    if key is None or not getattr(user, "is_authenticated", False):
        return run()
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidEnvelope(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters.")
    record, claimed = claim_request(
        user=user,
        key=key,
        fingerprint=fingerprint(method=request.method, path=request.path, body=body),
        method=request.method,
        path=request.path,
    )
    if not claimed:
        return Response(
            json.loads(record.response_body),
            status=record.status_code,
            headers={REPLAYED_HEADER: "true"},
        )
    try:
        response = run()
    except BaseException:
        _release(record)
        raise
    if response.status_code >= 500:
        _release(record)
    else:
        IdempotencyRecord.objects.filter(pk=record.pk).update(
            state=IdempotencyRecord.DONE,
            status_code=response.status_code,
            response_body=_dumps(response.data),
        )
    return response


def claim_request(
    *, user: Any, key: str, fingerprint: str, method: str, path: str
) -> tuple[IdempotencyRecord, bool]:
    """Claim ``key`` for a new request: ``(record, True)``; or the finished request's
    record to replay: ``(record, False)``. Raises 409 or 422 otherwise."""
    db = router.db_for_write(IdempotencyRecord)
    ttl = timedelta(seconds=bulkops_settings.IDEMPOTENCY_TTL)
    for _ in range(3):
        now = timezone.now()
        try:
            # Its own transaction (a savepoint inside an outer one): committed before the
            # work starts, so a concurrent request with the key sees the claim.
            with transaction.atomic(using=db):
                record = IdempotencyRecord.objects.create(
                    user=user,
                    key=key,
                    fingerprint=fingerprint,
                    method=method,
                    path=path[:500],
                    created_at=now,
                )
            return record, True
        except IntegrityError:
            pass
        record = IdempotencyRecord.objects.filter(user=user, key=key).first()
        if record is None:
            continue  # its request failed and released it meanwhile
        in_flight = record.state == IdempotencyRecord.IN_FLIGHT
        if record.created_at <= now - ttl or (in_flight and record.created_at <= now - STALE_AFTER):
            IdempotencyRecord.objects.filter(
                pk=record.pk, state=record.state, created_at=record.created_at
            ).delete()
            continue
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                f"The {HEADER} {key!r} was used for a different request; "
                "use a new key for a new payload."
            )
        if in_flight:
            raise IdempotencyInFlight(
                f"A request with the {HEADER} {key!r} is still running; retry when it has finished."
            )
        return record, False
    raise IdempotencyInFlight(
        f"A request with the {HEADER} {key!r} is being retried concurrently; retry later."
    )


def _release(record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).delete()


# -- the items -----------------------------------------------------------------------


def resource_of(model: type[models.Model]) -> str:
    """``"catalog.product"``: the scope of item keys."""
    return model._meta.label_lower


class ItemKeys:
    """The ``_idempotency_key``s of one batch.

    ``claim`` finds the items applied before (``replayed``), claims the keys of the
    others for this request, and gives an error to an item whose key another request
    holds or that repeats a key of the same batch. After the engine ran, ``settle``
    records the outcome of the items that were applied, releases the other claims and
    merges the replayed items back into the result, in request order.
    """

    def __init__(self, *, user: Any = None, model: type[models.Model] | None = None) -> None:
        self.user = user
        self.model = model
        self.resource = resource_of(model) if model is not None else ""
        self.token = uuid.uuid4()
        self.claimed: dict[int, str] = {}
        self.replayed: dict[int, RowResult] = {}
        self.errors: dict[int, dict[str, list[str]]] = {}

    @classmethod
    def claim(
        cls,
        *,
        user: Any,
        model: type[models.Model],
        keys: dict[int, str],
        refs: dict[int, Any],
        dry_run: bool,
    ) -> ItemKeys:
        if not keys or not getattr(user, "is_authenticated", False):
            return cls()
        self = cls(user=user, model=model)
        first: dict[str, int] = {}
        for index, key in keys.items():
            seen = first.setdefault(key, index)
            if seen != index:
                self._error(
                    index, f"Duplicate {IDEMPOTENCY_KEY}: item {seen} of this batch has it."
                )
        resource = self.resource
        if not dry_run:
            ItemIdempotencyRecord.objects.bulk_create(
                [
                    ItemIdempotencyRecord(user=user, resource=resource, key=key, claim=self.token)
                    for key in first
                ],
                ignore_conflicts=True,
            )
        records = self._records(list(first))
        stale = timezone.now() - STALE_AFTER
        for key, index in first.items():
            record = records.get(key)
            if record is None:
                if not dry_run:  # released by its request between our insert and read
                    self._error(index, f"A request with this {IDEMPOTENCY_KEY} just failed; retry.")
            elif record.claim == self.token:
                self.claimed[index] = key
            elif record.state == ItemIdempotencyRecord.DONE:
                self.replayed[index] = RowResult(
                    index,
                    REPLAYED,
                    ref=refs.get(index),
                    id=model._meta.pk.to_python(record.object_id),  # type: ignore[union-attr]
                    data=json.loads(record.data) if record.data else None,
                )
            elif record.created_at <= stale:
                self._error(
                    index,
                    f"An earlier request with this {IDEMPOTENCY_KEY} did not finish, so whether "
                    "it was applied is unknown; check the object and send a new key.",
                )
            else:
                self._error(
                    index,
                    f"A request with this {IDEMPOTENCY_KEY} is still running; retry when it "
                    "has finished.",
                )
        return self

    def _error(self, index: int, message: str) -> None:
        self.errors.setdefault(index, {}).setdefault(IDEMPOTENCY_KEY, []).append(message)

    def _records(self, keys: list[str]) -> dict[str, ItemIdempotencyRecord]:
        found = {}
        mine = ItemIdempotencyRecord.objects.filter(
            user=self.user,
            resource=self.resource,
        )
        for start in range(0, len(keys), _LOOKUP_BATCH):
            for record in mine.filter(key__in=keys[start : start + _LOOKUP_BATCH]):
                found[record.key] = record
        return found

    def settle(self, result: BatchResult, positions: list[int]) -> BatchResult:
        """The result over the whole request: engine results at their request ``positions``
        (``positions[i]`` is the request index of engine row ``i``) plus the replayed items."""
        if not self.replayed and positions == list(range(len(positions))) and not self.claimed:
            return result
        merged = BatchResult(mode=result.mode, atomic=result.atomic, dry_run=result.dry_run)
        outcomes = []
        for row in result.results:
            row.index = positions[row.index]
            outcomes.append(row)
        outcomes.extend(self.replayed.values())
        outcomes.sort(key=lambda row: row.index)
        applied, failed = [], []
        for row in outcomes:
            merged.add(row)
            key = self.claimed.get(row.index)
            if key is None:
                continue
            if row.status in _APPLIED and not result.dry_run:
                applied.append(
                    ItemIdempotencyRecord(
                        user=self.user,
                        resource=self.resource,
                        key=key,
                        claim=self.token,
                        state=ItemIdempotencyRecord.DONE,
                        status=row.status,
                        object_id="" if row.id is None else str(row.id),
                        data="" if row.data is None else _dumps(row.data),
                    )
                )
            else:
                failed.append(key)
        if applied:
            # One statement turns the pending claims into outcomes.
            ItemIdempotencyRecord.objects.bulk_create(
                applied,
                update_conflicts=True,
                unique_fields=["user", "resource", "key"],
                update_fields=["state", "status", "object_id", "data"],
            )
        self._delete(failed)
        return merged

    def release(self) -> None:
        """Drop every claim of this request (its work failed before a result)."""
        if self.claimed:
            ItemIdempotencyRecord.objects.filter(claim=self.token).delete()

    def _delete(self, keys: list[str]) -> None:
        mine = ItemIdempotencyRecord.objects.filter(
            user=self.user,
            resource=self.resource,
            claim=self.token,  # type: ignore[arg-type]
        )
        for start in range(0, len(keys), _LOOKUP_BATCH):
            mine.filter(key__in=keys[start : start + _LOOKUP_BATCH]).delete()
