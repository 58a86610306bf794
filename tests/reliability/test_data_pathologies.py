"""Bad data in the database: every read route answers (never a 500) and says what it means (docs/operations.md).

Each case writes 50 simulated minutes up to ``NOW``, damaged one way, straight into the
collections (as another tool, or the original deployment, could have), then reads every route.

Already proven elsewhere: null and absent values read as NaN, out-of-order reads sorted
(tests/telemetry/test_store.py), a missing stream makes health unknown, never healthy
(tests/telemetry/test_health.py), stale data makes the status unknown (tests/serving/test_status.py).
"""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest

from telemetry import simulator, store
from telemetry.catalogue import STREAMS
from tests.serving.conftest import Clock
from tests.serving.onnx_models import persistence_model

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 1, 12, 0, 20, tzinfo=UTC)
START = NOW - dt.timedelta(minutes=50)
ROUTES = ("/api/v1/status", "/api/v1/health", "/api/v1/forecast", "/health_data/1", "/current_health/1",
          "/predicted_data/1", "/readyz", "/metrics", "/api/v1/health?start=2026-03-01T08:00:00Z&end=2026-03-01T11:00:00Z&step=10m")


def _docs(settings, seed: int = 21, start=START, end=NOW + dt.timedelta(seconds=1)) -> dict[str, list[dict]]:
    sim = simulator.simulate(start, end, seed, settings)
    return {s.collection: simulator.documents(s, sim.samples[s.collection], settings) for s in STREAMS}


def _write(db, docs: dict[str, list[dict]], *, unique_index: bool = True) -> None:
    if unique_index:
        store.ensure_indexes(db)
    for collection, items in docs.items():
        if items:
            db[collection].insert_many([dict(d) for d in items], ordered=False)


def _read_all(settings, make_app) -> dict[str, tuple[int, object]]:
    persistence_model(settings.models_dir, L=30, H=15)
    client = make_app(settings, Clock(NOW)).test_client()
    out = {}
    for url in ROUTES:
        response = client.get(url)
        text = response.get_data(as_text=True)
        assert response.status_code in (200, 422, 503), (url, response.status_code, text[:300])
        assert "Traceback" not in text
        out[url] = (response.status_code, response.get_json() if response.is_json else text)
    return out


def _health(result) -> list:
    return [p["health"] for p in result["/api/v1/health"][1]["points"]]


def test_out_of_order_and_duplicated_samples_score_as_the_clean_data(settings, db, make_app):
    """Written shuffled, each sample twice, with no unique index (a database the original deployment filled)."""
    clean = _docs(settings)
    rng = random.Random(3)
    damaged = {}
    for collection, items in clean.items():
        doubled = items + [dict(d) for d in items]
        rng.shuffle(doubled)
        damaged[collection] = doubled
    _write(db, damaged, unique_index=False)
    assert db["cpu_usage"].count_documents({}) == 2 * len(clean["cpu_usage"])
    result = _read_all(settings, make_app)
    assert all(code == 200 for code, _ in result.values()), {u: c for u, (c, _) in result.items()}

    reference_db = db.client[settings.database + "_clean"]
    try:
        _write(reference_db, clean)
        from dataclasses import replace

        reference = _read_all(replace(settings, database=reference_db.name, models_dir=settings.models_dir.parent / "ref"), make_app)
    finally:
        db.client.drop_database(reference_db.name)
    assert _health(result) == _health(reference)
    assert result["/api/v1/status"][1]["current"] == reference["/api/v1/status"][1]["current"]


@pytest.mark.parametrize("jump", [dt.timedelta(hours=1), dt.timedelta(minutes=-10)], ids=["ahead", "behind"])
def test_a_stream_whose_clock_jumps_is_reported_stale_and_its_future_is_never_used(settings, db, make_app, jump):
    """From 20 minutes before now, the CPU exporter's clock is off by ``jump``."""
    docs = _docs(settings)
    since = NOW - dt.timedelta(minutes=20)
    kept = [d for d in docs["cpu_usage"] if d["time_series"] < since]
    moved = [{**d, "time_series": d["time_series"] + jump} for d in docs["cpu_usage"] if d["time_series"] >= since]
    # Behind: the moved samples land on times already taken by real ones only by chance; the unique index drops those.
    docs["cpu_usage"] = kept
    _write(db, docs)
    store.insert_idempotent(db, "cpu_usage", moved)
    result = _read_all(settings, make_app)

    status = result["/api/v1/status"][1]
    assert (status["state"], status["reason"]) == ("unknown", "stale_data")
    assert status["data"]["stale_streams"] == ["cpu_usage"]
    newest_cpu_at_or_before_now = max(d["time_series"] for d in kept + moved if d["time_series"] <= NOW)
    assert dt.datetime.fromisoformat(status["data"]["stale_since"]) == newest_cpu_at_or_before_now
    assert status["current"]["health"] is None and status["time_to_failure"] is None
    # Every minute after the newest CPU sample at or before now is unknown: a sample from the future is never used.
    points = result["/api/v1/health"][1]["points"]
    silent = [p for p in points if dt.datetime.fromisoformat(p["time"]) > newest_cpu_at_or_before_now + dt.timedelta(seconds=15)]
    assert len(silent) >= 9 and all(p["health"] is None and p["flags"]["cpu"] is None for p in silent)
    assert all(p["flags"]["memory"] is not None for p in silent)  # the other streams are still reported
    assert result["/current_health/1"][1]["current_health"] is None
    assert result["/current_health/1"][1]["predicted_remaining_time"] == 0
    code, body = result["/predicted_data/1"]
    assert code == 503 and "stale" in body["message"], body


