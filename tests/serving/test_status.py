"""``GET /api/v1/status`` on the simulated scenario: every state, exact values, caching."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from serving import status_service as status_module
from serving.schemas import STATES, StatusSchema
from telemetry import store
from telemetry.catalogue import CPU, MEMORY, REQUESTS, RESPONSE_TIME, to_document
from tests.serving.conftest import Clock, at
from tests.serving.onnx_models import declining_model, persistence_model, trend_model

UTC = dt.timezone.utc


def _status(client) -> dict:
    response = client.get("/api/v1/status")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert StatusSchema().validate(body) == {}
    assert body["state"] in STATES
    return body


def _iso(t) -> str:
    return pd.Timestamp(t).isoformat()


@pytest.mark.parametrize("when", ["19:08:30", "19:11:30", "19:14:30"])
def test_a_leak_gives_a_finite_eta_before_its_crash(scenario, scenario_settings, make_app, when):
    trend_model(scenario_settings.models_dir)  # extrapolates the streams: a climbing heap keeps climbing
    now = at(when)
    body = _status(make_app(scenario_settings, Clock(now)).test_client())

    assert body["state"] == "failure_predicted", body["detail"]
    ttf = body["time_to_failure"]
    expected = pd.Timestamp(ttf["expected"]["at"])
    assert pd.Timestamp(now) < expected < pd.Timestamp(scenario.leak.end)  # before the crash
    assert ttf["expected"]["seconds"] == pytest.approx((expected - pd.Timestamp(now)).total_seconds())
    earliest = pd.Timestamp(ttf["earliest"]["at"])
    assert earliest <= expected  # the P10 path crosses first
    if ttf["latest"] is not None:
        assert pd.Timestamp(ttf["latest"]["at"]) >= expected
    # The ground truth: the leak does fail, for good, before it crashes.
    truth = scenario.health["health"]
    failing = truth[(truth.index > pd.Timestamp(now)) & (truth <= scenario_settings.failure_threshold)]
    assert len(failing) and failing.index[0] < pd.Timestamp(scenario.leak.end)
    assert body["horizon"] == {"minutes": 60, "end": _iso(pd.Timestamp(body["current"]["minute"]) + pd.Timedelta(minutes=60))}
    assert body["driver"] in {"cpu", "memory", "request_rate", "response_time"}
    assert body["drivers"][0]["stream"] == body["driver"] and len(body["drivers"]) == 4
    assert body["driver_minute"] == ttf["expected"]["at"]


@pytest.mark.parametrize("when", ["20:58:30", "21:01:30", "22:02:30"])
def test_a_calm_period_gives_no_failure_within_the_horizon(scenario_settings, make_app, when):
    trend_model(scenario_settings.models_dir)
    body = _status(make_app(scenario_settings, Clock(at(when))).test_client())
    assert body["state"] == "no_failure_within_horizon", body["detail"]
    assert body["reason"] is None
    assert body["time_to_failure"]["expected"] is None and body["time_to_failure"]["latest"] is None
    assert body["current"]["health"] > 0.5
    assert body["horizon"]["minutes"] == 60


def test_exact_time_to_failure_with_a_model_that_declines(scenario, scenario_settings, make_app):
    """Health falls 0.02/min from the last input minute: the crossing minute is known exactly."""
    declining_model(scenario_settings.models_dir, rate=0.02, H=60)
    now = at("21:02:20")
    body = _status(make_app(scenario_settings, Clock(now)).test_client())

    minute = pd.Timestamp(body["current"]["minute"])
    assert minute == pd.Timestamp(now).floor("1min")
    truth = scenario.health
    assert body["current"]["health"] == pytest.approx(truth.loc[minute, "health"], abs=1e-4)
    last_input = truth.loc[minute - pd.Timedelta(minutes=1), "health"]
    path = last_input - 0.02 * np.arange(1, 61)  # P50 at minute + i
    assert body["predicted_current"]["p50"] == pytest.approx(path[0], abs=1e-4)
    assert body["predicted_current"]["p10"] == pytest.approx(max(0.0, path[0] - 0.1), abs=1e-4)
    assert body["predicted_current"]["p90"] == pytest.approx(min(1.0, path[0] + 0.1), abs=1e-4)

    def crossing(p):
        i = int(np.flatnonzero(p[1:] <= 0.3)[0]) + 1
        return minute + pd.Timedelta(minutes=i)

    expected, earliest, latest = crossing(path), crossing(path - 0.1), crossing(path + 0.1)
    ttf = body["time_to_failure"]
    assert body["state"] == "failure_predicted"
    assert [ttf[k]["at"] for k in ("earliest", "expected", "latest")] == [_iso(earliest), _iso(expected), _iso(latest)]
    assert ttf["expected"]["seconds"] == pytest.approx((expected - pd.Timestamp(now)).total_seconds())
    assert body["as_of"] == _iso(now)
    # Health declines while the streams stay where they are: no stream's contribution rises.
    assert all(row["change"] == 0.0 for row in body["drivers"])


def test_failing_now_reports_the_start_of_the_failing_streak(scenario, scenario_settings, make_app):
    persistence_model(scenario_settings.models_dir)
    now = at("19:30:30")
    body = _status(make_app(scenario_settings, Clock(now)).test_client())
    assert body["state"] == "failing_now"
    health = scenario.health["health"]
    failing = health[(health.index <= pd.Timestamp(now))] <= scenario_settings.failure_threshold
    last_ok = failing[~failing].index[-1]
    streak_start = last_ok + pd.Timedelta(minutes=1)
    ttf = body["time_to_failure"]
    assert ttf["expected"] == {"at": _iso(streak_start), "seconds": 0.0, "cause": "health"}
    assert ttf["earliest"] == ttf["expected"] == ttf["latest"]
    assert body["current"]["health"] <= 0.3
    assert body["driver_minute"] == body["current"]["minute"]
    assert body["drivers"][0]["flag_before"] is not None  # compared with the last healthy minute


def test_stale_data_makes_the_status_unknown(scenario, scenario_settings, make_app):
    persistence_model(scenario_settings.models_dir)
    now = at("23:59:59") + dt.timedelta(minutes=10)  # the scenario's data ends at midnight
    body = _status(make_app(scenario_settings, Clock(now)).test_client())
    assert (body["state"], body["reason"]) == ("unknown", "stale_data")
    assert body["current"]["health"] is None and body["time_to_failure"] is None
    last = max(frame.index[-1] for frame in scenario.simulation.samples.values())
    assert body["data"]["stale"] is True
    assert sorted(body["data"]["stale_streams"]) == ["cpu_usage", "jvm_memory_usage", "request_count", "response_time"]
    assert pd.Timestamp(body["data"]["stale_since"]) <= last
    assert pd.Timestamp(body["data"]["latest_sample"]) == last
    assert "stale data" in body["detail"]


def test_without_a_model_current_health_is_known_and_the_forecast_is_not(scenario, scenario_settings, make_app, tmp_path):
    now = at("21:02:20")
    settings = dataclasses.replace(scenario_settings, base_models_dir=tmp_path / "no-base")  # no base model to fall back on
    client = make_app(settings, Clock(now)).test_client()
    body = _status(client)
    assert (body["state"], body["reason"]) == ("unknown", "no_model")
    minute = pd.Timestamp(now).floor("1min")
    assert body["current"]["health"] == pytest.approx(scenario.health.loc[minute, "health"], abs=1e-4)
    assert body["predicted_current"] is None and body["model"]["version"] is None


def test_an_empty_database_has_no_data(settings, db, make_app):
    persistence_model(settings.models_dir)
    body = _status(make_app(settings).test_client())
    assert (body["state"], body["reason"]) == ("unknown", "no_data")
    assert body["data"]["latest_sample"] is None


def test_the_status_is_computed_once_per_data_change(settings, db, make_app, monkeypatch):
    """Requests hand out the cached body; a new grid point every stream has reached triggers one recomputation."""
    persistence_model(settings.models_dir, L=30, H=15)
    from telemetry import simulator

    end = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    simulator.write(db, simulator.simulate(end - dt.timedelta(hours=1), end, 3, settings), settings)
    clock = Clock(end + dt.timedelta(seconds=3))
    calls = []
    real = status_module.compute_status
    monkeypatch.setattr(status_module, "compute_status", lambda *a, **k: calls.append(1) or real(*a, **k))
    client = make_app(settings, clock).test_client()

    bodies = [client.get("/api/v1/status").data for _ in range(20)]
    assert len(calls) == 1 and len(set(bodies)) == 1

    # One stream speaks: no grid point is complete yet, nothing to recompute.
    clock.now = end + dt.timedelta(seconds=6)
    new = end + dt.timedelta(seconds=5)
    store.insert_idempotent(db, CPU.collection, [to_document(CPU, new, {"cpu": 0.99}, settings.cpu_cuts)])
    assert client.get("/api/v1/status").data == bodies[0] and len(calls) == 1

    # Every stream has passed 12:00:05: a new grid point, recomputed once, then cached again.
    values = {"memory": 0.3, "req_success": 20.0, "req_fail": 0.0, "response_time": 0.1}
    for stream in (MEMORY, REQUESTS, RESPONSE_TIME):
        doc = to_document(stream, new, values, settings.cuts()[stream.flag])
        store.insert_idempotent(db, stream.collection, [doc])
    after = [client.get("/api/v1/status").data for _ in range(5)]
    assert len(calls) == 2 and len(set(after)) == 1 and after[0] != bodies[0]
    import json

    before, current = json.loads(bodies[0])["current"], json.loads(after[0])["current"]
    assert before["minute"] == current["minute"] == "2026-03-01T12:00:00+00:00"
    # Grid points 12:00:00 (the old sample, as of) and 12:00:05 (cpu 0.99: flag 3).
    assert math.isclose(current["flags"]["cpu"], (before["flags"]["cpu"] + 3.0) / 2)
