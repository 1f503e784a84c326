"""A real gunicorn server (several worker processes) on the test database, on an ephemeral
port of the loopback interface, for what only a real server shows: races between
processes, chunked bodies, connections that end early."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def database_url(settings_dict: dict[str, Any]) -> str:
    """The ``DATABASE_URL`` of a PostgreSQL ``settings_dict`` (the test database)."""
    user = quote(settings_dict.get("USER") or "")
    password = settings_dict.get("PASSWORD")
    auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


class LiveServer:
    """gunicorn with ``workers`` sync worker processes, bound to a socket this process
    opened on port 0 (handed over as ``fd://``: no race for a port)."""

    def __init__(self, *, database: str, bulkops: dict, workers: int = 3) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.sock.listen(128)
        self.sock.set_inheritable(True)
        self.port = self.sock.getsockname()[1]
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by stop())
        env = {
            **os.environ,
            "DATABASE_URL": database,
            "DJANGO_SETTINGS_MODULE": "tests.api.live_settings",
            "BULKOPS_LIVE_SETTINGS": json.dumps(bulkops),
            "DJANGO_ALLOWED_HOSTS": f"{HOST},localhost",
            "DATABASE_CONN_MAX_AGE": "0",
        }
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "project.wsgi:application",
            "--bind",
            f"fd://{self.sock.fileno()}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--timeout",
            "60",
            "--log-level",
            "warning",
        ]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            pass_fds=(self.sock.fileno(),),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_until_ready()

    def wait_until_ready(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited while starting:\n{self.log_tail()}")
            try:
                status, _, _ = self.request("GET", "/api/")
            except OSError:
                status = 0
            if status in (200, 401, 403):
                return
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {seconds:.0f} s:\n{self.log_tail()}")

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def raw(self, data: bytes) -> bytes:
        """Send ``data`` as it is on a new connection, end our side, return the answer.

        The answer is read while ``data`` is still being sent: a server that answers
        before it has read the whole body (413) closes the connection under the rest.
        """
        answer: list[bytes] = []
        with socket.create_connection((HOST, self.port), timeout=30) as conn:

            def read() -> None:
                with contextlib.suppress(OSError):
                    while chunk := conn.recv(65536):
                        answer.append(chunk)

            reader = threading.Thread(target=read)
            reader.start()
            with contextlib.suppress(OSError):  # the server stopped reading: fine
                conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            reader.join(30)
        return b"".join(answer)

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.sock.close()
        self.log.close()


def status_and_json(raw: bytes) -> tuple[int, Any]:
    """The status code and JSON body of a raw HTTP/1.x response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        decoded, rest = [], body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            decoded.append(rest[:size])
            rest = rest[size + 2 :]
        body = b"".join(decoded)
    return status, json.loads(body) if body else None
