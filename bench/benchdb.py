"""What the benchmark scripts share: their database, and Django set up against it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database ``url`` names if it is missing, then migrate it."""
    if url.startswith("postgres"):
        import psycopg

        parts = urlsplit(url)
        name = parts.path.lstrip("/")
        admin = urlunsplit(parts._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [name]
            ).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "0"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True
    )


def setup_django(url: str, root: Path = ROOT) -> None:
    """Django in this process, on ``url``, with DEBUG off (DEBUG keeps every query);
    the project of the tree ``root`` (default: this one)."""
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    sys.path.insert(0, str(root))
    import django

    django.setup()
