"""The body of ``POST /api/batch/``, checked in full before any request runs.

    {"atomic": false,
     "requests": [{"id": "c", "method": "POST", "url": "/api/customers/", "body": {...}},
                  {"id": "o", "method": "POST", "url": "/api/orders/", "depends_on": ["c"],
                   "body": {"customer": "{c.body.email}", ...}}]}

Any problem is a 400 ``invalid_envelope`` naming the request (``requests[1] ('o')``,
and ``request: {"index", "id"}`` in the body) and the reason; more requests than
``MAX_BATCH_REQUESTS`` is a 413 ``batch_too_large``. The body itself is read and
parsed by the bulk envelope's ``read_body``/``parse_json``: the same byte limit
(``MAX_BYTES``), depth limit and JSON rules as a bulk request.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from typing import Any

from ..envelope import BatchTooLarge, InvalidEnvelope, json_type, parse_json
from .references import ID_CHARACTERS, REFERENCE, has_references, references_in
from .targets import Target, UrlPolicy, UrlRefused

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: The headers a request may set (matched case-insensitively); authentication,
#: cookies and the rest come from the batch request itself.
HEADERS = {"prefer": "Prefer", "idempotency-key": "Idempotency-Key", "if-match": "If-Match"}
MEMBERS = ("requests", "atomic")
REQUEST_MEMBERS = ("id", "method", "url", "body", "headers", "depends_on")
ID_PATTERN = re.compile(ID_CHARACTERS)
MAX_HEADER_LENGTH = 1000


@dataclass(slots=True)
class SubRequest:
    """One checked request of the batch."""

    index: int
    id: str
    method: str
    url: str
    target: Target | None  # None: the url has references; checked again once replaced
    body: Any = None
    has_body: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    depends_on: tuple[int, ...] = ()
    has_references: bool = False


@dataclass(slots=True)
class BatchEnvelope:
    """A checked batch: its requests, ``atomic``, and ``order`` (every request after
    its dependencies, otherwise in request order). ``body`` is the body as sent."""

    requests: list[SubRequest]
    atomic: bool
    order: list[int]
    body: dict[str, Any]


def _refused(index: int, request_id: str | None, problem: str) -> InvalidEnvelope:
    who = f"requests[{index}]" if request_id is None else f"requests[{index}] ({request_id!r})"
    named: dict[str, Any] = {"index": index}
    if request_id is not None:
        named["id"] = request_id
    return InvalidEnvelope(f"{who}: {problem}", request=named)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return json_type(value)


def parse_batch_envelope(body: bytes, *, policy: UrlPolicy, max_requests: int) -> BatchEnvelope:
    """Check a raw batch body; raise ``InvalidEnvelope`` or ``BatchTooLarge``."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise InvalidEnvelope(
            f"The request body must be a JSON object with a list 'requests'; got {json_type(data)}."
        )
    unknown = [name for name in data if name not in MEMBERS]
    if unknown:
        raise InvalidEnvelope(
            f"Unknown member {_shown(unknown[0])} in the request body; "
            f"the members are {', '.join(MEMBERS)}."
        )
    if "requests" not in data:
        raise InvalidEnvelope(
            'The request body has no \'requests\'; send {"requests": [{"id": ..., '
            '"method": ..., "url": ...}, ...]}.'
        )
    items = data["requests"]
    if not isinstance(items, list):
        raise InvalidEnvelope(f"'requests' must be a list; got {json_type(items)}.")
    if not items:
        raise InvalidEnvelope("'requests' is empty; send at least one request.")
    if len(items) > max_requests:
        raise BatchTooLarge(limit=max_requests, received=len(items), unit="requests")
    atomic = data.get("atomic", False)
    if not isinstance(atomic, bool):
        raise InvalidEnvelope(f"'atomic' must be true or false; got {json_type(atomic)}.")

    requests: list[SubRequest] = []
    ids: dict[str, int] = {}
    for index, item in enumerate(items):
        sub = _sub_request(index, item, policy)
        if sub.id in ids:
            raise _refused(
                index,
                sub.id,
                f"the id {sub.id!r} is used twice (requests[{ids[sub.id]}] has it too); "
                "ids must be unique.",
            )
        ids[sub.id] = index
        requests.append(sub)
    for sub, item in zip(requests, items, strict=True):
        sub.depends_on = _dependencies(sub, item.get("depends_on"), ids)
    order = _order(requests)
    _check_references(requests, order, ids)
    return BatchEnvelope(requests=requests, atomic=atomic, order=order, body=data)


def _sub_request(index: int, item: Any, policy: UrlPolicy) -> SubRequest:
    if not isinstance(item, dict):
        raise _refused(index, None, f"must be an object; got {json_type(item)}.")
    if "id" not in item:
        raise _refused(index, None, "has no 'id'; give every request a unique id.")
    request_id = item["id"]
    if not isinstance(request_id, str) or not ID_PATTERN.fullmatch(request_id):
        raise _refused(
            index,
            None,
            "'id' must be a string of 1 to 64 letters, digits, '_' or '-'; "
            f"got {_shown(request_id)}.",
        )
    unknown = [name for name in item if name not in REQUEST_MEMBERS]
    if unknown:
        raise _refused(
            index,
            request_id,
            f"unknown member {_shown(unknown[0])}; the members are {', '.join(REQUEST_MEMBERS)}.",
        )

    method = item.get("method")
    if not isinstance(method, str):
        raise _refused(
            index,
            request_id,
            f"'method' must be one of {', '.join(METHODS)}; got {_shown(method)}.",
        )
    if method not in METHODS:
        if method.upper() in METHODS:
            problem = f"the method {_shown(method)} must be upper case: {method.upper()!r}."
        else:
            problem = f"unknown method {_shown(method)}; use one of {', '.join(METHODS)}."
        raise _refused(index, request_id, problem)

    url = item.get("url")
    if not isinstance(url, str):
        raise _refused(
            index, request_id, f"'url' must be a path such as /api/products/; got {_shown(url)}."
        )
    url_has_references = has_references(url)
    try:
        if url_has_references:
            # Checked as far as it can be now (a reference stands for one path segment or
            # one query value), and in full once the references are replaced.
            policy.check(REFERENCE.sub("0", url), resolve_view=False)
            target = None
        else:
            target = policy.check(url)
    except UrlRefused as exc:
        raise _refused(index, request_id, f"the url {_shown(url)} {exc.reason}.") from None

    body = item.get("body")
    if body is not None:
        if method == "GET":
            raise _refused(index, request_id, "a GET request has no body; leave 'body' out.")
        if not isinstance(body, dict):
            raise _refused(index, request_id, f"'body' must be an object; got {json_type(body)}.")
    return SubRequest(
        index=index,
        id=request_id,
        method=method,
        url=url,
        target=target,
        body=body,
        has_body=body is not None,
        headers=_headers(index, request_id, item.get("headers")),
        has_references=url_has_references or has_references(body),
    )


