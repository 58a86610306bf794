"""Health, forecast, models and the original service's routes: schemas and values on the scenario."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re

import numpy as np
import pandas as pd
import pytest

from serving.schemas import (
    CompatCurrentHealthSchema,
    CompatHealthDataSchema,
    CompatPredictedDataSchema,
    ForecastSchema,
    HealthSeriesSchema,
    ModelCardSchema,
    ModelListSchema,
)
from forecasting import registry
from telemetry.frames import minute_frame
from tests.serving.conftest import Clock, at
from tests.serving.helpers import get_json as _get
from tests.serving.onnx_models import declining_model, persistence_model

UTC = dt.timezone.utc
FLAGS = ("cpu", "memory", "request_rate", "response_time")


# --- /api/v1/health ------------------------------------------------------------------


def test_health_defaults_to_the_last_hour_per_minute(scenario, scenario_settings, make_app):
    now = at("21:30:00")
    body = _get(make_app(scenario_settings, Clock(now)).test_client(), "/api/v1/health", HealthSeriesSchema)
    assert body["step_seconds"] == 60 and body["threshold"] == 0.3
    assert body["start"] == "2026-03-01T20:30:00+00:00" and body["end"] == "2026-03-01T21:30:00+00:00"
    points = body["points"]
    assert len(points) == 60 and points[0]["time"] == "2026-03-01T20:30:00+00:00"
    truth = scenario.health.loc[pd.Timestamp("2026-03-01T20:30:00Z") : pd.Timestamp("2026-03-01T21:29:00Z")]
    np.testing.assert_allclose([p["health"] for p in points], truth["health"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose([p["coverage"] for p in points], truth["coverage"].round(4).to_numpy())
    for name in FLAGS:
        np.testing.assert_allclose([p["flags"][name] for p in points], truth[f"flag_{name}"].to_numpy())
    assert [p["failing"] for p in points] == list(truth["health"] <= 0.3)
    known = truth["health"].dropna()
    assert body["summary"] == {
        "known_points": len(known),
        "mean": pytest.approx(known.mean()),
        "min": pytest.approx(known.min()),
        "failing_points": int((known <= 0.3).sum()),
    }


def test_unknown_minutes_are_null_never_healthy(scenario, scenario_settings, make_app):
    """The leak's crash: the app is down, nothing is scraped; those minutes are null with coverage 0."""
    end = pd.Timestamp(scenario.leak.end).ceil("1min")
    start = end - pd.Timedelta(minutes=10)
    client = make_app(scenario_settings, Clock(at("23:00"))).test_client()
    points = _get(client, f"/api/v1/health?start={start.isoformat()}&end={end.isoformat()}".replace("+", "%2B"))["points"]
    unknown = [p for p in points if p["health"] is None]
    assert unknown, "the crash must leave unknown minutes"
    assert all(p["coverage"] == 0.0 and p["failing"] is None and set(p["flags"].values()) == {None} for p in unknown)
    truth = scenario.health["health"].reindex(pd.DatetimeIndex([p["time"] for p in points]))
    assert [p["health"] is None for p in points] == list(truth.isna())


def test_health_in_steps_averages_the_known_minutes(scenario, scenario_settings, make_app):
    client = make_app(scenario_settings, Clock(at("23:00"))).test_client()
    body = _get(client, "/api/v1/health?start=2026-03-01T19:30:00Z&end=2026-03-01T20:30:00Z&step=15m", HealthSeriesSchema)
    assert body["step_seconds"] == 900 and len(body["points"]) == 4
    truth = scenario.health.loc["2026-03-01T19:30:00Z":"2026-03-01T20:29:00Z"]
    for i, point in enumerate(body["points"]):
        part = truth.iloc[15 * i : 15 * (i + 1)]
        assert point["time"] == part.index[0].isoformat()
        assert point["health"] == pytest.approx(part["health"].mean())  # NaN-skipping mean
        assert point["coverage"] == pytest.approx(part["coverage"].mean(), abs=1e-4)
    for step in ("PT15M", "900s", "15", "15min"):
        again = _get(client, f"/api/v1/health?start=2026-03-01T19:30:00Z&end=2026-03-01T20:30:00Z&step={step}")
        assert again["points"] == body["points"]


def test_health_over_hours_before_the_recent_window_matches_one_big_computation(scenario, scenario_settings, make_app):
    """Older minutes come from hour chunks: joined, they are exactly the minutes of one computation."""
    client = make_app(scenario_settings, Clock(at("23:59:00"))).test_client()
    body = _get(client, "/api/v1/health?start=2026-03-01T16:10:00Z&end=2026-03-01T21:50:00Z")
    truth = scenario.health.loc["2026-03-01T16:10:00Z":"2026-03-01T21:49:00Z", "health"]
    got = np.array([np.nan if p["health"] is None else p["health"] for p in body["points"]])
    np.testing.assert_allclose(got, truth.to_numpy(), atol=1e-12)
    again = _get(client, "/api/v1/health?start=2026-03-01T16:10:00Z&end=2026-03-01T21:50:00Z")  # from the cache
    assert again == body


