"""What counts as a lost race worth running again (``bulkops.engine.retry``)."""

import sqlite3

import pytest
from django.db import utils

from bulkops.engine import retry


@pytest.fixture
def locked_error(tmp_path):
    """SQLite's own "database is locked": another connection holds the write lock."""
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("INSERT INTO t VALUES (1)")
    except sqlite3.OperationalError as exc:
        yield exc
    else:  # pragma: no cover
        pytest.fail("the second writer was let in")
    finally:
        holder.close()
        other.close()


def test_sqlite_busy_is_transient_raw_and_as_django_raises_it(locked_error):
    assert "locked" in str(locked_error)
    assert retry.is_transient(locked_error)
    wrapped = utils.OperationalError(*locked_error.args)
    wrapped.__cause__ = locked_error
    assert retry.is_transient(wrapped)


def test_other_operational_errors_are_not(tmp_path):
    connection = sqlite3.connect(tmp_path / "x.sqlite3")
    with pytest.raises(sqlite3.OperationalError) as caught:
        connection.execute("SELECT * FROM missing")
    assert not retry.is_transient(caught.value)


def test_a_locked_database_is_tried_again(locked_error, monkeypatch):
    monkeypatch.setattr(retry, "BACKOFF_SECONDS", 0)
    attempts = []

    def work():
        attempts.append(1)
        if len(attempts) < 3:
            raise locked_error
        return "written"

    assert retry.retrying(work, give_up=lambda exc: "given up") == "written"
    assert len(attempts) == 3
