"""One request of a batch, run through its real view as a direct call.

``Caller`` turns a request of the batch into a Django request that carries the
caller's credentials (the batch request's headers, cookies and session) and calls the
view its url resolves to, so authentication, permissions, throttles, idempotency and
validation are the view's own. The view is asked for JSON; its response becomes a
``SubResponse``: status, parsed body and the selected headers.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib import auth
from django.core.exceptions import BadRequest, SuspiciousOperation
from django.core.handlers.wsgi import WSGIRequest
from django.db import connections, transaction
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request

from ..compat import django_request
from .envelope import SubRequest
from .targets import Target

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


class Caller:
    """Calls views on behalf of the batch request ``request``."""

    def __init__(self, request: Request) -> None:
        original = django_request(request)
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
            # Django's handler answers these with 400 (and logs a suspicious one).
            if isinstance(exc, SuspiciousOperation):
                logging.getLogger(f"django.security.{type(exc).__name__}").error(
                    str(exc), extra={"status_code": 400, "request": request}
                )
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
    exempt: set[str] = getattr(view, "_non_atomic_requests", set())
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
