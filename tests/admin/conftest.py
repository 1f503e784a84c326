"""Fixtures of the admin tests: users with chosen permissions, files, and a real browser.

Browser tests (marked ``browser``) drive Debian's Chromium (``/usr/bin/chromium``,
or ``BULKOPS_CHROMIUM``) through Playwright for Python — never a browser download —
against pytest-django's live server (loopback, an ephemeral port, a transactional
database). Without Chromium they are skipped, except under CI, where they fail.
Screenshots go to ``BULKOPS_SCREENSHOTS`` when set, else to a temporary directory
printed at the end of the run.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection

# The jobs' own harness: a queue of the test's own, real `rqworker` processes
# (PostgreSQL), or jobs run in-process (SQLite).
from tests.jobs.conftest import (  # noqa: F401
    in_process,
    media_root,
    rq_queue,
    start_worker,
    wait_job,
)

CHROMIUM = os.environ.get("BULKOPS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Uploads land in a directory of the test's own, never in the project's media/."""
    settings.MEDIA_ROOT = str(tmp_path / "media")


def make_staff(username: str, *perms: str, superuser: bool = False) -> User:
    """A staff user holding ``perms`` ("catalog.add_product", ...)."""
    user = User.objects.create_user(
        username, f"{username}@example.com", PASSWORD, is_staff=True, is_superuser=superuser
    )
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return User.objects.get(pk=user.pk)  # fresh: no stale permission cache


@pytest.fixture
def superuser(db) -> User:
    return make_staff("boss", superuser=True)


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def job_runner(request):
    """Jobs run as they do in production: one real RQ worker process on PostgreSQL; on
    SQLite, whose test database no other process can reach, in the web process."""
    if connection.vendor == "postgresql":
        request.getfixturevalue("start_worker")()
        return "worker"
    request.getfixturevalue("in_process")
    return "in-process"


def xlsx_bytes(rows: list[list[Any]], *, sheet: str = "Sheet1") -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    worksheet = book.active
    worksheet.title = sheet
    for row in rows:
        worksheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv_bytes(rows: list[list[Any]]) -> bytes:
    import csv

    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8")


# -- the browser ---------------------------------------------------------------------


def _chromium_or_skip() -> None:
    if os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return
    message = (
        f"Chromium not found at {CHROMIUM}; apt-get install chromium (or set BULKOPS_CHROMIUM)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Iterator[Path]:
    chosen = os.environ.get("BULKOPS_SCREENSHOTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    yield path


@pytest.fixture(scope="session")
def browser_context(django_db_setup, tmp_path_factory) -> Iterator[Any]:
    """One headless Chromium for the session, with a new, empty profile directory.

    Playwright's sync API keeps an event loop in this thread; Django's ORM refuses
    to run beside one unless told it is safe, which it is here (the loop only waits
    for the browser), so DJANGO_ALLOW_ASYNC_UNSAFE is set while the browser lives.
    The test database is set up before and torn down after it.
    """
    _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=DESKTOP,
            accept_downloads=True,
        )
        context.set_default_timeout(10_000)
        try:
            yield context
        finally:
            context.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context, live_server) -> Iterator[Any]:
    """A fresh tab, logged out, at desktop size."""
    browser_context.clear_cookies()
    tab = browser_context.new_page()
    tab.set_viewport_size(DESKTOP)
    try:
        yield tab
    finally:
        tab.close()


class Shots:
    """``shots(page, "upload")`` saves upload-desktop.png and upload-phone.png (and, with
    ``dark=True``, upload-dark.png: the admin's dark theme at desktop size)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.taken: list[Path] = []

    def __call__(self, page: Any, name: str, *, phone: bool = True, dark: bool = False) -> None:
        sizes = [("desktop", DESKTOP, "light")]
        if phone:
            sizes.append(("phone", PHONE, "light"))
        if dark:
            sizes.append(("dark", DESKTOP, "dark"))
        for label, size, scheme in sizes:
            page.set_viewport_size(size)
            page.emulate_media(color_scheme=scheme)
            path = self.directory / f"{name}-{label}.png"
            page.screenshot(path=str(path), full_page=True)
            self.taken.append(path)
        page.set_viewport_size(DESKTOP)
        page.emulate_media(color_scheme="light")


@pytest.fixture
def shots(screenshot_dir) -> Shots:
    return Shots(screenshot_dir)


def log_in(page: Any, live_server: Any, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/admin/")
