"""Never serve nothing: a new service with hours of history gets a model from one run, and the API forecasts.

The store and the API are real (the session's SecantusDB server, the Flask app on a clock set just
after the data); the run is ``train_once`` as ``pycemaker train --once`` runs it, on an empty registry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from forecasting import registry
from telemetry import simulator, store
from tests.scenario import Clock
from tests.training.conftest import RAW_TAIL, tiny_fit_config

pytest.importorskip("torch")

from training.pipeline import train_once  # noqa: E402

UTC = dt.timezone.utc
END = dt.datetime(2026, 5, 6, tzinfo=UTC)


@pytest.fixture
def db(settings):
    """The test's database, not dropped after (as tests/conftest.py's ``db`` does): the name is unique and the server's
    data dies with the session, and dropping a day of samples costs tens of seconds on a busy machine."""
    database = store.connect(settings, autostart=False)
    yield database
    database.client.close()


def write(settings, db, hours: float, seed: int = 21) -> None:
    """``hours`` of samples to END: raw for the last :data:`RAW_TAIL`, rollups before (conftest.py)."""
    simulator.write(db, simulator.simulate(END - dt.timedelta(hours=hours), END, seed, settings), settings, raw_since=END - RAW_TAIL)


@pytest.mark.parametrize("hours", [2, 3])
def test_an_empty_registry_and_hours_of_history_get_a_model_and_forecasts(settings, db, make_app, hours):
    """From one input window (2 h) or a little more, one run promotes a baseline; the API forecasts with it."""
    write(settings, db, hours)
    result = train_once(settings, db, progress_bar=False)
    assert result.promoted, result.error or result.reason
    card = registry.read_card(settings.models_dir, registry.current_version(settings.models_dir))
    assert card.kind in ("seasonal_naive", "ets", "base", "blend") and card.selection["plan"] == "fit only"
    assert {f["kind"]: f["verdict"] for f in card.selection["failed"]} == {"finetuned": "skipped", "lstm": "skipped"}

    client = make_app(settings, Clock(END + dt.timedelta(seconds=20))).test_client()
    status = client.get("/api/v1/status").get_json()
    assert status["state"] in ("failure_predicted", "no_failure_within_horizon", "failing_now"), status["detail"]
    assert status["model"]["kind"] == card.kind and status["model"]["version"] == card.version
    assert status["model"]["trained_on"]["minutes"] == card.data_range["minutes"] <= hours * 60
    assert status["predicted_current"] is not None and status["horizon"]["minutes"] == 180
    forecast = client.get("/api/v1/forecast?horizon=60")
    assert forecast.status_code == 200 and len(forecast.get_json()["points"]) == 60
    assert forecast.get_json()["model_version"] == card.version


def test_a_day_on_an_empty_registry_makes_the_service_ready_on_every_route(settings, db, make_app):
    """A day: long enough for the LSTM's split at L = 120, H = 60 (training/datamodule.py minimum_minutes: 1201)."""
    write(settings, db, 24)
    result = train_once(dataclasses.replace(settings, horizon_minutes=60), db, config=tiny_fit_config(max_epochs=2),
                        progress_bar=False)
    assert result.promoted and result.status == "succeeded"
    kinds = {c["kind"] for c in registry.read_card(settings.models_dir, result.version).selection["candidates"]}
    assert kinds == {"seasonal_naive", "ets", "base", "blend", "lstm"}  # fine-tuning the base model needs its H (180 min)

    client = make_app(settings, Clock(END + dt.timedelta(seconds=20))).test_client()
    assert client.get("/readyz").status_code == 200
    for route in ("/api/v1/status", "/api/v1/health", "/api/v1/forecast", "/api/v1/models", f"/api/v1/models/{result.version}",
                  "/health_data/1", "/predicted_data/1", "/current_health/1", "/livez", "/metrics", "/", "/docs"):
        assert client.get(route).status_code == 200, route
    runs = client.get("/api/v1/models").get_json()["runs"]
    assert runs[0]["run_id"] == result.run_id and {c["kind"] for c in runs[0]["candidates"]} == kinds


def test_too_little_history_says_how_much_is_needed(settings, db, make_app):
    write(settings, db, 0.5)
    result = train_once(settings, db, progress_bar=False)
    assert not result.promoted and "a first model needs at least 60" in result.error
    status = make_app(settings, Clock(END + dt.timedelta(seconds=20))).test_client().get("/api/v1/status").get_json()
    assert (status["state"], status["reason"]) == ("unknown", "insufficient_data")
    assert "a first model needs 60" in status["detail"] and 28 <= int(status["detail"].split()[0]) <= 31
