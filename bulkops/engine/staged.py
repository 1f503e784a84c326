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
import operator
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
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

    def to_json(self, *, sources: bool = True) -> dict[str, Any]:
        """This chunk as data ``json.dumps`` takes as it is (and ``jsonb`` stores).

        ``{"format": 1, "start", "keys", "columns": {"values": [...], "source": [...]},
        "rows": [[index, row, ref, action, pk, values, errors, source], ...]}``: a row's
        ``values``/``source`` is a list, by ``columns``, when it has exactly the chunk's
        usual keys (rows of one file or one request do), else a dict / the tagged value.
        The usual rows are converted a column at a time: one encoder call per value,
        no per-value type tests where a whole column is plain.

        ``sources=False`` leaves the rows' ``source`` out (``null``), for a caller that
        keeps the rows as given elsewhere and hands them back to ``from_json``.
        """
        if self.model is None:
            raise ValueError("This StagedChunk has no model; Batch.validate_chunk sets it.")
        codec = codec_for(self.model)
        rows = self.rows
        value_names = next((tuple(r.values) for r in rows if r.values is not None), ())
        source_names = next((tuple(r.source) for r in rows if tagged.is_plain_dict(r.source)), ())
        value_keys = frozenset(value_names)
        source_keys = frozenset(source_names)
        values_out: list[Any] = [r.values for r in rows]
        usual = [i for i, v in enumerate(values_out) if v is not None and v.keys() == value_keys]
        for i, encoded in zip(
            usual,
            _by_columns(
                [values_out[i] for i in usual], value_names, codec.encoders(value_names), _encode
            ),
            strict=True,
        ):
            values_out[i] = encoded
        usual_set = set(usual)
        for i, v in enumerate(values_out):
            if v is not None and i not in usual_set:
                values_out[i] = codec.encode_values(v)
        if not sources:
            source_names, source_keys = (), frozenset()
        given: list[Any] = [r.source for r in rows] if sources else [None] * len(rows)
        usual = [i for i, v in enumerate(given) if type(v) is dict and v.keys() == source_keys]
        for i, encoded in zip(
            usual,
            _by_columns([given[i] for i in usual], source_names, None, _encode_source),
            strict=True,
        ):
            given[i] = encoded
        usual_set = set(usual)
        encode = tagged.encode
        encode_single = tagged.encode_single
        encode_pk = codec.encode_pk
        out = [
            [
                row.index,
                row.row,
                None if row.ref is None else encode(row.ref),
                row.action,
                None if row.pk is None else encode_pk(row.pk),
                values,
                None if row.errors is None else encode(row.errors),
                source if i in usual_set or source is None else encode_single(source),
            ]
            for i, (row, values, source) in enumerate(zip(rows, values_out, given, strict=True))
        ]
        return {
            "format": FORMAT,
            "start": self.start,
            "keys": self.keys,
            "columns": {"values": list(value_names), "source": list(source_names)},
            "rows": out,
        }

    @classmethod
    def from_json(
        cls,
        data: Mapping[str, Any] | str | bytes,
        *,
        model: type[models.Model],
        sources: Sequence[Any] | None = None,
    ) -> StagedChunk:
        """The chunk ``to_json`` wrote (as data, or as JSON text), values read back
        per field of ``model`` (a column at a time, as ``to_json`` wrote them).

        ``sources``: the rows as given, one per staged row, for a chunk written with
        ``to_json(sources=False)``."""
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
        if not payload["rows"]:
            return cls(payload["start"], [], payload.get("keys") or {}, model)
        indexes, numbers, refs, actions, pks, values_in, errors, sources_in = zip(
            *payload["rows"], strict=True
        )
        values: list[Any] = list(values_in)
        listed = [i for i, v in enumerate(values) if type(v) is list]
        for i, decoded in zip(
            listed,
            _dicts_by_columns(
                [values[i] for i in listed], value_names, codec.decoders(value_names)
            ),
            strict=True,
        ):
            values[i] = decoded
        listed_set = set(listed)
        for i, v in enumerate(values):
            if v is not None and i not in listed_set:
                values[i] = codec.decode_values(v)
        decode = tagged.decode
        if sources is not None:
            if len(sources) != len(indexes):
                raise ValueError(
                    f"{len(sources)} source rows for a staged chunk of {len(indexes)} rows."
                )
            given: list[Any] = list(sources)
        else:
            given = list(sources_in)
            listed = [i for i, v in enumerate(given) if type(v) is list]
            for i, decoded in zip(
                listed,
                _dicts_by_columns([given[i] for i in listed], source_names, None),
                strict=True,
            ):
                given[i] = decoded
            listed_set = set(listed)
            for i, v in enumerate(given):
                if i not in listed_set:
                    given[i] = decode(v)
        decode_pk = codec.decode_pk
        rows = [
            StagedRow(
                index,
                number,
                None if ref is None else decode(ref),
                action,
                None if pk is None else decode_pk(pk),
                row_values,
                None if row_errors is None else decode(row_errors),
                source,
            )
            for index, number, ref, action, pk, row_values, row_errors, source in zip(
                indexes, numbers, refs, actions, pks, values, errors, given, strict=True
            )
        ]
        return cls(payload["start"], rows, payload.get("keys") or {}, model)