def test_a_gap_of_hours_is_unknown_never_healthy_and_nothing_is_forecast_from_it(settings, db, make_app):
    """The data stops three hours before now."""
    _write(db, _docs(settings, start=NOW - dt.timedelta(hours=4), end=NOW - dt.timedelta(hours=3)))
    result = _read_all(settings, make_app)
    status = result["/api/v1/status"][1]
    assert (status["state"], status["reason"]) == ("unknown", "stale_data")
    assert sorted(status["data"]["stale_streams"]) == sorted(s.collection for s in STREAMS)
    points = result["/api/v1/health"][1]["points"]
    assert all(p["health"] is None and p["coverage"] == 0.0 and p["failing"] is None for p in points)
    code, body = result["/api/v1/forecast"]
    assert code == 503 and "no observed data in the model's input window" in body["message"]
    assert result["/health_data/1"][0] == 200 and all(r["health"] is None for r in result["/health_data/1"][1]["data"])
    code, body = result["/predicted_data/1"]
    assert code == 503 and "stale" in body["message"] and "no model" not in body["message"], body
    steps = result["/api/v1/health?start=2026-03-01T08:00:00Z&end=2026-03-01T11:00:00Z&step=10m"][1]["points"]
    assert [p["health"] is None for p in steps] == [False] * 7 + [True] * 11  # known 08:00:20-09:00:20, then the gap
    assert result["/readyz"][0] == 200  # the database answers and a model is loaded: ready, with nothing to say
    past = make_app(settings, Clock(NOW)).test_client().get("/api/v1/forecast?start=2026-03-01T11:00:00Z")
    assert past.status_code == 422 and list(past.get_json()["errors"]["query"]) == ["start"]  # nothing observed before it


def test_all_zero_streams_are_measured_healthy_not_missing(settings, db, make_app):
    """Zero is a value: an idle app (0 CPU, 0 requests) scores flag 0 everywhere, health 1.0."""
    docs = _docs(settings)
    for collection, items in docs.items():
        for d in items:
            for field in ("value", "value_success", "value_fail"):
                if field in d:
                    d[field] = 0.0
    _write(db, docs)
    result = _read_all(settings, make_app)
    assert all(code == 200 for code, _ in result.values())
    known = [h for h in _health(result) if h is not None]
    assert known and set(known) == {1.0}
    status = result["/api/v1/status"][1]
    assert status["current"]["health"] == 1.0 and status["state"] == "no_failure_within_horizon"


@pytest.mark.parametrize("stream", ["response_time", "all"])
def test_nan_values_are_missing_and_make_health_unknown(settings, db, make_app, stream):
    """NaN written as a value (``0/0`` response time when nobody sent a request, stored by another tool)."""
    docs = _docs(settings)
    for collection, items in docs.items():
        if stream in (collection, "all"):
            for d in items:
                for field in ("value", "value_success", "value_fail"):
                    if field in d:
                        d[field] = math.nan
    _write(db, docs)
    result = _read_all(settings, make_app)
    assert all(h is None for h in _health(result))
    status = result["/api/v1/status"][1]
    assert (status["state"], status["reason"]) == ("unknown", "no_data") and status["current"]["health"] is None
    assert "no minute could be scored" in status["detail"]
    assert result["/api/v1/forecast"][0] == 503


def test_a_stream_missing_entirely_makes_the_status_unknown_and_names_it(settings, db, make_app):
    docs = _docs(settings)
    docs["response_time"] = []
    _write(db, docs)
    result = _read_all(settings, make_app)
    status = result["/api/v1/status"][1]
    # A configured stream that never arrived is named: no data, not stale data (it never spoke).
    assert (status["state"], status["reason"]) == ("unknown", "no_data") and status["detail"].startswith("no_data: response_time")
    assert status["data"]["stale_streams"] == ["response_time"] and status["data"]["stale_since"] is None
    assert all(h is None for h in _health(result))
    flags = [p["flags"] for p in result["/api/v1/health"][1]["points"] if p["flags"]["cpu"] is not None]
    assert flags and all(f["response_time"] is None for f in flags)  # the present streams are still reported


def test_junk_values_are_missing_or_scored_never_a_crash(settings, db, make_app):
    """Strings, booleans, nulls, absent fields, infinities, negatives and a string time, mixed into every stream."""
    docs = _docs(settings)
    junk = ["high", None, True, math.inf, -5.0, {"$numberDouble": "1"}, [1, 2]]
    for collection, items in docs.items():
        field = "value_success" if collection == "request_count" else "value"
        for i, d in enumerate(items):
            if i % 3 == 0:
                d[field] = junk[(i // 3) % len(junk)]
            elif i % 11 == 0:
                d.pop(field)
        items.append({**items[-1], "time_series": "2026-03-01T12:00:00Z"})  # a string time: outside every date range
    _write(db, docs, unique_index=False)
    result = _read_all(settings, make_app)
    assert result["/api/v1/status"][0] == 200 and result["/api/v1/health"][0] == 200
    for value in _health(result):
        assert value is None or 0.0 <= value <= 1.0