# --- /api/v1/forecast ---------------------------------------------------------------------


def test_a_past_forecast_is_what_the_model_would_have_made_then(scenario, scenario_settings, make_app):
    persistence_model(scenario_settings.models_dir, L=30, H=15)
    client = make_app(scenario_settings, Clock(at("23:00"))).test_client()
    body = _get(client, "/api/v1/forecast?start=2026-03-01T21:00:00Z&end=2026-03-01T21:10:00Z", ForecastSchema)
    assert (body["origin"], body["start"], body["end"]) == (
        "2026-03-01T21:00:00+00:00", "2026-03-01T21:00:00+00:00", "2026-03-01T21:10:00+00:00")
    assert body["horizon_minutes"] == 10 and body["rolled_forward"] is False and body["model_version"] == "v-persist"
    assert body["quantiles"] == [0.1, 0.5, 0.9] and body["input_coverage"] == 1.0
    # Persistence: every minute repeats the last input minute (20:59), bands at +-0.05.
    frame = minute_frame(scenario.simulation.samples, at("20:59"), at("21:00"), scenario_settings)
    last = frame.iloc[-1]
    assert len(body["points"]) == 10
    for point in body["points"]:
        for name in ("cpu", "memory", "req_success", "req_fail", "response_time", "health"):
            band = point[name]
            assert band["p50"] == pytest.approx(last[name], abs=1e-5)
            assert band["p10"] == pytest.approx(max(0.0, last[name] - 0.05), abs=1e-5)
            assert band["p90"] == pytest.approx(last[name] + 0.05 if name not in ("cpu", "memory", "health") else min(1.0, last[name] + 0.05), abs=1e-5)


def test_a_forecast_beyond_the_model_horizon_is_rolled_forward(scenario_settings, make_app):
    declining_model(scenario_settings.models_dir, rate=0.001, L=30, H=20)
    now = at("21:02:20")
    client = make_app(scenario_settings, Clock(now)).test_client()
    body = _get(client, "/api/v1/forecast?horizon=50", ForecastSchema)
    assert body["origin"] == "2026-03-01T21:02:00+00:00" and body["rolled_forward"] is True
    assert body["horizon_minutes"] == 50 and body["model_horizon_minutes"] == 20 and len(body["points"]) == 50
    p50 = np.array([p["health"]["p50"] for p in body["points"]])
    # Fed back, the median keeps declining at the same rate across the seams (minutes 20 and 40).
    np.testing.assert_allclose(np.diff(p50), -0.001, atol=1e-5)
    default = _get(client, "/api/v1/forecast", ForecastSchema)
    assert default["horizon_minutes"] == 20 and default["rolled_forward"] is False
    assert [p["health"] for p in default["points"]] == [p["health"] for p in body["points"][:20]]


def test_a_future_interval_is_forecast_from_now(scenario_settings, make_app):
    persistence_model(scenario_settings.models_dir, L=30, H=15)
    client = make_app(scenario_settings, Clock(at("21:02:20"))).test_client()
    body = _get(client, "/api/v1/forecast?start=2026-03-01T21:10:00Z&end=2026-03-01T21:12:00Z", ForecastSchema)
    assert body["origin"] == "2026-03-01T21:02:00+00:00" and body["start"] == "2026-03-01T21:10:00+00:00"
    assert body["horizon_minutes"] == 10 and [p["time"] for p in body["points"]] == [
        "2026-03-01T21:10:00+00:00", "2026-03-01T21:11:00+00:00"]


def test_forecast_errors(scenario_settings, make_app):
    persistence_model(scenario_settings.models_dir, L=30, H=15)
    client = make_app(scenario_settings, Clock(at("21:02:20"))).test_client()
    too_long = _get(client, "/api/v1/forecast?horizon=1441", status=422)
    assert "horizon" in too_long["errors"]["query"] and "max_horizon_hours" in too_long["message"]
    both = _get(client, "/api/v1/forecast?horizon=5&end=2026-03-01T22:00:00Z", status=422)
    assert list(both["errors"]["query"]) == ["horizon"]
    before_data = _get(client, "/api/v1/forecast?start=2026-02-20T00:00:00Z&horizon=5", status=422)
    assert list(before_data["errors"]["query"]) == ["start"]
    assert _get(client, "/api/v1/forecast?horizon=0", status=422)["errors"]["query"]["horizon"]


