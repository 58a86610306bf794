"""Bad input and bad days: 4xx naming the field, 503 with a reason, recovery, never a 500."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import pytest

from serving.app import create_app
from telemetry import simulator
from telemetry.embedded import open_server
from telemetry.settings import Settings
from telemetry.store import connect
from tests.serving.conftest import Clock, at
from tests.serving.onnx_models import persistence_model
from tests.ports import free_port

UTC = dt.timezone.utc


def _error(client, url, status=422):
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json and "Traceback" not in response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == status
    return body


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/health?start=yesterday", "start"),
        ("/api/v1/health?end=2026-13-01T00:00:00Z", "end"),
        ("/api/v1/health?start=2026-03-01T10:00:00", "start"),  # no UTC offset
        ("/api/v1/health?start=2026-03-01T10:00:00Z&end=2026-03-01T10:00:00Z", "end"),
        ("/api/v1/health?start=2026-03-01T11:00:00Z&end=2026-03-01T10:00:00Z", "end"),
        ("/api/v1/health?step=90s", "step"),
        ("/api/v1/health?step=0", "step"),
        ("/api/v1/health?step=soon", "step"),
        ("/api/v1/health?bogus=1", "bogus"),
        ("/api/v1/forecast?horizon=abc", "horizon"),
        ("/api/v1/forecast?start=2026-03-01T10:00:00Z&end=2026-03-01T09:00:00Z", "end"),
        ("/api/v1/forecast?colour=blue", "colour"),
        ("/api/v1/status?verbose=1", "verbose"),
    ],
)
def test_malformed_or_unknown_parameters_name_the_field(scenario_settings, make_app, url, field):
    persistence_model(scenario_settings.models_dir, L=30, H=15)
    body = _error(make_app(scenario_settings, Clock(at("21:00"))).test_client(), url)
    assert list(body["errors"]["query"]) == [field]


def test_an_interval_over_the_maximum_is_rejected(scenario_settings, make_app):
    settings = dataclasses.replace(scenario_settings, max_interval_hours=2.0)
    client = make_app(settings, Clock(at("21:00"))).test_client()
    body = _error(client, "/api/v1/health?start=2026-03-01T10:00:00Z&end=2026-03-01T13:00:01Z")
    assert list(body["errors"]["query"]) == ["start"] and "max_interval_hours" in body["message"]
    assert list(_error(client, "/api/v1/health?end=2026-03-01T13:00:00Z&start=2026-03-01T10:00:00Z")["errors"]["query"]) == ["start"]
    assert client.get("/api/v1/health?start=2026-03-01T11:00:00Z&end=2026-03-01T13:00:00Z").status_code == 200
    assert list(_error(client, "/health_data/3")["errors"]["path"]) == ["hours"]


def test_an_unencoded_plus_in_an_offset_is_understood(scenario_settings, make_app):
    client = make_app(scenario_settings, Clock(at("21:00"))).test_client()
    plain = client.get("/api/v1/health?start=2026-03-01T20:00:00+00:00&end=2026-03-01T20:10:00+01:00")  # '+' arrives as ' '
    assert plain.status_code == 422  # end (19:10Z) is before start
    ok = client.get("/api/v1/health?start=2026-03-01T21:00:00+01:00&end=2026-03-01T20:10:00Z")
    assert ok.status_code == 200 and len(ok.get_json()["points"]) == 10


def test_unknown_routes_and_methods_are_json(scenario_settings, make_app):
    client = make_app(scenario_settings).test_client()
    assert _error(client, "/api/v1/nothing", 404)["status"] == "Not Found"
    response = client.delete("/api/v1/status")
    assert response.status_code == 405 and response.get_json()["code"] == 405


def test_database_down_is_503_and_the_api_recovers_by_itself(tmp_path):
    """The database goes away under a running app, then comes back on the same address."""
    port = free_port()
    data_dir = tmp_path / "db"
    server = open_server(data_dir, port=port)
    settings = Settings(mongo_uri=f"mongodb://127.0.0.1:{port}/", database="flaky", models_dir=tmp_path / "models", mongo_timeout_ms=300)
    end = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)
    db = connect(settings, autostart=False)
    simulator.write(db, simulator.simulate(end - dt.timedelta(minutes=90), end, 1, settings), settings)
    persistence_model(settings.models_dir, L=30, H=15)
    clock = Clock(end - dt.timedelta(seconds=20))
    app = create_app(settings, clock=clock, background=False, status_ttl_s=0)
    client = app.test_client()
    try:
        assert client.get("/api/v1/status").status_code == 200
        server.stop()
        clock.now += dt.timedelta(seconds=10)  # past what the cache may answer from memory
        for url in ("/api/v1/status", "/api/v1/health", "/api/v1/forecast", "/current_health/1", "/health_data/1", "/readyz"):
            response = client.get(url)
            assert response.status_code == 503, (url, response.get_data(as_text=True))
            body = response.get_json()
            text = str(body)
            assert "Traceback" not in text
            if url != "/readyz":
                assert "database unavailable" in body["message"] and response.headers["Retry-After"] == "5"
            else:
                assert body["checks"]["database"]["ok"] is False and body["ready"] is False
        assert client.get("/livez").status_code == 200

        server = open_server(data_dir, port=port)  # back, same address, same data
        deadline = time.monotonic() + 20
        while client.get("/api/v1/status").status_code != 200:
            assert time.monotonic() < deadline, "the API did not recover"
            time.sleep(0.2)
        assert client.get("/api/v1/health").status_code == 200
        assert client.get("/readyz").get_json()["ready"] is True
    finally:
        app.extensions["pycemaker"].stop()
        db.client.close()
        server.stop()


# Never a 500, on any operation or page, valid or invalid input: tests/security/test_openapi_fuzz.py (schemathesis).
