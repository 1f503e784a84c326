"""``make run`` (scripts/run.py) starts the workers beside the web server."""

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("run_script", ROOT / "scripts" / "run.py")
run_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_script)


@pytest.mark.parametrize(
    ("value", "expected"), [("3", 3), ("0", 1), ("many", 1), ("", min(os.cpu_count() or 1, 2))]
)
def test_run_starts_one_worker_per_core_or_as_many_as_asked(monkeypatch, value, expected):
    monkeypatch.setenv("BULKOPS_WORKERS", value)
    assert run_script.worker_count() == expected
