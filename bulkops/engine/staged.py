"""Validated rows between the two passes: ``StagedRow``, ``StagedChunk`` and their JSON form.

A staged row says what to write — ``action`` on the object ``pk`` with ``values``
(model attribute names -> values ready to write) — or why not (``errors``). Its
``source`` is the row as it was given, for error files. A chunk is plain JSON
(``to_json``/``from_json``), readable by any worker on any machine: values are
written per model field (Decimals and dates as text, related objects as their key)
and read back by the same field; source values, refs and errors go through the
tagged form of ``tagged``.

A staged chunk is never changed once validated: ``with_errors`` returns a new one,
and writing it twice gives the same results.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from django.db import models

from . import tagged
from .errors import RowErrors, merged

FORMAT = 1
COLUMNS = ("index", "row", "ref", "action", "pk", "values", "errors", "source")


@dataclass(slots=True)
class StagedRow:
    """One validated row (see the module docstring).

    ``index`` is the 0-based position in the batch, ``row`` the spreadsheet row
    number (``None`` for API items). ``action`` is ``create``/``update``/``delete``,
    or ``None`` when the row has ``errors``. ``pk`` names the object to update or
    delete. ``instance`` and ``related`` are what validation had at hand (the
    target object with the changes applied; related objects of a new row): kept
    while the row stays in memory, never serialized, rebuilt from the database
    when needed.
    """

    index: int
    row: int | None = None
    ref: Any = None
    action: str | None = None
    pk: Any = None
    values: dict[str, Any] | None = None
    errors: RowErrors | None = None
    source: Any = None
    instance: models.Model | None = field(default=None, compare=False, repr=False)
    related: dict[str, models.Model] | None = field(default=None, compare=False, repr=False)

    @property
    def position(self) -> int:
        """The row number for file rows, the index for API items: unique in a batch."""
        return self.row if self.row is not None else self.index

    @property
    def is_file_row(self) -> bool:
        return self.row is not None


@dataclass(slots=True)
class StagedChunk:
    """The validated rows of one chunk, starting at batch index ``start``.

    ``keys`` are the batch-wide keys of its rows (``Batch.chunk_keys``), computed at
    validation: ``{constraint: [[key_text, position], ...]}``. ``model`` is the model
    whose fields ``values`` hold.
    """

    start: int
    rows: list[StagedRow]
    keys: dict[str, list[list[Any]]] = field(default_factory=dict)
    model: type[models.Model] | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[StagedRow]:
        return iter(self.rows)

    @property
    def invalid(self) -> int:
        """How many rows have errors."""
        return sum(1 for row in self.rows if row.errors is not None)

    def with_errors(self, errors: Mapping[Any, Mapping[str, Any]]) -> StagedChunk:
        """A new chunk in which the rows at these positions (``{position: {field:
        [messages]}}``, as ``Batch.duplicate_errors`` gives them; positions may be
        JSON's string keys) also have these errors, and so are not written.
        A message a row has already is not added twice."""
        if not errors:
            return self
        wanted = {int(position): extra for position, extra in errors.items()}
        rows = []
        for row in self.rows:
            extra = wanted.get(row.position)
            if extra:
                row = replace(row, errors=merged(row.errors, extra), action=None)
            rows.append(row)
        return StagedChunk(self.start, rows, self.keys, self.model)

    # -- JSON ----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """This chunk as data ``json.dumps`` takes as it is (and ``jsonb`` stores).

        ``{"format": 1, "start", "keys", "columns": {"values": [...], "source": [...]},
        "rows": [[index, row, ref, action, pk, values, errors, source], ...]}``: a row's
        ``values``/``source`` is a list, by ``columns``, when it has exactly the chunk's
        usual keys (rows of one file or one request do), else a dict / the tagged value.
        """
        if self.model is None:
            raise ValueError("This StagedChunk has no model; Batch.validate_chunk sets it.")
        codec = codec_for(self.model)
        value_names = next((tuple(r.values) for r in self.rows if r.values is not None), ())
        source_names = next(
            (tuple(r.source) for r in self.rows if tagged.is_plain_dict(r.source)), ()
        )
        value_keys = frozenset(value_names)
        source_keys = frozenset(source_names)
        encoders = codec.encoders(value_names)
        encode = tagged.encode
        search = tagged.UNSTORABLE.search
        encode_pk = codec.encode_pk
        out = []
        for row in self.rows:
            values: Any = row.values
            if values is not None:
                if values.keys() == value_keys:
                    values = [
                        v if enc is None or v is None else enc(v)
                        for v, enc in zip(
                            map(values.__getitem__, value_names), encoders, strict=True
                        )
                    ]
                else:
                    values = codec.encode_values(values)
            source: Any = row.source
            if type(source) is dict and source.keys() == source_keys:
                # Text JSON and jsonb both take, or nothing, as it is; the rest tagged.
                source = [
                    v if (type(v) is str and search(v) is None) or v is None else encode(v)
                    for v in map(source.__getitem__, source_names)
                ]
            else:
                source = tagged.encode_single(source)
            out.append(
                [
                    row.index,
                    row.row,
                    None if row.ref is None else encode(row.ref),
                    row.action,
                    None if row.pk is None else encode_pk(row.pk),
                    values,
                    None if row.errors is None else encode(row.errors),
                    source,
                ]
            )
        return {
            "format": FORMAT,
            "start": self.start,
            "keys": self.keys,
            "columns": {"values": list(value_names), "source": list(source_names)},
            "rows": out,
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any] | str | bytes, *, model: type[models.Model]
    ) -> StagedChunk:
        """The chunk ``to_json`` wrote (as data, or as JSON text), values read back
        per field of ``model``."""
        payload: Any = json.loads(data) if isinstance(data, str | bytes) else data
        if payload.get("format") != FORMAT:
            raise ValueError(
                f"Staged chunk format {payload.get('format')!r} is not {FORMAT}; it was written "
                "by another version of bulkops: validate the rows again."
            )
        codec = codec_for(model)
        columns = payload.get("columns") or {}
        value_names = tuple(columns.get("values") or ())
        source_names = tuple(columns.get("source") or ())
        decoders = list(zip(value_names, codec.decoders(value_names), strict=True))
        decode = tagged.decode
        decode_pk = codec.decode_pk
        json_plain = tagged.JSON_PLAIN
        rows: list[StagedRow] = []
        append = rows.append
        for index, row, ref, action, pk, values, errors, source in payload["rows"]:
            if type(values) is list:
                values = {
                    name: v if dec is None or v is None else dec(v)
                    for (name, dec), v in zip(decoders, values, strict=True)
                }
            elif values is not None:
                values = codec.decode_values(values)
            if type(source) is list:
                source = {
                    name: v if type(v) in json_plain else decode(v)
                    for name, v in zip(source_names, source, strict=True)
                }
            else:
                source = decode(source)
            append(
                StagedRow(
                    index,
                    row,
                    None if ref is None else decode(ref),
                    action,
                    None if pk is None else decode_pk(pk),
                    values,
                    None if errors is None else decode(errors),
                    source,
                )
            )
        return cls(payload["start"], rows, payload.get("keys") or {}, model)


# -- values per model field -----------------------------------------------------------------


def _iso(value: Any) -> str:
    return value.isoformat()


def _duration_out(value: datetime.timedelta) -> int:
    return value // datetime.timedelta(microseconds=1)


def _duration_in(value: int) -> datetime.timedelta:
    return datetime.timedelta(microseconds=value)


def _float_out(value: float) -> Any:
    return value if math.isfinite(value) else repr(value)  # JSON has no inf/nan


def _bytes_out(value: Any) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def _decimal_in(value: Any) -> Decimal:
    return Decimal(value) if isinstance(value, str) else Decimal(str(value))


Codec = tuple[Callable[[Any], Any] | None, Callable[[Any], Any] | None]


def _field_codec(field: models.Field) -> Codec:
    """(encode, decode) of one model field's values; ``None`` where JSON carries the
    value as it is."""
    if field.is_relation and field.target_field is not None:  # type: ignore[union-attr]
        return _field_codec(field.target_field)  # type: ignore[union-attr]
    if isinstance(field, models.DecimalField):
        return str, _decimal_in
    if isinstance(field, models.DateTimeField):
        return _iso, datetime.datetime.fromisoformat
    if isinstance(field, models.DateField):
        return _iso, datetime.date.fromisoformat
    if isinstance(field, models.TimeField):
        return _iso, datetime.time.fromisoformat
    if isinstance(field, models.DurationField):
        return _duration_out, _duration_in
    if isinstance(field, models.UUIDField):
        return str, uuid.UUID
    if isinstance(field, models.BinaryField):
        return _bytes_out, base64.b64decode
    if isinstance(field, models.FloatField):
        return _float_out, float
    return None, None


class ModelCodec:
    """Encodes and decodes staged values (attribute name -> value) of one model.

    Keys that are no concrete field's attribute (a property the serializer sets)
    go through the tagged form, so nothing is lost either way.
    """

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        self.fields: dict[str, Codec] = {
            f.attname: _field_codec(f) for f in model._meta.concrete_fields
        }
        self.pk_codec = _field_codec(model._meta.pk)  # type: ignore[arg-type]

    def encode_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return self._convert(values, 0, tagged.encode)

    def decode_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return self._convert(values, 1, tagged.decode)

    def _convert(
        self, values: Mapping[str, Any], side: int, otherwise: Callable[[Any], Any]
    ) -> dict[str, Any]:
        fields = self.fields
        out = {}
        for name, value in values.items():
            codec = fields.get(name)
            if codec is None:
                out[name] = otherwise(value)
                continue
            convert = codec[side]
            out[name] = value if value is None or convert is None else convert(value)
        return out

    def encoders(self, names: tuple[str, ...]) -> list[Callable[[Any], Any] | None]:
        """One encoder per name (``None``: the value is JSON as it is)."""
        fields = self.fields
        return [fields[n][0] if n in fields else tagged.encode for n in names]

    def decoders(self, names: tuple[str, ...]) -> list[Callable[[Any], Any] | None]:
        fields = self.fields
        return [fields[n][1] if n in fields else tagged.decode for n in names]

    def encode_pk(self, pk: Any) -> Any:
        encode = self.pk_codec[0]
        return encode(pk) if encode is not None else pk

    def decode_pk(self, pk: Any) -> Any:
        decode = self.pk_codec[1]
        return decode(pk) if decode is not None else pk


_CODECS: dict[type[models.Model], ModelCodec] = {}


def codec_for(model: type[models.Model]) -> ModelCodec:
    codec = _CODECS.get(model)
    if codec is None:
        codec = _CODECS[model] = ModelCodec(model)
    return codec
