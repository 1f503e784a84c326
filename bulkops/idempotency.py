"""Safe retries of bulk requests (CONTRACT §3 "Idempotency", DESIGN "Idempotency").

Two levels, both per user:

- ``Idempotency-Key`` header: the request's first response (status and body) is stored
  and replayed, with ``Idempotent-Replayed: true``, for a retry with the same payload
  within ``IDEMPOTENCY_TTL``; 422 for another payload, 409 while the first still runs.
- ``_idempotency_key`` on an item: the item is applied at most once per resource,
  across batches; a repeat reports ``replayed`` with the first outcome's id and data.

Both claim their keys by inserting them before any work, committed at once, so the
unique constraint decides between concurrent requests. A request key whose work fails
is deleted, so a retry runs again; an item key's outcome is written in the transaction
that writes the item, so an item that committed is replayed on a retry whatever
happened to the rest of its request, and one that did not is free again.
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

ITEM_KEY_REUSED = "Idempotency key reused for a different item."


class ItemKeyLost(Exception):
    """A claim this request held was taken over (after ``STALE_AFTER``) before its item
    committed: the chunk must not commit, or the item could be applied twice."""


def resource_of(model: type[models.Model]) -> str:
    """``"catalog.product"``: the scope of item keys."""
    return model._meta.label_lower


def item_fingerprint(*, mode: str, values: Any) -> str:
    """SHA-256 of the operation and the item (reserved members stripped) as canonical JSON."""
    text = f"{mode}\n{_dumps(values, canonical=True)}"
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class ItemKeys:
    """The ``_idempotency_key``s of one batch (DESIGN "Idempotency").

    1. ``claim`` (before the engine runs; committed at once, so concurrent requests see
       it): an item whose key holds a committed outcome is ``replayed`` when it is the
       same operation on the same payload, and otherwise fails with
       ``ITEM_KEY_REUSED``; a key another request holds is the item's error while that
       request may still run; a claim older than ``STALE_AFTER`` is taken over (a
       pending claim never committed its item, see ``record``). The other keys are
       claimed for this request: a ``pending`` row with this request's token.
    2. ``record`` is the engine's ``in_transaction`` callback: inside the transaction
       that writes a chunk, it locks this request's pending claims of the chunk's
       applied items and turns them into outcomes (``done``, id, data). They commit
       or roll back with the items. A claim no longer held raises ``ItemKeyLost``, so
       the chunk rolls back rather than apply an item another request now owns.
    3. ``finish`` releases the claims still pending (items that failed, rolled back or
       were never written: free for a retry) and merges the replayed items into the
       result in request order. ``release`` does only the first part, for a request
       that failed before any result.
    """

    def __init__(
        self,
        *,
        user: Any = None,
        model: type[models.Model] | None = None,
        mode: str = "",
        dry_run: bool = False,
    ) -> None:
        self.user = user
        self.model = model
        self.mode = mode
        self.dry_run = dry_run
        self.resource = resource_of(model) if model is not None else ""
        self.token = uuid.uuid4()
        self.claimed: dict[int, str] = {}
        self.fingerprints: dict[int, str] = {}
        self.replayed: dict[int, RowResult] = {}
        self.errors: dict[int, dict[str, list[str]]] = {}
        # Engine row i is request item positions[i] (replayed items are not sent).
        self.positions: list[int] = []

    @classmethod
    def claim(
        cls,
        *,
        user: Any,
        model: type[models.Model],
        mode: str,
        keys: dict[int, str],
        items: dict[int, Any],
        refs: dict[int, Any],
        dry_run: bool,
    ) -> ItemKeys:
        """``keys``: request index -> key; ``items``: request index -> the item's values."""
        if not keys or not getattr(user, "is_authenticated", False):
            return cls()
        self = cls(user=user, model=model, mode=mode, dry_run=dry_run)
        first: dict[str, int] = {}
        for index, key in keys.items():
            seen = first.setdefault(key, index)
            if seen != index:
                self._error(
                    index, f"Duplicate {IDEMPOTENCY_KEY}: item {seen} of this batch has it."
                )
        prints = {
            index: item_fingerprint(mode=mode, values=items[index]) for index in first.values()
        }
        now = timezone.now()
        if not dry_run:
            ItemIdempotencyRecord.objects.bulk_create(
                [
                    ItemIdempotencyRecord(
                        user=user,
                        resource=self.resource,
                        key=key,
                        claim=self.token,
                        fingerprint=prints[index],
                        created_at=now,
                    )
                    for key, index in first.items()
                ],
                ignore_conflicts=True,
            )
        records = self._records(list(first))
        for key, index in first.items():
            record = records.get(key)
            if record is not None and self._take_over(record, prints[index], now):
                record = self._records([key]).get(key)
            self._decide(index, key, record, prints[index], refs.get(index))
        return self

    def _take_over(self, record: ItemIdempotencyRecord, fingerprint: str, now: Any) -> bool:
        """Claim a pending key whose request died (older than ``STALE_AFTER``); True if the
        record changed meanwhile (taken over, or finished) and must be read again."""
        if (
            self.dry_run
            or record.claim == self.token
            or record.state != ItemIdempotencyRecord.PENDING
            or record.created_at > now - STALE_AFTER
        ):
            return False
        ItemIdempotencyRecord.objects.filter(
            pk=record.pk, claim=record.claim, state=ItemIdempotencyRecord.PENDING
        ).update(claim=self.token, fingerprint=fingerprint, created_at=now)
        return True

    def _decide(
        self,
        index: int,
        key: str,
        record: ItemIdempotencyRecord | None,
        fingerprint: str,
        ref: Any,
    ) -> None:
        if record is None:
            if not self.dry_run:  # released by its request between our insert and read
                self._error(index, f"A request with this {IDEMPOTENCY_KEY} just failed; retry.")
        elif record.claim == self.token:
            self.claimed[index] = key
            self.fingerprints[index] = fingerprint
        elif record.state == ItemIdempotencyRecord.DONE:
            # Outcomes recorded before fingerprints existed replay as they always did.
            if record.fingerprint and record.fingerprint != fingerprint:
                self._error(index, ITEM_KEY_REUSED)
                return
            self.replayed[index] = RowResult(
                index,
                REPLAYED,
                ref=ref,
                id=self.model._meta.pk.to_python(record.object_id),  # type: ignore[union-attr]
                data=json.loads(record.data) if record.data else None,
            )
        elif not self.dry_run:
            self._error(
                index,
                f"A request with this {IDEMPOTENCY_KEY} is still running; retry when it "
                "has finished.",
            )

    def _error(self, index: int, message: str) -> None:
        self.errors.setdefault(index, {}).setdefault(IDEMPOTENCY_KEY, []).append(message)

    def _records(self, keys: list[str]) -> dict[str, ItemIdempotencyRecord]:
        found = {}
        mine = ItemIdempotencyRecord.objects.filter(user=self.user, resource=self.resource)
        for start in range(0, len(keys), _LOOKUP_BATCH):
            for record in mine.filter(key__in=keys[start : start + _LOOKUP_BATCH]):
                found[record.key] = record
        return found

    # -- inside the engine's transactions -----------------------------------------------

    def record(self, results: list[RowResult]) -> None:
        """The engine's ``in_transaction``: the outcomes of this chunk's applied items,
        written in the transaction that writes them."""
        if not self.claimed or self.dry_run:
            return
        applied: dict[str, RowResult] = {}
        for row in results:
            index = self.positions[row.index] if self.positions else row.index
            key = self.claimed.get(index)
            if key is not None and row.status in _APPLIED:
                applied[key] = row
        if not applied:
            return
        keys = list(applied)
        held: set[str] = set()
        mine = ItemIdempotencyRecord.objects.select_for_update().filter(
            user=self.user,
            resource=self.resource,
            claim=self.token,  # type: ignore[misc]
            state=ItemIdempotencyRecord.PENDING,
        )
        for start in range(0, len(keys), _LOOKUP_BATCH):
            part = keys[start : start + _LOOKUP_BATCH]
            held.update(mine.filter(key__in=part).values_list("key", flat=True))
        lost = [key for key in keys if key not in held]
        if lost:
            raise ItemKeyLost(
                f"{len(lost)} {IDEMPOTENCY_KEY}(s) of this request were taken over by another "
                f"request before their items committed (first: {lost[0]!r})."
            )
        fingerprints = {key: self.fingerprints[i] for i, key in self.claimed.items()}
        ItemIdempotencyRecord.objects.bulk_create(
            [
                ItemIdempotencyRecord(
                    user=self.user,
                    resource=self.resource,
                    key=key,
                    claim=self.token,
                    fingerprint=fingerprints[key],
                    state=ItemIdempotencyRecord.DONE,
                    status=row.status,
                    object_id="" if row.id is None else str(row.id),
                    data="" if row.data is None else _dumps(row.data),
                )
                for key, row in applied.items()
            ],
            update_conflicts=True,
            unique_fields=["user", "resource", "key"],
            update_fields=["state", "status", "object_id", "data"],
        )

    # -- after the engine ----------------------------------------------------------------

    def finish(self, result: BatchResult, *, recorded_by_engine: bool) -> BatchResult:
        """The result over the whole request, replayed items merged in request order;
        the claims of items that were not applied are released.

        ``recorded_by_engine`` False: an engine without ``in_transaction`` ran, and the
        outcomes are recorded here, after the fact (a crash in between loses them).
        """
        if self.claimed and not recorded_by_engine:
            with transaction.atomic(using=router.db_for_write(ItemIdempotencyRecord)):
                self.record(result.results)
        self.release()
        if not self.replayed and self.positions == list(range(len(self.positions))):
            return result
        merged = BatchResult(mode=result.mode, atomic=result.atomic, dry_run=result.dry_run)
        outcomes = []
        for row in result.results:
            row.index = self.positions[row.index]
            outcomes.append(row)
        outcomes.extend(self.replayed.values())
        outcomes.sort(key=lambda row: row.index)
        for row in outcomes:
            merged.add(row)
        return merged

    def release(self) -> None:
        """Drop this request's claims still pending: their items were not applied."""
        if self.claimed:
            ItemIdempotencyRecord.objects.filter(
                claim=self.token, state=ItemIdempotencyRecord.PENDING
            ).delete()
