"""Running a checked batch: in order, side by side, or in one transaction.

- ``atomic: true``: one transaction over every database, requests in order; the
  first status >= 400 stops the batch and rolls every write back.
- otherwise requests that do not depend on each other run side by side, at most
  ``BATCH_CONCURRENCY`` at a time, each thread on its own database connection
  (closed when it is done). On SQLite (one writer at a time, and the shared-cache
  test database fails at once instead of waiting) and inside an open transaction
  (other connections could not see its rows) they run one after another in this
  thread instead, each in a savepoint when a transaction is open.

Each request runs through its view by ``bulkops.batch.calls.Caller``.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import threading
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections, transaction
from django.urls import get_urlconf, set_urlconf
from django.utils import timezone, translation

from .calls import Caller, SubResponse, refusal
from .envelope import BatchEnvelope
from .references import UnresolvedReference, substitute, substitute_url
from .targets import UrlPolicy, UrlRefused

logger = logging.getLogger("django.request")


def batch_concurrency(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(
            f"BULKOPS['BATCH_CONCURRENCY'] must be a whole number of at least 1; got {value!r}."
        )
    return value


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
                    done = self.responses[index] = self.run_one(index)
                    if done.failed:
                        failed = done
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
                response = refusal(
                    self.requests[index],
                    424,
                    "batch_rolled_back",
                    f"Not run: {failed.id!r} failed with status {failed.status}, so the atomic "
                    "batch stopped and rolled every write back.",
                )
                self.responses[index] = response
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
