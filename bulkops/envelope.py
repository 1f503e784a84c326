"""The body of a bulk request (CONTRACT §3): read it within limits, parse it, check it.

    {"items": [{...}, ...], "atomic": "none", "dry_run": false, "chunk_size": 500}

The body is read here, not by DRF's parsers, so that its size is checked against
``MAX_BYTES`` before it is read (from ``Content-Length``), while it is read (a chunked
request has none) and while it is unpacked (``Content-Encoding: gzip``), and so that
every problem is answered as the contract words it: 400 ``invalid_envelope`` saying
what is wrong and where, 413 ``batch_too_large`` with ``limit`` and ``received``, DRF's
415 for a body that is not JSON of a media type the view's parsers accept. A problem
with one item is that item's error, not the request's.
"""

from __future__ import annotations

import io
import json
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.request import Request
from rest_framework.utils.mediatypes import _MediaType

from .conf import ATOMIC_CHOICES, bulkops_settings
from .engine import SourceRow, check_options
from .engine.lookups import SURROGATES
from .exceptions import BulkOpsError, InvalidOptions

REF = "_ref"
IDEMPOTENCY_KEY = "_idempotency_key"
RESERVED = (REF, IDEMPOTENCY_KEY)
MEMBERS = ("items", "atomic", "dry_run", "chunk_size", "async")
# Far deeper than any serializer field needs; shallow enough that nothing after
# parsing (fingerprints, DRF, rendering) can recurse into a RecursionError.
MAX_DEPTH = 64
MAX_KEY_LENGTH = 255
MAX_REF_LENGTH = 255
READ_BLOCK = 256 * 1024

# Lone surrogates and NUL characters can only come from \u escapes in the JSON text,
# so the (rare) scan for them runs only when the raw body holds such an escape.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF])")
NULL_MESSAGE = "Null characters are not allowed."
SURROGATE_MESSAGE = "Surrogate characters are not allowed: U+{:X}."


class InvalidEnvelope(BulkOpsError):
    """The body is not a usable bulk envelope: 400."""

    default_code = "invalid_envelope"
    status_code = 400


class BatchTooLarge(BulkOpsError):
    """More items or bytes than the settings allow: 413."""

    default_code = "batch_too_large"
    status_code = 413

    def __init__(self, *, limit: int, received: int, unit: str, message: str | None = None) -> None:
        super().__init__(
            message or f"Maximum {limit} {unit} per batch; received {received}",
            limit=limit,
            received=received,
        )


class LengthRequired(BulkOpsError):
    """A chunked body on a server that cannot tell where it ends: 411."""

    default_code = "length_required"
    status_code = 411


@dataclass(frozen=True, slots=True)
class BulkOptions:
    """How to run a batch: the envelope's options with their defaults applied."""

    atomic: str
    dry_run: bool = False
    chunk_size: int | None = None


