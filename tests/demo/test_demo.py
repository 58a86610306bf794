"""``pycemaker demo`` (what ``make demo`` runs), end to end, as a new user runs it.

In an empty folder with its own ports: the demo hosts the embedded database, simulates history,
trains a first model, starts the live simulator, the scheduler and the API, and prints where to
look. The test waits for ``/api/v1/status`` to carry a forecast from a trained model, opens every
printed URL, then stops the demo as Ctrl-C would and checks that no process it started is left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import HAS_TORCH, REPO
from tests.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not HAS_TORCH, reason="the demo trains a model: needs torch")]


def processes_marked(token: str) -> list[int]:
    """Live processes whose environment carries ``token`` (every process the demo starts inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if token.encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


def test_the_demo_serves_a_trained_forecast_and_stops_cleanly(tmp_path):
    port, db_port = free_port(), free_port()
    token = f"DEMO_TEST_TOKEN={uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCEMAKER_") and k not in ("MONGO_URI", "PROMETHEUS_MULTIPROC_DIR")}
    env.update(
        PYCEMAKER_PORT=str(port), PYCEMAKER_EMBEDDED_PORT=str(db_port), PYCEMAKER_DATA_DIR=str(tmp_path / "db"),
        PYCEMAKER_MODELS_DIR=str(tmp_path / "models"), PYTHONPATH=str(REPO), DEMO_TEST_TOKEN=token.split("=", 1)[1],
    )
    demo = subprocess.Popen([sys.executable, "-m", "pycemaker", "demo"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(demo.stdout), daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}"
    try:
        status = None
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            assert demo.poll() is None, "the demo exited early:\n" + "".join(output[-40:])
            try:
                status = requests.get(base + "/api/v1/status", timeout=5).json()
            except (requests.RequestException, ValueError):
                status = None
            current = tmp_path / "models" / "current"  # (before the first run: the shipped base model, zero-shot)
            trained = current.read_text().strip() if current.exists() else None
            if status and trained and status.get("model", {}).get("version") == trained and status.get("predicted_current"):
                break
            time.sleep(2)
        assert status and status["model"]["version"], "no trained model served within 7 minutes:\n" + "".join(output[-40:])
        assert status["state"] in ("failure_predicted", "failing_now", "no_failure_within_horizon"), status
        assert status["horizon"]["minutes"] > 0 and 0.0 <= status["predicted_current"]["p50"] <= 1.0
        assert (tmp_path / "models" / "current").read_text().strip() == status["model"]["version"]

        forecast = requests.get(base + "/api/v1/forecast", params={"horizon": 60}, timeout=10)
        assert forecast.status_code == 200 and len(forecast.json()["points"]) == 60

        printed = dict(re.findall(r"^(Dashboard|API|Swagger UI):\s+(\S+)$", "".join(output), re.MULTILINE))
        assert printed == {"Dashboard": base + "/", "API": base + "/api/v1/status", "Swagger UI": base + "/docs"}, output[-20:]
        for url in printed.values():
            assert requests.get(url, timeout=10).status_code == 200, url
        assert "swagger-ui" in requests.get(printed["Swagger UI"], timeout=10).text
    finally:
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            code = demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            pytest.fail("the demo did not stop within 60 s of Ctrl-C")
    assert code == 0, "".join(output[-40:])
    deadline = time.monotonic() + 10
    while processes_marked(token) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = processes_marked(token)
    if left:
        os.killpg(demo.pid, signal.SIGKILL)
    assert not left, f"processes left behind after the demo stopped: {left}"
