"""What a cold forecast makes the database read: bounded by the model's input span, never the store's depth.

On the embedded server (SecantusDB) a query costs every document in its filter's range, even a
sorted ``find_one`` (it decodes and sorts the whole range before the limit). The forecast route
once took 9-15 s on a 3-day store: the worker's "newest sample" query was bounded below only by
the newest sample it had seen before, and when history was written up to now under a worker
that had last seen an older store, that range covered all of it. Here every ``find`` a cold
worker sends is recorded (pymongo command monitoring) and the documents in its range are counted.
"""

from __future__ import annotations

import datetime as dt

import pytest
from pymongo import MongoClient, monitoring

from telemetry import store
from telemetry.catalogue import CPU, ROLLUPS_COLLECTION, STREAMS
from tests.serving.conftest import SCENARIO_START, Clock, at
from tests.serving.onnx_models import persistence_model

UTC = dt.timezone.utc


class Finds(monitoring.CommandListener):
    """Every ``find`` sent: (collection, filter)."""

    def __init__(self) -> None:
        self.finds: list[tuple[str, dict]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.finds.append((event.command["find"], dict(event.command.get("filter", {}))))

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


def documents_in_ranges(db, finds: list[tuple[str, dict]]) -> int:
    """How many documents the server had to read to answer these finds (each filter's matches)."""
    return sum(db[collection].count_documents(query) for collection, query in finds)


def samples_between(db, start: dt.datetime, end: dt.datetime) -> int:
    return sum(db[s.collection].count_documents({"time_series": {"$gte": start, "$lt": end}}) for s in STREAMS)


@pytest.mark.parametrize("history", ["in place", "written under a running worker"])
def test_a_cold_forecast_reads_the_input_span_not_the_store(scenario_settings, make_app, history):
    persistence_model(scenario_settings.models_dir, "v1", L=120, H=60)
    listener = Finds()
    client = MongoClient(scenario_settings.mongo_uri, tz_aware=True, event_listeners=[listener])
    db = client[scenario_settings.database]
    now = at("23:30:10")
    clock = Clock(now)
    try:
        app = make_app(scenario_settings, clock, db=db)
        http = app.test_client()
        if history == "written under a running worker":
            # The worker first saw the store before any of its 8 hours existed, then the clock moves to
            # 23:30: to the worker, 7.5 hours of history appeared behind the newest sample it knew of.
            clock.now = SCENARIO_START - dt.timedelta(hours=1)
            assert http.get("/api/v1/status").get_json()["reason"] == "no_data"
            clock.now = now
        listener.finds.clear()

        response = http.get("/api/v1/forecast?horizon=60")
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["origin"] == "2026-03-01T23:30:00+00:00" and body["input_coverage"] == 1.0
        # The samples, and the recent minutes' rows where they are stored (telemetry/rollups.py).
        assert {c for c, _ in listener.finds} - {ROLLUPS_COLLECTION} == {s.collection for s in STREAMS}

        read = documents_in_ranges(db, listener.finds)
        recent = app.extensions["pycemaker"].cache.recent_minutes
        # The recent frame (3 h) plus the newest-sample probe: the first 10-minute window, twice at most.
        bound = samples_between(db, now - dt.timedelta(minutes=recent + 20), now)
        store_size = samples_between(db, SCENARIO_START, now)
        assert read <= bound < store_size / 2, (read, bound, store_size)

        listener.finds.clear()
        assert http.get("/api/v1/forecast?horizon=60").status_code == 200  # warm: the minutes and the status are cached
        assert documents_in_ranges(db, listener.finds) <= samples_between(db, now - dt.timedelta(minutes=15), now)
    finally:
        client.close()


def test_the_newest_sample_is_found_window_by_window(db, settings):
    """A newest sample days back: found, with no query covering more than 3 hours."""
    listener = Finds()
    client = MongoClient(settings.mongo_uri, tz_aware=True, event_listeners=[listener])
    watched = client[settings.database]
    now = dt.datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    old = now - dt.timedelta(days=2, minutes=7)
    store.ensure_indexes(db)
    db[CPU.collection].insert_many([{"time_series": old - dt.timedelta(seconds=5 * k), "value": 0.5} for k in range(10_000)])
    try:
        assert store.newest_sample_time(watched, CPU, before=now, after=now - dt.timedelta(days=7)) == old
        widths = [q["time_series"]["$lte"] - q["time_series"]["$gt"] for _, q in listener.finds]
        # 10 min, 30 min, 1 h, then 3 h steps; each asked of the default service's two spellings (no field, its name).
        assert max(widths) == dt.timedelta(hours=3) and len(widths) == 2 * (3 + 16)
        assert documents_in_ranges(db, listener.finds) < 10_000 / 4  # the hit window's, not the collection's
        assert store.newest_sample_time(watched, CPU, before=now, after=old) is None  # `after` is exclusive
        assert store.newest_sample_time(watched, CPU, before=old, after=old - dt.timedelta(minutes=1)) == old
    finally:
        client.close()


def test_a_status_reads_the_newest_steps_samples_once(scenario_settings, make_app):
    """A recomputed status reads the newest minute's samples once: they give the newest sample times (whether
    anything changed) and that minute's frame row (MinuteCache's sample window), and the status equals a cold one."""
    persistence_model(scenario_settings.models_dir, "v1", L=120, H=60)
    listener = Finds()
    client = MongoClient(scenario_settings.mongo_uri, tz_aware=True, event_listeners=[listener])
    db = client[scenario_settings.database]
    clock = Clock(at("23:30:10"))
    try:
        rt = make_app(scenario_settings, clock, db=db).extensions["pycemaker"]
        rt.status.refresh()
        clock.now += dt.timedelta(seconds=20)  # new samples, the same minute
        listener.finds.clear()
        warm = rt.status.refresh()
        reads = [collection for collection, _ in listener.finds]
        spellings = len(rt.cache.service.filters())  # the default service's samples with and without its name
        assert all(reads.count(s.collection) == spellings for s in STREAMS), reads
        assert reads.count(ROLLUPS_COLLECTION) == 1  # the closed minutes re-read (a late sample may have changed one)
        cold = make_app(scenario_settings, Clock(clock.now), db=db).extensions["pycemaker"].status.refresh()
        assert warm.body == cold.body and warm.status.current.health is not None
    finally:
        client.close()