def test_forecast_without_a_model_is_503_with_a_reason(scenario_settings, make_app, tmp_path):
    settings = dataclasses.replace(scenario_settings, base_models_dir=tmp_path / "no-base")  # no base model to fall back on
    response = make_app(settings, Clock(at("21:02:20"))).test_client().get("/api/v1/forecast")
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert "no model" in response.get_json()["message"]


# --- models and training -------------------------------------------------------------------


def test_models_list_and_card(scenario_settings, make_app):
    persistence_model(scenario_settings.models_dir, "v1", created_at=dt.datetime(2026, 3, 1, 8, tzinfo=UTC))
    declining_model(scenario_settings.models_dir, "v2", activate=False, created_at=dt.datetime(2026, 3, 1, 9, tzinfo=UTC))
    client = make_app(scenario_settings, Clock(at("21:00"))).test_client()
    body = _get(client, "/api/v1/models", ModelListSchema)
    assert (body["current"], body["serving"], body["problem"]) == ("v1", "v1", None)
    assert [(m["version"], m["current"], m["serving"], m["status"]) for m in body["models"]] == [
        ("v1", True, True, "promoted"), ("v2", False, False, "candidate")]
    card = _get(client, "/api/v1/models/v2", ModelCardSchema)
    assert card["horizon_minutes"] == 60 and card["input_minutes"] == 30 and card["onnx"] == {"input": "window", "output": "quantiles"}
    assert _get(client, "/api/v1/models/nope", status=404)["message"].startswith("no model version")
    assert _get(client, "/api/v1/models/..", status=404)


def test_write_routes_are_disabled_without_a_token(scenario_settings, make_app):
    persistence_model(scenario_settings.models_dir, "v1")
    client = make_app(scenario_settings, Clock(at("21:00"))).test_client()
    for url in ("/api/v1/models/v1/activate", "/api/v1/train"):
        response = client.post(url, headers={"Authorization": "Bearer anything"})
        assert response.status_code == 403 and "PYCEMAKER_API_TOKEN" in response.get_json()["message"]


def test_activate_and_train_need_the_bearer_token(scenario_settings, make_app, tmp_path):
    settings = dataclasses.replace(scenario_settings, api_token="s3cret", database=scenario_settings.database)
    persistence_model(settings.models_dir, "v1")
    declining_model(settings.models_dir, "v2", activate=False)
    (settings.models_dir / "v2-broken").mkdir()
    (settings.models_dir / "v2-broken" / "card.json").write_text(registry.read_card(settings.models_dir, "v2").to_json().replace('"v2"', '"v2-broken"'))
    (settings.models_dir / "v2-broken" / "model.onnx").write_bytes(b"not onnx")
    client = make_app(settings, Clock(at("21:00"))).test_client()
    ok = {"Authorization": "Bearer s3cret"}

    for headers in ({}, {"Authorization": "Basic s3cret"}):
        response = client.post("/api/v1/models/v2/activate", headers=headers)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/api/v1/models/v2/activate", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert registry.current_version(settings.models_dir) == "v1"

    broken = client.post("/api/v1/models/v2-broken/activate", headers=ok)
    assert broken.status_code == 409 and registry.current_version(settings.models_dir) == "v1"
    assert client.post("/api/v1/models/ghost/activate", headers=ok).status_code == 404

    card = client.post("/api/v1/models/v2/activate", headers=ok)
    assert card.status_code == 200 and card.get_json()["current"] is True and card.get_json()["serving"] is True
    assert registry.current_version(settings.models_dir) == "v2"
    assert _get(client, "/api/v1/status")["model"]["version"] == "v2"