def _headers(index: int, request_id: str, headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, dict):
        raise _refused(
            index,
            request_id,
            '\'headers\' must be an object such as {"Prefer": "respond-async"}; '
            f"got {json_type(headers)}.",
        )
    checked: dict[str, str] = {}
    for name, value in headers.items():
        canonical = HEADERS.get(name.lower())
        if canonical is None:
            raise _refused(
                index,
                request_id,
                f"the header {_shown(name)} is not allowed; a request may set only "
                f"{', '.join(HEADERS.values())} (authentication comes from the batch request).",
            )
        if canonical in checked:
            raise _refused(index, request_id, f"the header {canonical} is given twice.")
        if (
            not isinstance(value, str)
            or not value
            or len(value) > MAX_HEADER_LENGTH
            or not (value.isascii() and value.isprintable())
        ):
            raise _refused(
                index,
                request_id,
                f"the header {canonical} must be printable ASCII text of 1 to "
                f"{MAX_HEADER_LENGTH} characters; got {_shown(value)}.",
            )
        checked[canonical] = value
    return checked


def _dependencies(sub: SubRequest, depends_on: Any, ids: dict[str, int]) -> tuple[int, ...]:
    if depends_on is None:
        return ()
    if not isinstance(depends_on, list):
        raise _refused(
            sub.index,
            sub.id,
            f"'depends_on' must be a list of ids; got {json_type(depends_on)}.",
        )
    found: dict[int, None] = {}
    for name in depends_on:
        if not isinstance(name, str):
            raise _refused(
                sub.index, sub.id, f"'depends_on' must list ids (strings); got {json_type(name)}."
            )
        if name == sub.id:
            raise _refused(sub.index, sub.id, "it depends on itself.")
        if name not in ids:
            raise _refused(
                sub.index,
                sub.id,
                f"it depends on {_shown(name)}, which no request of the batch has.",
            )
        found[ids[name]] = None
    return tuple(found)


def _order(requests: list[SubRequest]) -> list[int]:
    """Every request after its dependencies, otherwise in request order (Kahn's
    algorithm, lowest index first: no recursion, whatever the chain length)."""
    waiting = [len(sub.depends_on) for sub in requests]
    dependents: list[list[int]] = [[] for _ in requests]
    for sub in requests:
        for dependency in sub.depends_on:
            dependents[dependency].append(sub.index)
    ready = [sub.index for sub in requests if not sub.depends_on]
    heapq.heapify(ready)
    order = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for dependent in dependents[index]:
            waiting[dependent] -= 1
            if not waiting[dependent]:
                heapq.heappush(ready, dependent)
    if len(order) < len(requests):
        cycle = _a_cycle(requests, ordered=set(order))
        first = min(cycle)
        start = cycle.index(first)
        path = [*cycle[start:], *cycle[:start], first]
        raise _refused(
            first,
            requests[first].id,
            "its depends_on make a cycle: "
            + " -> ".join(repr(requests[i].id) for i in path)
            + " (each depends on the next).",
        )
    return order


def _a_cycle(requests: list[SubRequest], ordered: set[int]) -> list[int]:
    # A request left out of the order waits for another left out: following those
    # dependencies from any of them must come back to a request already seen.
    index = next(sub.index for sub in requests if sub.index not in ordered)
    seen: dict[int, int] = {}
    path: list[int] = []
    while index not in seen:
        seen[index] = len(path)
        path.append(index)
        index = next(d for d in requests[index].depends_on if d not in ordered)
    return path[seen[index] :]


def _check_references(requests: list[SubRequest], order: list[int], ids: dict[str, int]) -> None:
    """A reference must name a request this one depends on, directly or through others:
    it needs that response before it runs."""
    ancestors = [0] * len(requests)  # a bit per request
    for index in order:
        for dependency in requests[index].depends_on:
            ancestors[index] |= ancestors[dependency] | (1 << dependency)
    for sub in requests:
        if not sub.has_references:
            continue
        for reference in (*references_in(sub.url), *references_in(sub.body)):
            target = ids.get(reference.request_id)
            if target is None:
                problem = (
                    f"the reference {reference.text} names {reference.request_id!r}, "
                    "which no request of the batch has."
                )
            elif target == sub.index:
                problem = f"the reference {reference.text} refers to the request itself."
            elif not ancestors[sub.index] >> target & 1:
                problem = (
                    f"the reference {reference.text} needs the response of "
                    f"{reference.request_id!r}, which this request does not depend on; add "
                    f"{reference.request_id!r} to its depends_on."
                )
            else:
                continue
            raise _refused(sub.index, sub.id, problem)
