"""The registry-format-1 fixture (a real, tiny LSTM exported by training/) still loads and serves."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from tests.conftest import REPO
from tests.serving.conftest import Clock, at

FIXTURE = REPO / "tests" / "fixtures" / "models" / "v1"
pytestmark = pytest.mark.skipif(not (FIXTURE / "current").is_file(), reason="the model fixture is not in this checkout")


def test_the_format_1_fixture_serves_status_and_forecasts(scenario_settings, make_app, tmp_path):
    models = tmp_path / "registry"
    shutil.copytree(FIXTURE, models)
    settings = dataclasses.replace(scenario_settings, models_dir=models)
    version = (models / "current").read_text().strip()
    client = make_app(settings, Clock(at("21:02:20"))).test_client()

    status = client.get("/api/v1/status").get_json()
    assert {k: status["model"][k] for k in ("version", "wanted", "problem")} == {"version": version, "wanted": version, "problem": None}
    # A format-1 card has no kind: it is an LSTM; its history is its data range; it has no run scores.
    assert status["model"]["kind"] == "lstm" and status["model"]["trained_on"]["minutes"] == 2880
    assert status["model"]["quality"] is None
    assert status["state"] in ("failure_predicted", "no_failure_within_horizon")
    assert status["horizon"]["minutes"] == 180
    assert 0.0 <= status["predicted_current"]["p10"] <= status["predicted_current"]["p50"] <= status["predicted_current"]["p90"] <= 1.0

    forecast = client.get("/api/v1/forecast?horizon=300").get_json()
    assert forecast["rolled_forward"] is True and len(forecast["points"]) == 300
    for name in ("health", "cpu", "memory", "req_success", "req_fail", "response_time"):
        bands = np.array([[p[name]["p10"], p[name]["p50"], p[name]["p90"]] for p in forecast["points"]])
        assert np.isfinite(bands).all() and (np.diff(bands, axis=1) >= 0).all() and (bands >= 0).all()
    assert client.get("/readyz").status_code == 200
