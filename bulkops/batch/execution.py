"""Running a checked batch: every request through its real view, as a direct call.

``Caller`` turns one request of the batch into a Django request that carries the
caller's credentials (the batch request's headers, cookies and session) and calls the
view the url resolves to, so authentication, permissions, throttles, idempotency and
validation are the view's own, per request. ``BatchRunner`` decides the order:

- ``atomic: true``: one transaction over every database, requests in order; the
  first status >= 400 stops the batch and rolls every write back.
- otherwise requests that do not depend on each other run side by side, at most
  ``BATCH_CONCURRENCY`` at a time, each thread on its own database connection
  (closed when it is done). On SQLite (one writer at a time, and the shared-cache
  test database fails at once instead of waiting) and inside an open transaction
  (other connections could not see its rows) they run one after another in this
  thread instead, each in a savepoint when a transaction is open.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib import auth
from django.core.exceptions import BadRequest, ImproperlyConfigured, SuspiciousOperation
from django.core.handlers.wsgi import WSGIRequest
from django.db import DatabaseError, connections, transaction
from django.urls import get_urlconf, set_urlconf
from django.utils import timezone, translation
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request

from .envelope import BatchEnvelope, SubRequest, Target, UrlPolicy, UrlRefused
from .references import UnresolvedReference, substitute, substitute_url

logger = logging.getLogger("django.request")

#: Response headers a sub-response carries.
SELECTED_HEADERS = ("Location", "Retry-After", "Idempotent-Replayed", "ETag")
#: What a sub-request does not inherit from the batch request's environ: its own
#: method, path, body and the headers a request may set for itself.
NOT_INHERITED = frozenset(
    {
        "REQUEST_METHOD",
        "PATH_INFO",
        "QUERY_STRING",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "HTTP_CONTENT_TYPE",
        "HTTP_CONTENT_LENGTH",
        "HTTP_CONTENT_ENCODING",
        "HTTP_TRANSFER_ENCODING",
        "HTTP_EXPECT",
        "HTTP_IDEMPOTENCY_KEY",
        "HTTP_PREFER",
        "HTTP_IF_MATCH",
        "HTTP_IF_NONE_MATCH",
        "HTTP_IF_MODIFIED_SINCE",
        "HTTP_IF_UNMODIFIED_SINCE",
        "HTTP_IF_RANGE",
        "HTTP_RANGE",
        "HTTP_X_HTTP_METHOD_OVERRIDE",
        "RAW_URI",
        "REQUEST_URI",
        "SCRIPT_URL",  # SCRIPT_NAME, as the batch request resolved it, is kept
        "REDIRECT_URL",
        "wsgi.input",
    }
)
#: Attributes of the batch's Django request that its sub-requests share: the session
#: and, in tests, DRF's forced authentication.
SHARED_ATTRIBUTES = ("session", "_force_auth_user", "_force_auth_token", "urlconf")


@dataclass(slots=True)
class SubResponse:
    """The outcome of one request: ``rolled_back`` is set in atomic batches only."""

    id: str
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    rolled_back: bool | None = None

    @property
    def failed(self) -> bool:
        return self.status >= 400

    def as_dict(self) -> dict[str, Any]:
        data = {"id": self.id, "status": self.status, "body": self.body, "headers": self.headers}
        if self.rolled_back is not None:
            data["rolled_back"] = self.rolled_back
        return data


def refusal(sub: SubRequest, status: int, code: str, message: str) -> SubResponse:
    """A response the batch gives for a request it did not (fully) run."""
    return SubResponse(id=sub.id, status=status, body={"error": code, "message": message})


def batch_concurrency(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(
            f"BULKOPS['BATCH_CONCURRENCY'] must be a whole number of at least 1; got {value!r}."
        )
    return value


# -- one request -----------------------------------------------------------------------


class Caller:
    """Calls views on behalf of the batch request ``request``."""

    def __init__(self, request: Request) -> None:
        original = request._request
        self.environ = {k: v for k, v in original.META.items() if k not in NOT_INHERITED}
        # The batch answers JSON: every view is asked for JSON.
        self.environ["HTTP_ACCEPT"] = "application/json"
        self.attributes = {
            name: getattr(original, name) for name in SHARED_ATTRIBUTES if hasattr(original, name)
        }
        by_session = isinstance(request.successful_authenticator, SessionAuthentication)
        if hasattr(original, "session"):
            # What AuthenticationMiddleware gives a direct call: the session's user (DRF
            # has replaced the batch request's ``user`` with whoever authenticated it).
            self.attributes["user"] = request.user if by_session else auth.get_user(original)
        if by_session or getattr(original, "_dont_enforce_csrf_checks", False):
            # The batch request passed the CSRF check (or is exempt): its requests are
            # part of it and are not checked again.
            self.attributes["_dont_enforce_csrf_checks"] = True

    def call(
        self, sub: SubRequest, target: Target, body: Any, *, savepoints: Sequence[str] = ()
    ) -> SubResponse:
        """Run ``sub`` through its view; an exception the view raises is its 500.

        ``savepoints``: databases whose open transaction the view runs in a savepoint of,
        rolled back if the view raises (its transaction stays usable for the others).
        """
        payload = json.dumps(body, separators=(",", ":")).encode() if sub.has_body else b""
        environ = {
            **self.environ,
            "REQUEST_METHOD": sub.method,
            "PATH_INFO": target.wsgi_path,
            "QUERY_STRING": target.query,
            "CONTENT_LENGTH": str(len(payload)),
            "wsgi.input": io.BytesIO(payload),
        }
        if sub.has_body:
            environ["CONTENT_TYPE"] = "application/json"
        for name, value in sub.headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        request = WSGIRequest(environ)
        for name, value in self.attributes.items():
            setattr(request, name, value)
        match = target.match
        assert match is not None
        request.resolver_match = match
        try:
            with contextlib.ExitStack() as stack:
                for alias in savepoints:
                    stack.enter_context(transaction.atomic(using=alias))
                response = as_direct_call(match.func)(request, *match.args, **match.kwargs)
                if callable(getattr(response, "render", None)):
                    response = response.render()
            return SubResponse(
                id=sub.id,
                status=response.status_code,
                body=_parsed_body(response),
                headers={name: response[name] for name in SELECTED_HEADERS if name in response},
            )
        except (BadRequest, SuspiciousOperation) as exc:
            # Django's handler answers these with 400.
            return refusal(sub, 400, "bad_request", f"Bad request: {exc}")
        except Exception as exc:
            logger.error(
                "Internal Server Error: %s (request %r of a batch)",
                request.path,
                sub.id,
                exc_info=True,
                extra={"status_code": 500, "request": request},
            )
            return refusal(
                sub,
                500,
                "server_error",
                f"The view failed with an unexpected error ({type(exc).__name__}); the server "
                "log has the details. The other requests of the batch were not affected.",
            )


def as_direct_call(view: Any) -> Any:
    """``view`` wrapped in a transaction per ``ATOMIC_REQUESTS``, as Django's handler
    wraps a view it calls (the batch view itself is exempt)."""
    exempt = getattr(view, "_non_atomic_requests", set())
    for alias, settings_dict in connections.settings.items():
        if settings_dict["ATOMIC_REQUESTS"] and alias not in exempt:
            view = transaction.atomic(using=alias)(view)
    return view


def _parsed_body(response: Any) -> Any:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    if not content:
        return None
    media_type = response.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        with contextlib.suppress(ValueError):
            return json.loads(content)
    return content.decode(response.charset or "utf-8", errors="replace")


# -- the batch -------------------------------------------------------------------------


class BatchRunner:
    """Runs every request of ``envelope``; ``run()`` gives the responses in request order."""

    def __init__(
        self, *, envelope: BatchEnvelope, caller: Caller, policy: UrlPolicy, concurrency: int
    ) -> None:
        self.requests = envelope.requests
        self.order = envelope.order
        self.atomic = envelope.atomic
        self.caller = caller
        self.policy = policy
        self.concurrency = concurrency
        self.ids = {sub.id: sub.index for sub in self.requests}
        self.responses: list[SubResponse | None] = [None] * len(self.requests)
        # Open transactions (ATOMIC_REQUESTS around the caller, a test): requests run in
        # this thread, each in a savepoint of them.
        self.savepoints = [
            c.alias for c in connections.all(initialized_only=True) if c.in_atomic_block
        ]

    def run(self) -> list[SubResponse]:
        if self.atomic:
            self._run_atomic()
        else:
            workers = self.workers()
            if workers > 1:
                self._run_concurrently(workers)
            else:
                for index in self.order:
                    self.responses[index] = self.run_one(index)
        return [r for r in self.responses if r is not None]

    def workers(self) -> int:
        """Threads for a non-atomic batch: 1 (this thread, in order) where concurrency is
        unsafe, else at most ``concurrency`` and no more than can ever run together."""
        if self.concurrency < 2 or self.savepoints:
            return 1
        if any(connections[alias].vendor == "sqlite" for alias in connections):
            return 1
        # Requests at the same depth of the dependency graph can run together.
        depth = [0] * len(self.requests)
        for index in self.order:
            deps = self.requests[index].depends_on
            depth[index] = 1 + max((depth[d] for d in deps), default=0)
        widest = max(depth.count(level) for level in set(depth))
        return min(self.concurrency, widest)

    # -- one request

    def _body_of(self, request_id: str) -> Any:
        response = self.responses[self.ids[request_id]]
        assert response is not None  # the envelope check made it a dependency
        return response.body

    def run_one(self, index: int) -> SubResponse:
        sub = self.requests[index]
        for dependency in sub.depends_on:
            done = self.responses[dependency]
            assert done is not None
            if done.failed:
                return refusal(
                    sub,
                    424,
                    "dependency_failed",
                    f"Not run: it depends on {done.id!r}, which failed with status {done.status}.",
                )
        target, body = sub.target, sub.body
        if sub.has_references:
            url = sub.url
            try:
                url = substitute_url(sub.url, self._body_of)
                body = substitute(sub.body, self._body_of)
            except UnresolvedReference as exc:
                return refusal(sub, 424, "unresolved_reference", f"{exc.message} Not run.")
            if target is None:
                try:
                    target = self.policy.check(url)
                except UrlRefused as exc:
                    return refusal(
                        sub,
                        424,
                        "unresolved_reference",
                        f"The url {url!r}, made from its references, {exc.reason}. Not run.",
                    )
        assert target is not None
        return self.caller.call(
            sub, target, body, savepoints=() if self.atomic else self.savepoints
        )

    # -- atomic: one transaction, in order, stop at the first failure

    def _run_atomic(self) -> None:
        failed: SubResponse | None = None
        commit_failed = False
        try:
            with contextlib.ExitStack() as stack:
                for alias in connections:
                    stack.enter_context(transaction.atomic(using=alias))
                for index in self.order:
                    response = self.responses[index] = self.run_one(index)
                    if response.failed:
                        failed = response
                        break
                if failed is not None:
                    for alias in connections:
                        transaction.set_rollback(True, using=alias)
        except DatabaseError:
            # The commit itself failed (a deferred constraint, a lost connection).
            logger.exception("An atomic batch failed to commit; every write is rolled back.")
            commit_failed = True
        for index, response in enumerate(self.responses):
            if response is None:
                assert failed is not None
                response = self.responses[index] = refusal(
                    self.requests[index],
                    424,
                    "batch_rolled_back",
                    f"Not run: {failed.id!r} failed with status {failed.status}, so the atomic "
                    "batch stopped and rolled every write back.",
                )
            response.rolled_back = failed is not None or commit_failed

    # -- side by side

    def _run_concurrently(self, workers: int) -> None:
        waiting = [len(sub.depends_on) for sub in self.requests]
        dependents: list[list[int]] = [[] for _ in self.requests]
        for sub in self.requests:
            for dependency in sub.depends_on:
                dependents[dependency].append(sub.index)
        ready = [sub.index for sub in self.requests if not sub.depends_on]
        heapq.heapify(ready)
        untaken = len(self.requests)
        broken: list[BaseException] = []
        changed = threading.Condition()

        def take() -> int | None:
            nonlocal untaken
            with changed:
                # Nothing ready yet: a running request will release its dependents.
                while not ready and untaken and not broken:
                    changed.wait()
                if not ready or broken:
                    return None
                untaken -= 1
                return heapq.heappop(ready)

        def finish(index: int, response: SubResponse) -> None:
            with changed:
                self.responses[index] = response
                for dependent in dependents[index]:
                    waiting[dependent] -= 1
                    if not waiting[dependent]:
                        heapq.heappush(ready, dependent)
                changed.notify_all()

        def work() -> None:
            try:
                while (index := take()) is not None:
                    finish(index, self.run_one(index))
            except BaseException as exc:
                with changed:
                    broken.append(exc)
                    changed.notify_all()

        context = _thread_context()

        def work_in_thread() -> None:
            try:
                with context():
                    work()
            finally:
                connections.close_all()  # this thread's connections only

        threads = [
            threading.Thread(target=work_in_thread, name=f"bulkops-batch-{n}", daemon=True)
            for n in range(workers - 1)
        ]
        for thread in threads:
            thread.start()
        work()  # this thread is one of the workers, on the request's own connection
        for thread in threads:
            thread.join()
        if broken:
            raise broken[0]


def _thread_context() -> Any:
    """A context manager giving a worker thread what this request's thread has active:
    the language, the time zone and the urlconf."""
    language = translation.get_language()
    zone = timezone.get_current_timezone()
    urlconf = get_urlconf()

    @contextlib.contextmanager
    def context() -> Iterator[None]:
        set_urlconf(urlconf)
        try:
            with translation.override(language), timezone.override(zone):
                yield
        finally:
            set_urlconf(None)

    return context
