"""A fresh install serves the pretrained base model zero-shot from a service's first lookback window.

The real server and the shipped base model (``models/base``, ``base_models_dir``'s default); an empty
registry. The first promoted version replaces the base model; without a base model the status says
``no_model`` as before.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from forecasting import registry
from telemetry import simulator
from telemetry.settings import REPO_BASE_MODELS_DIR
from tests.scenario import Clock
from tests.serving.onnx_models import persistence_model

UTC = dt.timezone.utc
END = dt.datetime(2026, 5, 6, tzinfo=UTC)
SERVING = ("failure_predicted", "no_failure_within_horizon", "failing_now")


def write(settings, db, hours: float, seed: int = 21) -> None:
    simulator.write(db, simulator.simulate(END - dt.timedelta(hours=hours), END, seed, settings), settings)


@pytest.mark.parametrize("hours", [2, 3])
def test_an_empty_registry_serves_the_base_model_zero_shot(settings, db, make_app, hours):
    assert settings.base_models_dir == REPO_BASE_MODELS_DIR and registry.current_version(settings.models_dir) is None
    shipped = registry.current_or_newest(REPO_BASE_MODELS_DIR)
    assert shipped is not None, "the repo ships a base model (models/base)"
    write(settings, db, hours)
    client = make_app(settings, Clock(END + dt.timedelta(seconds=20))).test_client()
    status = client.get("/api/v1/status").get_json()
    assert status["state"] in SERVING, status["detail"]
    assert status["model"]["kind"] == "base" and status["model"]["version"] == shipped
    assert status["model"]["wanted"] is None and status["model"]["problem"] is None
    assert status["predicted_current"] is not None and status["horizon"]["minutes"] == 180
    assert status["time_to_failure"] is not None
    forecast = client.get("/api/v1/forecast?horizon=60").get_json()
    assert len(forecast["points"]) == 60 and forecast["model_version"] == shipped
    assert all(0.0 <= p["health"]["p10"] <= p["health"]["p50"] <= p["health"]["p90"] <= 1.0 for p in forecast["points"])
    assert client.get("/readyz").status_code == 200


def test_a_three_stream_service_gets_a_zero_shot_forecast(settings, db, make_app):
    service = dataclasses.replace(settings, streams=("cpu", "requests", "response_time"))
    sim = simulator.simulate(END - dt.timedelta(hours=3), END, 21, service)
    sim.samples = {c: f for c, f in sim.samples.items() if "memory" not in c}
    simulator.write(db, sim, service)
    status = make_app(service, Clock(END + dt.timedelta(seconds=20))).test_client().get("/api/v1/status").get_json()
    assert status["state"] in SERVING, status["detail"]
    assert status["model"]["kind"] == "base" and status["current"]["flags"]["memory"] is None


def test_the_first_promoted_version_replaces_the_base_model(settings, db, make_app):
    write(settings, db, 3)
    app = make_app(settings, Clock(END + dt.timedelta(seconds=20)))
    client = app.test_client()
    assert client.get("/api/v1/status").get_json()["model"]["kind"] == "base"
    persistence_model(settings.models_dir, "v1", L=30, H=15)
    app.extensions["pycemaker"].models.poll()
    model = client.get("/api/v1/status").get_json()["model"]
    assert model["version"] == "v1" and model["kind"] != "base"


def test_without_a_base_model_an_empty_registry_still_says_no_model(settings, db, make_app, tmp_path):
    service = dataclasses.replace(settings, base_models_dir=tmp_path / "no-base")
    write(service, db, 3)
    status = make_app(service, Clock(END + dt.timedelta(seconds=20))).test_client().get("/api/v1/status").get_json()
    assert (status["state"], status["reason"]) == ("unknown", "no_model")


def test_zero_shot_forecasts_start_where_a_first_model_would(settings, db, make_app):
    write(settings, db, 0.5)
    status = make_app(settings, Clock(END + dt.timedelta(seconds=20))).test_client().get("/api/v1/status").get_json()
    assert (status["state"], status["reason"]) == ("unknown", "insufficient_data") and status["model"]["kind"] == "base"
    assert "a first model needs 60" in status["detail"]
