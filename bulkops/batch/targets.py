"""Which urls a batch may call, and what calling one needs.

A url is a path under the API prefix (``/api/``) with an optional query: no scheme or
host, printable ASCII (other characters percent-encoded), no ``.``/``..`` segments
(decoded ones included), no fragment, and never the batch endpoint itself, however
it is spelled, in the path or smuggled into the query. It must resolve to a REST
framework view.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from django.urls import Resolver404, ResolverMatch, resolve
from django.utils.encoding import repercent_broken_unicode
from rest_framework.views import APIView

MAX_URL_LENGTH = 2000


class UrlRefused(Exception):
    """A url a batch may not call; ``reason`` completes "the url '...' <reason>"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Target:
    """A checked url: what the sub-request's WSGI environ and the resolver need."""

    path_info: str  # decoded, as Django resolves it
    wsgi_path: str  # PATH_INFO as a WSGI server sets it (bytes as latin-1)
    query: str
    match: ResolverMatch | None  # None: not resolved (a url with references, checked early)


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """Which urls a batch may call: paths under ``api_prefix`` that resolve to a REST
    framework view, never the batch view itself (``batch_class``, at ``batch_path``)."""

    api_prefix: str
    batch_path: str
    batch_class: type
    urlconf: Any = None

    def check(self, url: str, *, resolve_view: bool = True) -> Target:
        """The url's target, or ``UrlRefused`` saying why the batch may not call it."""
        if len(url) > MAX_URL_LENGTH:
            raise UrlRefused(f"is longer than {MAX_URL_LENGTH} characters")
        if not (url.isascii() and url.isprintable()) or " " in url:
            raise UrlRefused(
                "must be printable ASCII without spaces; percent-encode other characters"
            )
        if "\\" in url or "#" in url:
            raise UrlRefused("must not contain a backslash or a fragment ('#')")
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith("//"):
            raise UrlRefused(
                f"must be a path such as {self.api_prefix}products/, without scheme or host"
            )
        raw = unquote_to_bytes(parts.path)
        path_info = repercent_broken_unicode(raw).decode()
        if {".", ".."} & set(path_info.split("/")) or "\\" in path_info:
            raise UrlRefused("must not have '.' or '..' segments")
        if not path_info.startswith(self.api_prefix):
            raise UrlRefused(f"is outside {self.api_prefix}; a batch calls only the API")
        if self._names_batch(path_info) or self._names_batch(parts.query):
            raise UrlRefused("names the batch endpoint itself; batches cannot be nested")
        match = None
        if resolve_view:
            try:
                match = resolve(path_info, self.urlconf)
            except Resolver404:
                raise UrlRefused("does not match any API view") from None
            view_class = getattr(match.func, "cls", None) or getattr(match.func, "view_class", None)
            if not (isinstance(view_class, type) and issubclass(view_class, APIView)):
                raise UrlRefused("is not a REST framework API view") from None
            if issubclass(view_class, self.batch_class):
                raise UrlRefused("names the batch endpoint itself; batches cannot be nested")
        return Target(
            path_info=path_info, wsgi_path=raw.decode("iso-8859-1"), query=parts.query, match=match
        )

    def _names_batch(self, text: str) -> bool:
        # Every spelling: percent-encoded (even twice), any case, doubled slashes, "./".
        for _ in range(3):
            decoded = unquote(text)
            if decoded == text:
                break
            text = decoded
        text = re.sub(r"/(?:\./)+", "/", re.sub(r"/{2,}", "/", text.lower()))
        batch = re.escape(self.batch_path.lower().rstrip("/"))
        return re.search(batch + r"(?![a-z0-9_.~-])", text) is not None