@dataclass(slots=True)
class Envelope:
    """A checked bulk request.

    ``rows`` are the items for the engine, reserved members stripped, ``_ref`` as
    ``ref``; an item whose reserved members are unusable carries that as its
    ``errors``. ``item_keys`` maps an item's index to its ``_idempotency_key``.
    ``body`` is the parsed body as sent, for the request fingerprint.
    """

    rows: list[SourceRow]
    options: BulkOptions
    item_keys: dict[int, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    async_requested: bool = False


def json_type(value: Any) -> str:
    """A JSON value's type the way a client would name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def read_body(request: HttpRequest, *, limit: int) -> bytes:
    """The body, unpacked if it is gzip, refused when it is (or turns out to be) over
    ``limit`` bytes, packed or unpacked: 413. 415 for an unknown ``Content-Encoding``,
    400 for a body that ends before its announced end."""
    gzipped = _content_encoding(request) == "gzip"
    body = _read_raw(request, limit=limit)
    if gzipped and body:
        body = gunzip(body, limit=limit)
    return body


def _content_encoding(request: HttpRequest) -> str:
    """``"identity"`` or ``"gzip"``; any other coding is 415, as DRF words it."""
    codings = [
        c.strip().lower()
        for c in request.META.get("HTTP_CONTENT_ENCODING", "").split(",")
        if c.strip().lower() not in ("", "identity")
    ]
    if not codings:
        return "identity"
    if codings in (["gzip"], ["x-gzip"]):
        return "gzip"
    shown = request.META.get("HTTP_CONTENT_ENCODING", "")
    raise UnsupportedMediaType(
        shown,
        detail=f'Unsupported Content-Encoding "{shown}" in request; send the body as it is '
        "or compressed with gzip.",
    )


def _read_raw(request: HttpRequest, *, limit: int) -> bytes:
    try:
        declared: int | None = int(request.META["CONTENT_LENGTH"])
    except (KeyError, ValueError, TypeError):
        declared = None
    if declared is not None and declared > limit:
        raise BatchTooLarge(limit=limit, received=declared, unit="bytes")
    if hasattr(request, "_body"):
        body = request._body  # read already (a CSRF check reading a form, say)
    else:
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not declared and "wsgi.input" in request.META:
            # Django reads a WSGI body only as far as Content-Length, which a chunked
            # request has not: read the server's stream to its end, where the server
            # marks one (wsgi.input_terminated: gunicorn, mod_wsgi, uWSGI).
            if not request.META.get("wsgi.input_terminated"):
                raise LengthRequired(
                    "This server cannot read a chunked request body; send Content-Length."
                )
            stream = request.META["wsgi.input"]
            request._read_started = True  # type: ignore[attr-defined]
        else:
            stream = request
        # Never more than limit + 1 bytes, whatever the client announced.
        body = _read_at_most(stream, limit + 1)
        request._body = body  # so request.body and request.data keep working
        request._stream = io.BytesIO(body)  # type: ignore[attr-defined]
    if len(body) > limit:
        raise BatchTooLarge(limit=limit, received=max(len(body), declared or 0), unit="bytes")
    if declared is not None and len(body) < declared:
        raise InvalidEnvelope(
            f"The request body ended after {len(body)} of the {declared} bytes its "
            "Content-Length announced; send the whole body."
        )
    return body


def _read_at_most(stream: Any, size: int) -> bytes:
    parts = []
    left = size
    try:
        while left > 0:
            part = stream.read(min(left, READ_BLOCK))
            if not part:
                break
            parts.append(part)
            left -= len(part)
    except OSError as exc:  # the connection ended mid-body, a malformed chunk...
        raise InvalidEnvelope(
            f"The request body could not be read to its end ({exc or type(exc).__name__}); "
            "send the whole body."
        ) from None
    return b"".join(parts)


def gunzip(data: bytes, *, limit: int) -> bytes:
    """``data`` unpacked, never more than ``limit`` bytes of it (413 beyond: a gzip
    bomb costs no more memory than an honest body); 400 for data that is not gzip."""
    out: list[bytes] = []
    size = 0
    try:
        while data:  # one gzip member after the other (RFC 1952 allows several)
            unpacker = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            pending = data
            while not unpacker.eof:
                part = unpacker.decompress(pending, limit + 1 - size)
                size += len(part)
                if size > limit:
                    raise BatchTooLarge(
                        limit=limit,
                        received=size,
                        unit="bytes",
                        message=f"Maximum {limit} bytes per batch; the gzip body unpacks "
                        "to more than that.",
                    )
                out.append(part)
                pending = unpacker.unconsumed_tail
                if not part and not pending:
                    raise InvalidEnvelope("The gzip request body ends early; send all of it.")
            data = unpacker.unused_data
    except zlib.error as exc:
        raise InvalidEnvelope(f"The request body is not valid gzip: {exc}.") from None
    return b"".join(out)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON output could not carry it back
        raise ValueError(f"the number {text} is out of range")
    return value


def parse_json(body: bytes) -> Any:
    """The body as JSON, or 400 ``invalid_envelope`` saying why not."""
    if not body.strip():
        raise InvalidEnvelope(
            'The request body is empty; send a JSON object like {"items": [...]}.'
        )
    try:
        data = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidEnvelope(
            f"The request body is nested too deeply; at most {MAX_DEPTH} levels are allowed."
        ) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidEnvelope(f"The request body is not valid JSON: {exc}.") from None
    _check_depth(data)
    return data


def _check_depth(data: Any) -> None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidEnvelope(
                f"The request body is nested too deeply; at most {MAX_DEPTH} levels are allowed."
            )
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))


def parse_envelope(
    body: bytes,
    *,
    mode: str,
    default_atomic: str | None = None,
    max_items: int | None = None,
) -> Envelope:
    """Check a raw bulk request body; raise ``InvalidEnvelope`` or ``BatchTooLarge``."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise InvalidEnvelope(
            f"The request body must be a JSON object with a list 'items'; got {json_type(data)}."
        )
    unknown = [name for name in data if name not in MEMBERS]
    if unknown:
        raise InvalidEnvelope(
            f"Unknown member {unknown[0]!r} in the request body; "
            f"the members are {', '.join(MEMBERS)}."
        )
    if "items" not in data:
        raise InvalidEnvelope("The request body has no 'items'; send {\"items\": [...]}.")
    items = data["items"]
    if not isinstance(items, list):
        raise InvalidEnvelope(f"'items' must be a list; got {json_type(items)}.")
    max_items = bulkops_settings.MAX_ITEMS if max_items is None else max_items
    if len(items) > max_items:
        raise BatchTooLarge(limit=max_items, received=len(items), unit="items")
    options = _options(data, mode=mode, default_atomic=default_atomic)
    async_requested = data.get("async", False)
    if not isinstance(async_requested, bool):
        raise InvalidEnvelope(f"'async' must be true or false; got {json_type(async_requested)}.")
    scan = _SUSPECT_ESCAPE.search(body) is not None
    rows: list[SourceRow] = []
    keys: dict[int, str] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidEnvelope(f"items[{index}] must be an object; got {json_type(item)}.")
        rows.append(_row(index, item, keys, scan))
    return Envelope(
        rows=rows, options=options, item_keys=keys, body=data, async_requested=async_requested
    )


