"""bulkops.ratelimit.admit: a sliding-window count in Redis, atomic across processes;
Django's cache when Redis is not there, said once."""

import logging
import multiprocessing

import pytest

from bulkops import ratelimit
from bulkops.ratelimit import admit

T0 = 1_700_000_000.0


@pytest.mark.usefixtures("need_redis")
def test_admits_up_to_the_limit_and_refuses_without_counting():
    assert admit("k", 3, limit=5, window=60, now=T0).allowed
    refused = admit("k", 3, limit=5, window=60, now=T0 + 1)
    assert (refused.allowed, refused.used, refused.store) == (False, 3, "redis")
    assert refused.retry_after == 59.0  # when the 3 counted at T0 leave the window
    fits = admit("k", 2, limit=5, window=60, now=T0 + 2)
    assert (fits.allowed, fits.used, fits.retry_after) == (True, 5, None)


@pytest.mark.usefixtures("need_redis")
def test_the_window_slides_and_retry_after_names_the_oldest_to_leave():
    admit("k", 2, limit=5, window=60, now=T0)
    admit("k", 3, limit=5, window=60, now=T0 + 30)
    # 4 more need the 2 of T0 and the 3 of T0+30 gone: at T0+90.
    assert admit("k", 4, limit=5, window=60, now=T0 + 40).retry_after == 50.0
    # 2 more need only the 2 of T0 gone: at T0+60.
    assert admit("k", 2, limit=5, window=60, now=T0 + 40).retry_after == 20.0
    assert not admit("k", 1, limit=5, window=60, now=T0 + 59.9).allowed
    assert admit("k", 2, limit=5, window=60, now=T0 + 60.001).allowed


@pytest.mark.usefixtures("need_redis")
def test_more_than_the_limit_never_fits_and_zero_is_free():
    never = admit("k", 6, limit=5, window=60, now=T0)
    assert (never.allowed, never.retry_after) == (False, None)
    assert admit("k", 5, limit=5, window=60, now=T0).allowed
    assert admit("k", 0, limit=5, window=60, now=T0).allowed
    assert admit("other", 5, limit=5, window=60, now=T0).allowed  # keys count apart


@pytest.mark.usefixtures("need_redis")
def test_redis_keeps_the_clock_by_default():
    assert admit("k", 3, limit=5, window=60).allowed
    refused = admit("k", 3, limit=5, window=60)
    assert not refused.allowed
    assert 58 < refused.retry_after <= 60


def _hammer(barrier, admitted, attempts: int) -> None:
    ratelimit.reset()  # this process's own connection
    barrier.wait(30)
    for _ in range(attempts):
        if admit("shared", 7, limit=200, window=60).allowed:
            with admitted.get_lock():
                admitted.value += 7


@pytest.mark.usefixtures("need_redis")
def test_processes_counting_at_once_never_pass_the_limit():
    context = multiprocessing.get_context("fork")
    processes = 6
    barrier = context.Barrier(processes)
    admitted = context.Value("i", 0)
    workers = [
        context.Process(target=_hammer, args=(barrier, admitted, 20)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0] * processes
    # 120 attempts of 7 against 200: exactly 28 fit (196), whoever got them.
    assert admitted.value == 196
    assert admit("shared", 4, limit=200, window=60).allowed
    assert not admit("shared", 1, limit=200, window=60).allowed


def test_without_redis_it_counts_in_the_cache_and_says_so_once(settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    with caplog.at_level(logging.WARNING, logger="bulkops.ratelimit"):
        first = admit("k", 3, limit=5, window=60, now=T0)
        second = admit("k", 3, limit=5, window=60, now=T0 + 1)
        third = admit("k", 2, limit=5, window=60, now=T0 + 2)

    assert (first.allowed, first.store) == (True, "cache")
    assert (second.allowed, second.retry_after) == (False, 59.0)
    assert third.allowed
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "redis://127.0.0.1:1/0 did not answer" in warnings[0]
    assert "count in Django's 'default' cache" in warnings[0]


def test_without_a_redis_url_it_counts_in_the_cache(settings, caplog):
    del settings.REDIS_URL
    with caplog.at_level(logging.WARNING, logger="bulkops.ratelimit"):
        assert admit("k", 5, limit=5, window=60, now=T0).store == "cache"
        assert not admit("k", 1, limit=5, window=60, now=T0).allowed
    assert ["settings.REDIS_URL is not set" in r.getMessage() for r in caplog.records] == [True]


@pytest.mark.usefixtures("need_redis")
def test_redis_is_used_again_once_it_answers(settings, monkeypatch, caplog):
    clock = [1000.0]
    monkeypatch.setattr(ratelimit, "_monotonic", lambda: clock[0])
    good = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert admit("k", 1, limit=5, window=60).store == "cache"
    settings.REDIS_URL = good
    clock[0] += ratelimit.RETRY_REDIS_AFTER - 1
    assert admit("k", 1, limit=5, window=60).store == "cache"  # not retried yet
    clock[0] += 2
    with caplog.at_level(logging.WARNING, logger="bulkops.ratelimit"):
        assert admit("k", 1, limit=5, window=60).store == "redis"
    assert "answers again" in caplog.records[-1].getMessage()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        admit("k", -1, limit=5, window=60)
    with pytest.raises(ValueError):
        admit("k", 1, limit=5, window=0)