def test_train_files_a_request_for_the_scheduler(settings, db, make_app):
    settings = dataclasses.replace(settings, api_token="s3cret")
    client = make_app(settings).test_client()
    response = client.post("/api/v1/train", headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 202
    body = response.get_json()
    pending = list(db["training_requests"].find({}))
    assert len(pending) == 1 and str(pending[0]["_id"]) == body["request_id"]
    assert pending[0]["requested_by"] == "api" and pending[0]["taken_at"] is None


# --- the original service's routes ----------------------------------------------------------

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:00\.000Z$")


def test_compat_health_data(scenario, scenario_settings, make_app):
    client = make_app(scenario_settings, Clock(at("20:05:00"))).test_client()
    body = _get(client, "/health_data/2", CompatHealthDataSchema)
    rows = body["data"]
    assert len(rows) == 120 and set(rows[0]) == {"time_series", "health"}
    assert all(ISO_MS.match(r["time_series"]) for r in rows)
    assert rows[0]["time_series"] == "2026-03-01T18:05:00.000Z" and rows[-1]["time_series"] == "2026-03-01T20:04:00.000Z"
    truth = scenario.health.loc["2026-03-01T18:05:00Z":"2026-03-01T20:04:00Z", "health"]
    assert [r["health"] is None for r in rows] == list(truth.isna())  # the crash: null, not 1.0
    np.testing.assert_allclose([r["health"] for r in rows if r["health"] is not None], truth.dropna().to_numpy())


def test_compat_current_health_and_predicted_data_in_total_seconds(scenario_settings, make_app):
    declining_model(scenario_settings.models_dir, rate=0.002, H=60)  # crosses after ~5 h: rolled forward
    now = at("21:02:20")
    client = make_app(scenario_settings, Clock(now)).test_client()
    status = _get(client, "/api/v1/status")
    assert status["state"] == "no_failure_within_horizon"  # not within the model's 60 minutes

    current = _get(client, "/current_health/8", CompatCurrentHealthSchema)
    assert set(current) == {"current_health", "predicted_current_health", "predicted_remaining_time"}
    assert current["current_health"] == status["current"]["health"]
    assert current["predicted_current_health"] == status["predicted_current"]["p50"]
    last_input = status["predicted_current"]["p50"] + 0.002
    minutes = next(i for i in range(1, 480) if last_input - 0.002 * (i + 1) <= 0.3 + 1e-9)
    crossing = pd.Timestamp(status["current"]["minute"]) + pd.Timedelta(minutes=minutes)
    seconds = (crossing - pd.Timestamp(now)).total_seconds()
    assert seconds > 4 * 3600  # beyond the model horizon: found on the rolled-forward path
    assert abs(current["predicted_remaining_time"] - math.ceil(seconds)) <= 60  # float32 steps may shift it by a minute
    assert isinstance(current["predicted_remaining_time"], int)

    predicted = _get(client, "/predicted_data/8", CompatPredictedDataSchema)
    assert predicted["remaining_time"] == current["predicted_remaining_time"]
    assert len(predicted["data"]) == 480 and set(predicted["data"][0]) == {"index", "predicted_mean"}
    assert predicted["data"][0]["index"] == "2026-03-01T21:02:00.000Z"
    assert predicted["data"][0]["predicted_mean"] == pytest.approx(status["predicted_current"]["p50"], abs=1e-4)

    short = _get(client, "/current_health/1")
    assert short["predicted_remaining_time"] == 0  # 0 = no failure predicted within the hour


def test_compat_remaining_time_while_failing_and_without_a_model(scenario_settings, make_app, tmp_path):
    settings = dataclasses.replace(scenario_settings, base_models_dir=tmp_path / "no-base")  # no base model to fall back on
    client = make_app(settings, Clock(at("19:30:30"))).test_client()
    body = _get(client, "/current_health/3")
    assert body["predicted_current_health"] is None and body["predicted_remaining_time"] == 1  # failing, no model
    assert client.get("/predicted_data/3").status_code == 503


@pytest.mark.parametrize("hours", ["abc", "0", "-2", "nan", "1e9"])
def test_compat_bad_hours_are_422_naming_the_field(scenario_settings, make_app, hours):
    client = make_app(scenario_settings, Clock(at("21:00"))).test_client()
    for route in ("health_data", "predicted_data", "current_health"):
        body = _get(client, f"/{route}/{hours}", status=422)
        assert list(body["errors"]["path"]) == ["hours"]


def test_a_start_after_now_with_the_default_end_names_start(scenario_settings, make_app):
    client = make_app(scenario_settings, Clock(at("21:00"))).test_client()
    body = _get(client, "/api/v1/health?start=2026-03-01T22:00:00Z", status=422)
    assert list(body["errors"]["query"]) == ["start"]


def test_cors_allows_only_the_configured_origins(scenario_settings, make_app):
    settings = dataclasses.replace(scenario_settings, cors_origins=("http://dashboard.local",))
    client = make_app(settings, Clock(at("21:00"))).test_client()
    allowed = client.get("/api/v1/status", headers={"Origin": "http://dashboard.local"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://dashboard.local"
    assert "Origin" in allowed.headers["Vary"]
    other = client.get("/api/v1/status", headers={"Origin": "http://elsewhere.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options("/api/v1/train", headers={"Origin": "http://dashboard.local", "Access-Control-Request-Method": "POST"})
    assert preflight.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    no_cors = make_app(scenario_settings, Clock(at("21:00"))).test_client()
    assert "Access-Control-Allow-Origin" not in no_cors.get("/livez", headers={"Origin": "http://dashboard.local"}).headers