def _options(data: dict[str, Any], *, mode: str, default_atomic: str | None) -> BulkOptions:
    atomic = data.get("atomic")
    if atomic is not None and atomic not in ATOMIC_CHOICES:
        shown = repr(atomic) if isinstance(atomic, str) else json_type(atomic)
        raise InvalidEnvelope(f"Unknown atomic {shown}; use one of {', '.join(ATOMIC_CHOICES)}.")
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidEnvelope(f"'dry_run' must be true or false; got {json_type(dry_run)}.")
    chunk_size = data.get("chunk_size")
    try:
        atomic, checked_size = check_options(
            mode=mode, atomic=atomic or default_atomic, chunk_size=chunk_size
        )
    except InvalidOptions as exc:
        raise InvalidEnvelope(exc.message) from None
    return BulkOptions(
        atomic=atomic, dry_run=dry_run, chunk_size=checked_size if chunk_size is not None else None
    )


def _row(index: int, item: dict[str, Any], keys: dict[int, str], scan: bool) -> SourceRow:
    """One item as an engine row; its reserved members checked, its strings if need be."""
    errors: dict[str, list[str]] = {}
    ref = None
    values = item
    if REF in item or IDEMPOTENCY_KEY in item:
        values = {k: v for k, v in item.items() if k not in RESERVED}
        ref = item.get(REF)
        if ref is not None and (not isinstance(ref, str) or len(ref) > MAX_REF_LENGTH):
            errors[REF] = [f"Must be a string of at most {MAX_REF_LENGTH} characters."]
            ref = None
        key = item.get(IDEMPOTENCY_KEY)
        if key is not None:
            if isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH and key.isprintable():
                keys[index] = key
            else:
                errors[IDEMPOTENCY_KEY] = [
                    f"Must be a string of 1 to {MAX_KEY_LENGTH} printable characters."
                ]
    if scan:
        # PostgreSQL cannot take these in a lookup and JSON output cannot encode a
        # lone surrogate: they are the item's errors, worded as DRF's validators word them.
        for name, value in item.items():
            if name in errors:
                continue
            message = _bad_characters(name) or _bad_characters(value)
            if message is not None:
                # A bad member name cannot be an error key of its own.
                key = name if _bad_characters(name) is None else "non_field_errors"
                errors.setdefault(key, []).append(message)
                if name == REF:
                    ref = None
    return SourceRow(values=values, ref=ref, errors=errors or None)


def _bad_characters(value: Any) -> str | None:
    stack = [value]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return NULL_MESSAGE
            match = SURROGATES.search(value)
            if match is not None:
                return SURROGATE_MESSAGE.format(ord(match.group()))
        elif isinstance(value, Mapping):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


def is_json_media_type(media_type: str) -> bool:
    """``application/json`` and the ``application/<anything>+json`` types, any parameters."""
    parsed = _MediaType(media_type or "")
    return parsed.main_type == "application" and (
        parsed.sub_type == "json" or parsed.sub_type.endswith("+json")
    )


def has_body(request: HttpRequest) -> bool:
    """Whether the request announces a body (a length, or chunks)."""
    if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return True
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) > 0
    except ValueError:
        return True


def check_media_type(request: Request) -> None:
    """415, with DRF's body, unless the body is JSON of a media type one of the view's
    parsers accepts (no ``Content-Type`` is 415 too: DRF would not parse it either).
    A request without a body is left to the envelope check, which says it is empty."""
    if not has_body(request._request):
        return
    media_type = request.content_type
    parser = request.negotiator.select_parser(request, request.parsers)
    if parser is None or not is_json_media_type(media_type):
        raise UnsupportedMediaType(media_type)


def read_envelope(
    request: HttpRequest, *, mode: str, default_atomic: str | None = None
) -> Envelope:
    """Read and check the bulk envelope of ``request`` under the ``BULKOPS`` limits."""
    body = read_body(request, limit=bulkops_settings.MAX_BYTES)
    return parse_envelope(body, mode=mode, default_atomic=default_atomic)
