"""The database goes away and comes back, on the same address, under the real processes.

Already proven elsewhere (not repeated here):
- every read route answers 503 with a reason and ``Retry-After`` while the database is down, and
  the app recovers by itself (in-process): tests/serving/test_errors.py::test_database_down_is_503_and_the_api_recovers_by_itself;
- the collector writes ahead, survives a SIGKILL mid-outage and backfills, with nothing lost and nothing
  duplicated: tests/reliability/test_collector_crash.py and tests/telemetry/test_collector.py.

Here: the same outage under gunicorn (no worker dies, no worker is replaced), and the live
simulator writing through an outage (every document there, none twice).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time

import pytest
import requests

from telemetry import simulator, store
from telemetry.catalogue import STREAMS
from telemetry.settings import Settings
from tests.reliability.processes import RestartableServer, gunicorn, wait_for, workers_of
from tests.serving.onnx_models import persistence_model

UTC = dt.timezone.utc
READ_ROUTES = ("/api/v1/status", "/api/v1/health", "/api/v1/forecast", "/health_data/1", "/current_health/1", "/predicted_data/1")


@pytest.mark.slow
def test_under_gunicorn_the_api_answers_503_while_the_database_is_down_and_no_worker_dies(tmp_path):
    db_server = RestartableServer(tmp_path / "db")
    settings = Settings(mongo_uri=db_server.uri, database="outage", models_dir=tmp_path / "models")
    db = store.connect(settings, autostart=False)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    # Samples up to a minute ahead, so the status stays fresh for the whole test.
    simulator.write(db, simulator.simulate(now - dt.timedelta(minutes=50), now + dt.timedelta(minutes=1), 3, settings), settings)
    db.client.close()
    persistence_model(settings.models_dir, "v1", L=30, H=15)
    env = {"MONGO_URI": db_server.uri, "PYCEMAKER_DATABASE": "outage", "PYCEMAKER_MODELS_DIR": str(settings.models_dir),
           "PYCEMAKER_MONGO_TIMEOUT_MS": "300"}
    try:
        with gunicorn(env, tmp_path) as (base, process, log_path), requests.Session() as http:
            before = workers_of(process.pid)
            wait_for(lambda: http.get(base + "/readyz", timeout=10).status_code == 200, 30, "ready")
            for url in READ_ROUTES:
                assert http.get(base + url, timeout=10).status_code == 200, url
            # gunicorn's limits (request line 4094 bytes, header field 8190 bytes) refuse oversized requests up front.
            assert requests.get(base + "/api/v1/health?x=" + "a" * 8192, timeout=10).status_code in (400, 414)
            assert requests.get(base + "/livez", headers={"X-Big": "a" * 16384}, timeout=10).status_code in (400, 431)

            db_server.stop()
            # A worker may answer from its recent-minutes cache for up to 5 s (MinuteCache.frame's max_age_s).
            wait_for(lambda: all(http.get(base + url, timeout=10).status_code == 503 for url in READ_ROUTES), 20, "503 everywhere")
            deadline = time.monotonic() + 3  # keep both workers busy with requests that cannot be served
            while time.monotonic() < deadline:
                for url in READ_ROUTES:
                    response = http.get(base + url, timeout=10)
                    assert response.status_code == 503, (url, response.text[:300])
                    body = response.json()
                    assert body["message"].startswith("database unavailable"), body
                    assert f"127.0.0.1:{db_server.port}" in body["message"] or "ServerSelectionTimeout" in body["message"]
                    assert response.headers["Retry-After"] == "5"
                ready = http.get(base + "/readyz", timeout=10)
                assert ready.status_code == 503 and ready.json()["checks"]["database"]["ok"] is False
                assert ready.json()["checks"]["model"]["ok"] is True  # the model is still loaded
                assert http.get(base + "/livez", timeout=10).status_code == 200
                assert http.get(base + "/metrics", timeout=10).status_code == 200

            db_server.start()  # back on the same address, with the same data; nothing is restarted
            wait_for(lambda: http.get(base + "/api/v1/status", timeout=10).status_code == 200, 30, "recovery")
            wait_for(lambda: http.get(base + "/readyz", timeout=10).status_code == 200, 30, "ready again")
            for url in READ_ROUTES:
                assert http.get(base + url, timeout=10).status_code == 200, url
            assert workers_of(process.pid) == before, "a worker died or was replaced"
            assert process.poll() is None
        output = log_path.read_text()
        assert len(set(re.findall(r"Booting worker with pid: (\d+)", output))) == 2, output[-3000:]
        assert "Traceback" not in output and "WORKER TIMEOUT" not in output, output[-3000:]
        assert "status unavailable: MongoDB at 127.0.0.1" in output  # the outage is logged, once per worker
    finally:
        db_server.stop()


class StepClock:
    """The live simulator's clock and sleep: each sleep moves time on by ``step``; ``events`` run at given ticks."""

    def __init__(self, start: dt.datetime, step: dt.timedelta, ticks: int, events: dict | None = None):
        self.now, self.step, self.ticks, self.events = start, step, ticks, events or {}
        self.tick = 0

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, _seconds: float) -> None:
        self.tick += 1
        self.now += self.step
        if self.tick in self.events:
            self.events[self.tick]()

    def done(self) -> bool:
        return self.tick >= self.ticks


def _documents(db) -> dict[str, list[dict]]:
    return {s.collection: list(db[s.collection].find({}, {"_id": 0}).sort("time_series", 1)) for s in STREAMS}


def test_the_live_simulator_writes_through_an_outage_with_nothing_lost_and_nothing_duplicated(tmp_path, caplog):
    """Two runs on the same clock, one with the database stopped for 3 of its 10 ticks: the same documents."""
    db_server = RestartableServer(tmp_path / "db")
    start = dt.datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    step, ticks = dt.timedelta(minutes=1), 10
    results = {}
    try:
        for name, events in (("steady", {}), ("outage", {3: db_server.stop, 6: db_server.start})):
            settings = Settings(mongo_uri=db_server.uri, database=f"live_{name}", mongo_timeout_ms=300)
            db = store.connect(settings, autostart=False)
            clock = StepClock(start, step, ticks, events)
            with caplog.at_level(logging.INFO, logger="telemetry.simulator"):
                simulator.run_live(db, settings, seed=4, interval_s=5.0, stop=clock.done, clock=clock, sleep=clock.sleep)
            results[name] = _documents(db)
            db.client.close()
    finally:
        db_server.stop()

    steady, outage = results["steady"], results["outage"]
    # What one uninterrupted day's simulation holds between the first and the last tick.
    expected = simulator.simulate(start, start + dt.timedelta(days=1), 4, Settings()).samples
    last_tick = start + (ticks - 1) * step
    for stream in STREAMS:
        times = [d["time_series"] for d in outage[stream.collection]]
        assert len(times) == len(set(times)), f"{stream.collection}: duplicated samples"
        frame = expected[stream.collection]
        due = frame[(frame.index >= start) & (frame.index < last_tick)]
        assert len(times) == len(due) > 0, stream.collection
        assert outage[stream.collection] == steady[stream.collection], stream.collection
    messages = [r.getMessage() for r in caplog.records]
    assert sum("samples from" in m and "wait until it answers" in m for m in messages) == 1  # logged once per outage
    assert any("database back" in m for m in messages)
