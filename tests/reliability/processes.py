"""Processes the reliability tests stop and start: a database server that can be stopped and brought
back on the same address, and ``pycemaker serve`` (gunicorn) in a subprocess whose workers can be counted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests

from tests.conftest import REPO
from tests.ports import free_port


class RestartableServer:
    """A SecantusDB server on a fixed port and data directory: ``stop()`` it, ``start()`` it again."""

    def __init__(self, data_dir: Path, port: int | None = None):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.server = None
        self.start()

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        from telemetry.embedded import open_server

        deadline = time.monotonic() + 30
        while True:
            try:
                self.server = open_server(self.data_dir, port=self.port)
                return
            except OSError:  # the old socket is still closing
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def workers_of(pid: int) -> list[int]:
    """gunicorn's workers: the direct children of its master."""
    out: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out.update(int(p) for p in f.read().split())
    return sorted(out)


def start_serve(env: dict[str, str], cwd: Path, *, workers: int, threads: int, log_path: Path | None = None,
                new_session: bool = False) -> tuple[subprocess.Popen, str]:
    """``pycemaker serve`` with exactly ``env`` on a free port, output to ``log_path`` (None: discarded), not waited
    for; returns (process, base URL). ``new_session``: its own process group (``os.killpg`` ends it and its workers)."""
    port = free_port()
    command = [sys.executable, "-m", "pycemaker", "serve", "--port", str(port), "--workers", str(workers), "--threads", str(threads)]
    if log_path is None:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=new_session)
    else:
        with log_path.open("w") as log_file:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                       start_new_session=new_session)
    return process, f"http://127.0.0.1:{port}"


@contextmanager
def gunicorn(env: dict[str, str], cwd: Path, *, workers: int = 2, threads: int = 2) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """``pycemaker serve`` with ``env`` on a free port; yields (base URL, process, log file) once /livez answers."""
    log_path = cwd / "serve.log"
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "PYCEMAKER_LOG_LEVEL": "INFO", **env}
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process, base = start_serve(full_env, cwd, workers=workers, threads=threads, log_path=log_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(base + "/livez", timeout=2).status_code == 200 and len(workers_of(process.pid)) == workers:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "gunicorn did not come up"
            time.sleep(0.2)
        yield base, process, log_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
