"""``pycemaker serve``: gunicorn workers, metrics aggregated across them, a clean stop; /metrics values."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import requests

from tests.conftest import REPO
from tests.serving.conftest import Clock, at
from tests.serving.onnx_models import declining_model, persistence_model
from tests.ports import free_port


def _metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            rest = line[len(name):]
            if rest[:1] in (" ", "{"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in the exposition")


def test_serve_runs_gunicorn_workers_and_stops_cleanly(scenario, mongo_uri, tmp_path):
    models = tmp_path / "models"
    persistence_model(models, "v1", L=30, H=15)
    port = free_port()
    env = {
        **os.environ,
        "MONGO_URI": mongo_uri,
        "PYCEMAKER_DATABASE": scenario.database,
        "PYCEMAKER_MODELS_DIR": str(models),
        "PYTHONPATH": str(REPO),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "pycemaker", "serve", "--port", str(port), "--workers", "2", "--threads", "2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/livez", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # listening, workers still booting
                pass
            assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not come up"
            time.sleep(0.2)
        with requests.Session() as http:
            for _ in range(40):
                response = http.get(base + "/api/v1/status", timeout=5)
                assert response.status_code == 200 and response.json()["model"]["version"] == "v1"
            # /metrics reads every worker's files (PROMETHEUS_MULTIPROC_DIR): the count is the total.
            exposition = http.get(base + "/metrics", timeout=5).text
        count = _metric(exposition, "pycemaker_http_request_duration_seconds_count", method="GET", route="/api/v1/status", status="200")
        assert count == 40
        assert _metric(exposition, "pycemaker_model_info", version="v1") == 1.0
        ready = requests.get(base + "/readyz", timeout=5).json()
        assert ready["ready"] is True
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0]
    assert server.returncode == 0, output[-2000:]
    assert len(set(re.findall(r"Booting worker with pid: (\d+)", output))) == 2
    metrics_dir = re.search(r"share Prometheus metrics through (\S+)", output)
    assert metrics_dir is not None and not os.path.exists(metrics_dir.group(1))


def test_metrics_report_the_status(scenario_settings, make_app):
    declining_model(scenario_settings.models_dir, "v-decline", rate=0.02, H=60)
    client = make_app(scenario_settings, Clock(at("21:02:20"))).test_client()
    status = client.get("/api/v1/status").get_json()
    text = client.get("/metrics").get_data(as_text=True)
    assert _metric(text, "pycemaker_health") == status["current"]["health"]
    assert _metric(text, "pycemaker_predicted_health") == status["predicted_current"]["p50"]
    assert _metric(text, "pycemaker_time_to_failure_seconds", bound="expected") == status["time_to_failure"]["expected"]["seconds"]
    assert _metric(text, "pycemaker_time_to_failure_seconds", bound="latest") == status["time_to_failure"]["latest"]["seconds"]
    assert _metric(text, "pycemaker_status_state", state="failure_predicted") == 1.0
    assert _metric(text, "pycemaker_status_state", state="unknown") == 0.0
    assert _metric(text, "pycemaker_model_info", version="v-decline") == 1.0
    assert _metric(text, "pycemaker_model_problem") == 0.0
    assert _metric(text, "pycemaker_http_request_duration_seconds_count", route="/api/v1/status", status="200") >= 1
    assert "pycemaker_http_request_duration_seconds_bucket" in text