# -- a column at a time -------------------------------------------------------------------------


def _encode(column: list, encoder: Callable[[Any], Any] | None) -> list:
    """A staged-values column as JSON: the field's encoder on each value but None."""
    if encoder is None:
        return column
    if None in column:
        return [v if v is None else encoder(v) for v in column]
    return list(map(encoder, column))


def _encode_source(column: list, _: Any) -> list:
    """A source column as JSON: text and None as they are (when JSON and jsonb can hold
    them), the rest tagged."""
    if all(type(v) is str for v in column) and tagged.UNSTORABLE.search("".join(column)) is None:
        return column
    search = tagged.UNSTORABLE.search
    encode = tagged.encode
    return [v if (type(v) is str and search(v) is None) or v is None else encode(v) for v in column]


def _decode(column: list, decoder: Callable[[Any], Any] | None) -> list:
    if decoder is None:
        return column
    if None in column:
        return [v if v is None else decoder(v) for v in column]
    return list(map(decoder, column))


def _decode_source(column: list) -> list:
    plain = tagged.JSON_PLAIN
    if set(map(type, column)) <= plain:
        return column
    decode = tagged.decode
    return [v if type(v) in plain else decode(v) for v in column]


def _by_columns(
    dicts: list[dict[str, Any]],
    names: tuple[str, ...],
    converters: list[Any] | None,
    convert: Callable[[list, Any], list],
) -> list[list[Any]]:
    """Each dict's values (all have exactly ``names``) as a list in ``names``' order, each
    column converted by ``convert(column, its converter)``."""
    if not dicts:
        return []
    if not names:
        return [[] for _ in dicts]
    columns = [list(map(operator.itemgetter(name), dicts)) for name in names]
    converted = [
        convert(column, converters[n] if converters is not None else None)
        for n, column in enumerate(columns)
    ]
    return list(map(list, zip(*converted)))  # noqa: B905 - columns of one length


def _dicts_by_columns(
    lists: list[list[Any]], names: tuple[str, ...], decoders: list[Any] | None
) -> list[dict[str, Any]]:
    """The dicts ``_by_columns`` listed: each column decoded by its decoder (``None``:
    source values, decoded as ``tagged`` tags them)."""
    if not lists:
        return []
    if not names:
        return [{} for _ in lists]
    columns = [list(column) for column in zip(*lists, strict=True)]
    if decoders is None:
        columns = [_decode_source(column) for column in columns]
    else:
        columns = [_decode(column, dec) for column, dec in zip(columns, decoders, strict=True)]
    # Every column has one value per row (zip(*lists) made them): no strict checks here.
    return [dict(zip(names, row)) for row in zip(*columns)]  # noqa: B905


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
