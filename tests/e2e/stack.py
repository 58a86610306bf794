"""Starting and stopping the real parts of the test bed: every process is stopped, also on failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest

from tests.conftest import PROMETHEUS, REPO
from tests.ports import free_port

PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: target
    metrics_path: /actuator/prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


@dataclass
class Service:
    """A process started by a test, in its own process group, logging to a file."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def running(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the group we created, then SIGKILL if it lingers; returns the exit status."""
        if self.running():
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait(timeout)
        return self.process.returncode


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def start(
    name: str, cmd: Sequence[str], log_dir: Path, *, cwd: Path, env: dict[str, str] | None = None
) -> Service:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Service(name, process, log_path)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool], timeout: float, what: str, services: Sequence[Service] = ()
) -> None:
    """Poll ``ready`` until true; fail early (with its log) if a service died meanwhile."""
    deadline = time.monotonic() + timeout
    while not ready():
        for service in services:
            if not service.running():
                raise AssertionError(
                    f"{service.name} exited ({service.process.returncode}) while waiting "
                    f"for {what}:\n{service.tail()}"
                )
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {s.name}\n{s.tail()}" for s in services)
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")
        time.sleep(0.2)


def child_env(**extra: str) -> dict[str, str]:
    """This environment without pycemaker's settings (a child gets only what the test gives it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYCEMAKER_", "MONGO_URI", "LOCUST_"))}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return {**env, **extra}


def start_target_and_prometheus(work: Path, services: list[Service]) -> tuple[str, str]:
    """``pycemaker target`` and a real Prometheus scraping it every second (storage under ``work``),
    appended to ``services`` as they start; returns (the target's base URL, Prometheus's URL) once both answer."""
    target_port, prometheus_port = free_port(), free_port()
    target = start("target", [sys.executable, "-m", "pycemaker", "target", "--port", str(target_port)], work,
                   cwd=REPO, env=child_env())
    services.append(target)
    config = work / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.format(port=target_port))
    prometheus = start(
        "prometheus",
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}", "--log.level=warn"],
        work,
        cwd=work,
    )
    services.append(prometheus)
    target_url, prometheus_url = f"http://127.0.0.1:{target_port}", f"http://127.0.0.1:{prometheus_port}"
    wait_until(lambda: http_ok(target_url + "/actuator/prometheus"), 30, "the target", [target])
    wait_until(lambda: http_ok(prometheus_url + "/-/ready"), 30, "Prometheus", [prometheus])
    return target_url, prometheus_url


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[Service]]:
    """Processes a test starts; all stopped at the end, their logs shown if the test failed."""
    started: list[Service] = []
    try:
        yield started
    finally:
        for service in reversed(started):
            service.stop()
            print(f"--- {service.name} (exit {service.process.returncode})\n{service.tail(20)}")
