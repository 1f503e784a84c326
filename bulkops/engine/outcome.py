"""One row's validation, in DRF's stages, with the unique checks deferred to the chunk.

DRF runs a ``UniqueValidator`` as one of its field's validators, and a
``UniqueTogetherValidator`` as one of the serializer's, each with a query per row.
Here each stands in its validators list as a ``UniqueSlot``: the validators run as DRF
runs them (every one, messages collected in order), and where the unique validator
stood, the value and the number of messages so far are noted. Once the whole chunk
is validated, each unique check runs as one query, and ``compose`` puts the "already
exists" message where DRF would have put it — so a row's errors are exactly what the
single endpoint answers for it:

- a field's unique message sits among that field's other messages, whatever the other
  fields say (a field-level validator runs even when other fields fail);
- a unique-together message only when every field passed, among the serializer
  validators' messages, and ``validate()``'s errors are then not shown (DRF would not
  have run it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import ValidationError
from rest_framework.fields import get_error_detail
from rest_framework.serializers import as_serializer_error

from .errors import RowErrors, non_field_key, plain_errors

if TYPE_CHECKING:
    from .unique import UniqueCheck

FIELDS, VALIDATORS, VALIDATE = "fields", "validators", "validate"


class UniqueSlot:
    """Stands where a unique validator stood in a validators list (see the module
    docstring). ``validator`` is the DRF validator it replaces."""

    requires_context = True

    def __init__(self, check: UniqueCheck, validator: Any) -> None:
        self.check = check
        self.validator = validator

    def __call__(self, value: Any, field: Any) -> None:  # pragma: no cover - never run
        raise AssertionError("UniqueSlot is noted by run_validators_noting, not called.")

    def __repr__(self) -> str:
        return f"<UniqueSlot {self.check.name}>"


@dataclass(slots=True)
class Noted:
    """A unique slot reached for a row: the key DRF's validator would have looked for
    there (``None``: it would not have looked), how many messages the validators before
    it gave, and whether that validators list passed as a whole."""

    slot: UniqueSlot
    key: Any
    index: int
    passed: bool = True


@dataclass(slots=True)
class RowOutcome:
    """What DRF's validation of one row did, up to where it stopped."""

    value: Any = None
    stage: str | None = None  # where it failed: FIELDS, VALIDATORS, VALIDATE (None: passed)
    errors: RowErrors | None = None  # DRF's error dict at that stage
    messages: list[Any] | None = None  # the serializer validators' own list (VALIDATORS)
    noted: list[Noted] = field(default_factory=list)


def noted_list(serializer: Any) -> list[Noted]:
    """Where the current row's unique slots are noted (``validate_row`` sets a new list
    per row)."""
    noted = getattr(serializer, "_bulkops_noted", None)
    return noted if noted is not None else []


def run_validators_noting(field: Any, value: Any, noted: list[Noted]) -> None:
    """DRF's ``Field.run_validators`` (every validator runs, list messages are collected,
    a dict message is raised at once), noting each ``UniqueSlot`` instead of running it."""
    errors: list[Any] = []
    first = len(noted)
    for validator in field.validators:
        if type(validator) is UniqueSlot:
            check = validator.check
            if check.plain:  # a field's own value is the key
                key = None if value is None else (value,)
            else:
                check.before_noting(validator, value, field)
                # The object being updated, as it is before this row changes it.
                instance = None if check.field_level else getattr(field, "instance", None)
                key = check.key_of_noted(value, instance)
            noted.append(Noted(validator, key, len(errors)))
            continue
        try:
            if getattr(validator, "requires_context", False):
                validator(value, field)
            else:
                validator(value)
        except ValidationError as exc:
            if isinstance(exc.detail, dict):
                raise
            errors.extend(exc.detail)
        except DjangoValidationError as exc:
            errors.extend(get_error_detail(exc))
    if errors:
        for entry in noted[first:]:
            entry.passed = False
        raise ValidationError(errors)


def validate_row(serializer: Any, data: Any, *, fields_only: bool = False) -> RowOutcome:
    """DRF's ``Serializer.run_validation`` of ``data``, stage by stage (``fields_only``:
    the fields' validation only, for a row whose object is not there)."""
    noted: list[Noted] = []
    serializer._bulkops_noted = noted
    outcome = RowOutcome(noted=noted)
    try:
        is_empty, data = serializer.validate_empty_values(data)
        if is_empty:
            outcome.value = data
            return outcome
        value = serializer.to_internal_value(data)
    except (ValidationError, DjangoValidationError) as exc:
        outcome.stage, outcome.errors = FIELDS, _as_errors(exc)
        return outcome
    if fields_only:
        outcome.value = value
        return outcome
    try:
        serializer.run_validators(value)
    except (ValidationError, DjangoValidationError) as exc:
        outcome.stage, outcome.errors = VALIDATORS, _as_errors(exc)
        detail = exc.detail if isinstance(exc, ValidationError) else None
        if isinstance(detail, list):
            outcome.messages = plain_errors(detail)
        return outcome
    try:
        value = serializer.validate(value)
        assert value is not None, ".validate() should return the validated data"
    except (ValidationError, DjangoValidationError) as exc:
        outcome.stage, outcome.errors = VALIDATE, _as_errors(exc)
        return outcome
    outcome.value = value
    return outcome


def _as_errors(exc: Exception) -> RowErrors:
    errors = plain_errors(as_serializer_error(exc))  # type: ignore[arg-type]
    return errors if isinstance(errors, dict) else {non_field_key(): errors}


def compose(
    outcome: RowOutcome, taken: Callable[[Noted], bool], field_order: Sequence[str]
) -> RowErrors | None:
    """The row's errors as DRF would give them, now that ``taken(noted)`` says which
    unique values the database holds for another object; ``None`` if it passes."""
    fields = [n for n in outcome.noted if n.slot.check.field_level]
    clashes = [n for n in fields if taken(n)]
    if outcome.stage == FIELDS or clashes:
        errors: RowErrors = dict(outcome.errors or {}) if outcome.stage == FIELDS else {}
        for n in clashes:
            name = n.slot.check.field_names[0]
            message = n.slot.check.message
            if n.passed:  # its validators passed: DRF would stop there, with this alone
                errors[name] = [message]
            else:
                messages = list(errors.get(name) or [])
                messages.insert(n.index, message)
                errors[name] = messages
        return _in_field_order(errors, field_order)
    together = [n for n in outcome.noted if not n.slot.check.field_level]
    if outcome.stage == VALIDATORS and outcome.messages is None:
        return outcome.errors  # a validator raised a dict: DRF raises it as it is
    messages = list(outcome.messages or []) if outcome.stage == VALIDATORS else []
    offset = 0
    found = False
    for n in together:
        if taken(n):
            messages.insert(n.index + offset, n.slot.check.message)
            offset += 1
            found = True
    if outcome.stage == VALIDATORS or found:
        return {non_field_key(): messages}
    return outcome.errors


def _in_field_order(errors: RowErrors, order: Sequence[str]) -> RowErrors:
    """DRF's errors come in the order of the fields."""
    ranked = {name: n for n, name in enumerate(order)}
    return dict(sorted(errors.items(), key=lambda item: ranked.get(item[0], len(ranked))))
