"""Run the bulkops demo; ``make run`` calls this with the project's virtualenv Python.

1. ``manage.py migrate``, then ``manage.py load_demo_data`` (demo rows, and the superuser
   admin/admin when the database has no user yet).
2. Redis at ``REDIS_URL``: used when it answers. Otherwise, when the URL names this machine
   and ``redis-server`` is installed, one is started on the URL's port (keeping nothing on
   disk) and stopped again on exit. Otherwise jobs run in-process (``BULKOPS_RQ_SYNC=1``)
   and no worker is started.
3. The RQ workers (``manage.py rqworker bulkops default``, one per core and at most two;
   ``BULKOPS_WORKERS=N`` picks the number) and the web server on 127.0.0.1:8000, without
   the autoreloader: the workers do not reload either, so all run the same code. Restart
   after changing it. The workers are bulkops' ``BulkWorker`` (settings ``RQ``), which
   also heal jobs whose worker died.

Ctrl-C (SIGINT), SIGTERM or SIGHUP stops every process started here and waits for them to
end. If one of them ends on its own, the others are stopped too and the exit status is 1.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
ADDRESS = "127.0.0.1:8000"
ADMIN_URL = f"http://{ADDRESS}/admin/"
DEMO_CREDENTIALS = "admin / admin"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"  # the default of project/settings.py
QUEUES = ("bulkops", "default")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
STOP_TIMEOUT = 10.0  # seconds a worker may take to finish the task in hand


class StopRequested(Exception):
    """Raised by the signal handler while the demo starts or runs."""


class Processes:
    """The processes started here, by name, in start order; stopped in reverse order."""

    def __init__(self) -> None:
        self.running: dict[str, subprocess.Popen] = {}
        self.signals = 0  # how many stop signals arrived; one more while stopping hurries
        self.stopping = False

    def on_signal(self, signum: int, frame: object) -> None:
        self.signals += 1
        if not self.stopping:
            raise StopRequested(signal.Signals(signum).name)

    def start(self, name: str, args: list[str], **kwargs) -> subprocess.Popen:
        # A process group of its own: the terminal's Ctrl-C reaches only this script, which
        # then stops each group as a whole (the web server, the worker and their children).
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, process_group=0, **kwargs)
        self.running[name] = proc
        return proc

    def exited(self) -> tuple[str, int] | None:
        for name, proc in self.running.items():
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop_all(self) -> None:
        self.stopping = True
        for name in reversed(list(self.running)):
            self.stop(self.running.pop(name))

    def stop(self, proc: subprocess.Popen) -> None:
        """SIGTERM, a second SIGTERM, then SIGKILL, each after a grace period.

        The first SIGTERM lets the RQ worker finish the job in hand (warm shutdown); the
        second makes it abandon the job (``bulk_jobs resume`` picks it up again). Another
        Ctrl-C while waiting moves on to the next step at once.
        """
        for sig, grace in (
            (signal.SIGTERM, STOP_TIMEOUT),
            (signal.SIGTERM, 3.0),
            (signal.SIGKILL, 3.0),
        ):
            if proc.poll() is not None:
                return
            signal_group(proc, sig)
            signals_before, deadline = self.signals, time.monotonic() + grace
            while proc.poll() is None and time.monotonic() < deadline:
                if self.signals > signals_before:
                    break
                time.sleep(0.05)


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group has ended
        os.killpg(proc.pid, sig)


def worker_count() -> int:
    """``BULKOPS_WORKERS``, else one worker per core, at most two."""
    value = os.environ.get("BULKOPS_WORKERS", "").strip()
    if value:
        try:
            return max(int(value), 1)
        except ValueError:
            print(f"BULKOPS_WORKERS={value!r} is not a number; starting one.", file=sys.stderr)
            return 1
    return max(min(os.cpu_count() or 1, 2), 1)


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        with client:
            return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def start_redis_server(url: str, processes: Processes) -> subprocess.Popen | None:
    """Start ``redis-server`` on the URL's port if the URL names this machine and it is installed.

    It keeps nothing on disk and runs as a child of this script, so it stops with the rest.
    Returns None when no server could be started or it does not answer within 5 seconds.
    """
    parts = urlsplit(url)
    executable = shutil.which("redis-server")
    if executable is None or parts.hostname not in LOCAL_HOSTS:
        return None
    rundir = ROOT / ".run"
    rundir.mkdir(exist_ok=True)
    with open(rundir / "redis.log", "ab") as log:
        proc = processes.start(
            "redis-server",
            [
                executable,
                *("--bind", "::1" if parts.hostname == "::1" else "127.0.0.1"),
                *("--port", str(parts.port or 6379)),
                *("--save", "", "--appendonly", "no", "--dir", str(rundir)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 5
    while proc.poll() is None and time.monotonic() < deadline:
        if redis_answers(url, timeout=0.5):
            return proc
        time.sleep(0.1)
    processes.stop(processes.running.pop("redis-server"))
    return None


def ensure_redis(url: str, processes: Processes) -> bool:
    """True when Redis answers at url, after starting a local redis-server if need be."""
    if redis_answers(url):
        return True
    if start_redis_server(url, processes) is not None:
        print(f"Started redis-server for {redacted(url)}; it is stopped again on exit.")
        return True
    return False


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def wait_until_serving(server: subprocess.Popen, timeout: float = 60.0) -> bool:
    """True once the web server accepts connections (runserver listens after its checks)."""
    deadline = time.monotonic() + timeout
    while server.poll() is None and time.monotonic() < deadline:
        if listening(ADDRESS):
            return True
        time.sleep(0.2)
    return False


def run(processes: Processes) -> int:
    if listening(ADDRESS):
        print(
            f"Something already listens on {ADDRESS}; stop it first (another `make run`, perhaps).",
            file=sys.stderr,
        )
        return 1
    for step in (("migrate", "--no-input"), ("load_demo_data",)):
        result = subprocess.run(manage(*step))
        if result.returncode != 0:
            print(f"manage.py {step[0]} failed; see the output above.", file=sys.stderr)
            return 1

    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    in_process = os.environ.get("BULKOPS_RQ_SYNC") == "1"
    if not in_process and not ensure_redis(redis_url, processes):
        in_process = True
        os.environ["BULKOPS_RQ_SYNC"] = "1"
        print(
            f"Redis is not reachable at {redacted(redis_url)}; "
            "jobs will run in-process (no worker)."
        )
    workers = 0 if in_process else worker_count()
    for number in range(1, workers + 1):
        processes.start(f"RQ worker {number}", manage("rqworker", *QUEUES))
    server = processes.start("web server", manage("runserver", ADDRESS, "--noreload"))

    if not wait_until_serving(server):
        print(f"The web server did not start on {ADDRESS}; see the output above.", file=sys.stderr)
        return 1
    jobs = (
        "in-process (no worker)"
        if in_process
        else f"{workers} RQ worker{'s' if workers > 1 else ''} on queues {', '.join(QUEUES)} "
        f"at {redacted(redis_url)}"
    )
    print(
        "\nbulkops is running.\n"
        f"  Admin:  {ADMIN_URL}\n"
        f"  Login:  {DEMO_CREDENTIALS}  (demo superuser, created when the database had no user)\n"
        f"  Jobs:   {jobs}\n"
        "Press Ctrl-C to stop.\n"
    )

    while (exited := processes.exited()) is None:
        time.sleep(0.5)
    name, status = exited
    print(f"The {name} exited (status {status}); stopping the rest.", file=sys.stderr)
    return 1


def main() -> int:
    os.chdir(ROOT)
    if isinstance(sys.stdout, io.TextIOWrapper):  # lines in order with the children's
        sys.stdout.reconfigure(line_buffering=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")  # children's output in order, even in a log
    processes = Processes()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, processes.on_signal)
    status = 0
    try:
        status = run(processes)
    except StopRequested:
        print("\nStopping ...")
        if any(name.startswith("RQ worker") for name in processes.running):
            print(
                f"A worker may take {STOP_TIMEOUT:.0f} s to end its task; Ctrl-C abandons it "
                "(another worker, or `manage.py bulk_jobs resume`, takes it up again)."
            )
    finally:
        processes.stop_all()
    if status == 0:
        print("Stopped.")
    return status


if __name__ == "__main__":
    sys.exit(main())
