"""A collector tick for many services: one insert per stream collection and one rollup pass for all of them
(telemetry/collector.py, :func:`telemetry.rollups.update_services`) store exactly what the per-service path did."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Mapping

import numpy as np
import pandas as pd

from telemetry import rollups, store
from telemetry.catalogue import ROLLUPS_COLLECTION, STREAMS, to_document
from telemetry.collector import Collector
from telemetry.frames import Cadence, load_minute_frame, raw_minute_frame
from telemetry.prometheus import Sample
from telemetry.services import DEFAULT_SERVICE, service_named
from telemetry.settings import Settings
from telemetry.targets import SERVICE_LABEL
from tests.conftest import with_settings

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SERVICES = ("alpha", "beta", "gamma", "delta")
CADENCE = Cadence(1, 15.0)
COLUMNS = {"cpu": "cpu", "memory": "memory", "success": "req_success", "fail": "req_fail", "rt": "response_time"}


class StubPrometheus:
    """Answers each combined query with one series per service present at that instant.

    ``gaps``: (service, seconds after T0) -> the columns with no series then (None: every column).
    """

    base_url = "stub"

    def __init__(self, gaps: Mapping[tuple[str, int], tuple[str, ...] | None] = {}) -> None:
        self.gaps = dict(gaps)

    def query_series(self, expr: str, at: dt.datetime) -> list[tuple[dict[str, str], Sample | None]]:
        column = next(c for name, c in COLUMNS.items() if expr.startswith(f"label_replace({name}{{"))
        offset = round((at - T0).total_seconds())
        out = []
        for i, service in enumerate(SERVICES):
            gap = self.gaps.get((service, offset), ())
            if gap is None or column in gap:
                continue
            value = 0.2 + 0.1 * i + 0.01 * np.sin(offset / 30 + i) if column != "req_success" else 10.0 + i + offset / 60
            out.append(({SERVICE_LABEL: service}, Sample(at, float(value))))
        return out

    def query_range_series(self, expr: str, start: dt.datetime, end: dt.datetime, step_s: float):
        per_service: dict[str, list[Sample]] = {}
        at = start
        while at <= end:
            for labels, sample in self.query_series(expr, at):
                per_service.setdefault(labels[SERVICE_LABEL], []).append(sample)
            at += dt.timedelta(seconds=step_s)
        return [({SERVICE_LABEL: name}, samples) for name, samples in per_service.items()]


def _settings(settings, tmp_path, name: str):
    return with_settings(
        settings, database=f"{settings.database}_{name}", collect_interval_s=5.0,
        query_cpu="cpu", query_memory="memory", query_success="success", query_fail="fail", query_response_time="rt",
        collector_targets="; ".join(f'{s}={{job="{s}"}}' for s in SERVICES),
        collector_spill_path=tmp_path / name / "collector.jsonl",
    )


class PerServiceCollector(Collector):
    """The write path before batching, as the reference: each service's documents inserted apart, then each
    service's rollups updated apart (:func:`telemetry.rollups.update`)."""

    def _write(self, collection: str, docs: list[dict]) -> int:
        written = 0
        for name in dict.fromkeys(d.get("service") for d in docs):
            written += super()._write(collection, [d for d in docs if d.get("service") == name])
        return written

    def _update_rollups(self) -> None:
        for name, (first, last) in list(self._rollup_spans.items()):
            rollups.update(self.db, self.settings, first - dt.timedelta(seconds=self.interval_s), last, self._cadence,
                           service=service_named(name, self.settings.default_service), now=max(self.now(), last))
            del self._rollup_spans[name]


def _run(cls, settings, client, ticks: list[dt.datetime]) -> tuple[Collector, list[int]]:
    db = store.connect(settings, autostart=False)
    now = {"t": ticks[0]}
    collector = cls(settings, client, db, clock=lambda: now["t"].timestamp() + 0.5, sleep=lambda s: None,
                    db_retry_delays_s=(0.0,))
    written = []
    for t in ticks:
        now["t"] = t
        written.append(collector.tick(t).written)
    return collector, written


def _stored(db) -> dict[str, list[dict]]:
    out = {s.collection: list(db[s.collection].find({}, {"_id": 0}).sort([("service", 1), ("time_series", 1)])) for s in STREAMS}
    out[ROLLUPS_COLLECTION] = list(db[ROLLUPS_COLLECTION].find({}, {"_id": 0}).sort([("service", 1), ("time", 1)]))
    return out


def test_a_batched_tick_stores_the_documents_and_rows_of_the_per_service_path(settings, tmp_path) -> None:
    gaps = {
        ("beta", 60): None, ("beta", 65): None,  # beta missing from two ticks, the first of a minute among them
        ("gamma", 120): ("cpu", "memory"),  # gamma's cpu and memory series absent at the first tick of minute 2
        ("delta", 60): ("req_fail",),  # an absent fail series is 0 failures/s
    }
    ticks = [T0 + dt.timedelta(seconds=5 * k) for k in range(0, 3 * 12 + 2)]
    retried = ticks[:13] + [ticks[12]] + ticks[13:25] + [ticks[24], ticks[24]] + ticks[25:]  # a retried tick, twice
    batched_settings, reference_settings = _settings(settings, tmp_path, "batched"), _settings(settings, tmp_path, "reference")
    batched, written = _run(Collector, batched_settings, StubPrometheus(gaps), retried)
    reference, reference_written = _run(PerServiceCollector, reference_settings, StubPrometheus(gaps), retried)
    try:
        got, expected = _stored(batched.db), _stored(reference.db)
        assert written == reference_written
        assert written[13] == 0 and written[26] == 0 and written[27] == 0  # the retried ticks stored nothing new
        assert written[0] == 4 * len(SERVICES)
        for collection in expected:
            assert got[collection] == expected[collection], collection
        cpu = got["cpu_usage"]
        assert len(cpu) == len(ticks) * len(SERVICES) - 2 - 1  # beta's two ticks, gamma's cpu at 12:02:00
        assert {d["service"] for d in cpu} == set(SERVICES)
        rows = got[ROLLUPS_COLLECTION]
        # Every service's ended minutes (12:00, 12:01, 12:02) and the minute before the first tick (empty), but
        # beta's 12:00: no sample of beta's closed it (readers compute it from the samples, as before batching).
        assert {(r["service"], r["time"]) for r in rows} == {
            (s, T0 + dt.timedelta(minutes=m)) for s in SERVICES for m in range(-1, 3)
        } - {("beta", T0)}
        beta_01 = next(r for r in rows if r["service"] == "beta" and r["time"] == T0 + dt.timedelta(minutes=1))
        assert beta_01["computed_at"] == T0 + dt.timedelta(minutes=2, seconds=0.5)
        assert beta_01["coverage"] == 1.0  # 12:01:00 and 12:01:05 missing, covered by 12:00:55 (15-s tolerance)
        for name in SERVICES:
            service = service_named(name)
            fast = load_minute_frame(batched.db, T0, T0 + dt.timedelta(minutes=3), batched_settings, CADENCE, service)
            raw = raw_minute_frame(batched.db, T0, T0 + dt.timedelta(minutes=3), batched_settings, CADENCE, service)
            pd.testing.assert_frame_equal(fast, raw, check_exact=True)
    finally:
        for collector in (batched, reference):
            collector.db.client.drop_database(collector.db.name)
            collector.db.client.close()


def test_a_replayed_write_ahead_file_stores_nothing_twice_and_the_same_rows(settings, tmp_path) -> None:
    batched_settings = _settings(settings, tmp_path, "replay")
    collector, _ = _run(Collector, batched_settings, StubPrometheus(), [T0 + dt.timedelta(seconds=5 * k) for k in range(14)])
    try:
        before = _stored(collector.db)
        # The same documents again through the write-ahead file (a crash after the insert, before the file was emptied).
        items = [(c, d) for c, docs in before.items() if c != ROLLUPS_COLLECTION for d in docs]
        collector._append(items)
        assert collector.flush(force=True) == 0
        after = _stored(collector.db)
        assert {c: len(d) for c, d in after.items()} == {c: len(d) for c, d in before.items()}
        strip = lambda rows: [{k: v for k, v in r.items() if k != "computed_at"} for r in rows]  # noqa: E731
        assert strip(after[ROLLUPS_COLLECTION]) == strip(before[ROLLUPS_COLLECTION])
    finally:
        collector.db.client.drop_database(collector.db.name)
        collector.db.client.close()


def _docs(service_field: str | None, times: list[dt.datetime], level: float) -> dict[str, list[dict]]:
    cuts = Settings().cuts()
    out: dict[str, list[dict]] = {}
    for k, t in enumerate(times):
        values = {"cpu": level + 0.001 * k, "memory": level / 2, "req_success": 10 + k % 7, "req_fail": k % 3,
                  "response_time": 0.1 + 0.002 * (k % 11)}
        for stream in STREAMS:
            doc = to_document(stream, t, values, cuts[stream.flag])
            if service_field is not None:
                doc["service"] = service_field
            out.setdefault(stream.collection, []).append(doc)
    return out


def test_update_services_writes_the_rows_of_update_service_by_service(settings, db, monkeypatch) -> None:
    """Spans of different lengths (a tick, a replay, one longer than a batch), the default service's samples with and
    without its name at the same instants, services not updated in the same window, groups split into reads."""
    every5 = [T0 + dt.timedelta(seconds=5 * k) for k in range(12 * 20)]
    layout = {
        None: every5[::2],  # the default service, unnamed ...
        "default": every5[1::2] + every5[:40:4],  # ... and named, partly at the same instants (the unnamed one wins)
        "alpha": every5,
        "beta": every5[30:90],
        "gamma": [t + dt.timedelta(seconds=2) for t in every5[::3]],
        "long": every5[1:],
        "bystander": every5,  # not updated: its samples are read in the same window and left out
    }
    for field, times in layout.items():
        for collection, docs in _docs(field, times, 0.3 if field is None else 0.5).items():
            store.insert_idempotent(db, collection, docs)
    now = T0 + dt.timedelta(minutes=20, seconds=1)
    spans = [
        rollups.Span(DEFAULT_SERVICE, T0 + dt.timedelta(minutes=2), T0 + dt.timedelta(minutes=5), now),
        rollups.Span(service_named("alpha"), T0 + dt.timedelta(minutes=2), T0 + dt.timedelta(minutes=5), now),
        rollups.Span(service_named("beta"), T0 + dt.timedelta(minutes=2), T0 + dt.timedelta(minutes=5), now),
        rollups.Span(service_named("gamma"), T0 + dt.timedelta(minutes=19, seconds=55), T0 + dt.timedelta(minutes=20),
                     T0 + dt.timedelta(minutes=20, seconds=1)),
        rollups.Span(service_named("long"), T0, T0 + dt.timedelta(minutes=19), now - dt.timedelta(minutes=1)),
    ]
    monkeypatch.setattr(rollups, "BATCH_ROWS", 8)  # 4 steps a row: two services a read
    batched = rollups.update_services(db, settings, spans, CADENCE)
    got = list(db[ROLLUPS_COLLECTION].find({}, {"_id": 0}).sort([("service", 1), ("time", 1), ("computed_at", 1)]))
    db[ROLLUPS_COLLECTION].delete_many({})
    single = sum(rollups.update(db, settings, s.first, s.last, CADENCE, s.service, s.now) for s in spans)
    expected = list(db[ROLLUPS_COLLECTION].find({}, {"_id": 0}).sort([("service", 1), ("time", 1), ("computed_at", 1)]))
    assert batched == single > 0
    assert got == expected
    assert {r["service"] for r in got} == {None, "alpha", "beta", "gamma", "long"}
    assert len([r for r in got if r["service"] == "long"]) == 19 > rollups.BATCH_STEPS
    assert not any(r["service"] == "bystander" for r in got)
    default_rows = [r for r in got if r["service"] is None]
    assert [r["time"] for r in default_rows] == [T0 + dt.timedelta(minutes=m) for m in range(2, 6)]
    assert [r["time"] for r in got if r["service"] == "gamma"] == [T0 + dt.timedelta(minutes=19)]


def test_a_failed_rollup_pass_keeps_every_span_for_the_next_write(settings, tmp_path, monkeypatch) -> None:
    batched_settings = _settings(settings, tmp_path, "failing")
    collector, _ = _run(Collector, batched_settings, StubPrometheus(), [T0 + dt.timedelta(seconds=5 * k) for k in range(12)])
    try:
        def down(*args, **kwargs):
            raise store.DatabaseUnavailable("down")

        monkeypatch.setattr(rollups, "update_services", down)
        collector._clock = lambda: (T0 + dt.timedelta(minutes=1, seconds=0.5)).timestamp()
        collector.tick(T0 + dt.timedelta(minutes=1))
        assert set(collector._rollup_spans) == set(SERVICES)
        assert collector.db[ROLLUPS_COLLECTION].count_documents({"time": T0}) == 0
        monkeypatch.undo()
        collector._clock = lambda: (T0 + dt.timedelta(minutes=1, seconds=5.5)).timestamp()
        collector.tick(T0 + dt.timedelta(minutes=1, seconds=5))
        assert collector._rollup_spans == {}
        assert collector.db[ROLLUPS_COLLECTION].count_documents({"time": T0}) == len(SERVICES)
    finally:
        collector.db.client.drop_database(collector.db.name)
        collector.db.client.close()


def test_minute_frames_of_many_services_are_minute_frame_service_by_service(settings) -> None:
    """Irregular times, NaN values, a stream missing, a service with no samples, a partial step, coarser cadence."""
    from telemetry.fleet_framing import minute_frames
    from telemetry.framing import minute_frame

    rng = np.random.default_rng(7)
    start, end = T0, T0 + dt.timedelta(minutes=9, seconds=30)
    every = []
    for i in range(6):
        per = {}
        for stream in STREAMS:
            if (i, stream.collection) in {(2, "jvm_memory_usage"), (4, "request_count")} or i == 5:
                continue
            seconds = np.sort(rng.choice(np.arange(-20, 590, 0.5 + i), size=60 + 10 * i, replace=False))
            index = pd.DatetimeIndex([T0 + dt.timedelta(seconds=float(x)) for x in seconds], name="time")
            data = {c: rng.uniform(0, 1.5, len(index)) * (30 if c == "req_success" else 1) for c in stream.columns}
            for c in data:
                data[c][rng.random(len(index)) < 0.1] = np.nan
            per[stream.collection] = pd.DataFrame(data, index=index)
        every.append(per)
    for cadence in (CADENCE, Cadence(2, 45.0)):
        frames = minute_frames(every, start, end, settings, cadence)
        for per, frame in zip(every, frames):
            expected = minute_frame(per, start, end, settings, cadence)
            pd.testing.assert_frame_equal(frame, expected, check_exact=True, check_freq=True)
        assert frames[0]["health"].notna().sum() > 3 and frames[5]["coverage"].eq(0.0).all()
        assert frames[2]["memory"].isna().all() and frames[2]["cpu"].notna().sum() > 3


def test_a_tick_of_every_service_costs_one_insert_per_collection_and_one_rollup_pass(settings, tmp_path, monkeypatch) -> None:
    collector, _ = _run(Collector, _settings(settings, tmp_path, "trips"), StubPrometheus(), [T0 + dt.timedelta(seconds=5 * k) for k in range(12)])
    calls: dict[str, list] = {"insert": [], "read": [], "upsert": []}
    for name, module, attr in (("insert", store, "insert_idempotent"), ("read", store, "read_window"), ("upsert", rollups, "_upsert")):
        original = getattr(module, attr)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name].append(args)
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, attr, counted)
    try:
        at = T0 + dt.timedelta(minutes=1)
        collector._clock = lambda: (at + dt.timedelta(seconds=0.5)).timestamp()
        assert collector.tick(at).written == 4 * len(SERVICES)
        assert sorted(args[1] for args in calls["insert"]) == sorted(s.collection for s in STREAMS)
        assert all(len(args[2]) == len(SERVICES) for args in calls["insert"])
        assert len(calls["read"]) == len(STREAMS) and len(calls["upsert"]) == 1
        assert len(calls["upsert"][0][1]) == len(SERVICES)  # every service's row of 12:00 in one bulk write
    finally:
        collector.db.client.drop_database(collector.db.name)
        collector.db.client.close()


def test_while_run_ticks_its_rollup_thread_writes_the_rows_and_no_tick_waits_for_them(settings, tmp_path, monkeypatch) -> None:
    """``run`` on a clock 50 s into a minute, ticking every second: the minute's rows are computed by the collector's
    rollup thread (never the ticking one) and are the raw path's frame; the stop leaves no span behind."""
    run_settings = with_settings(_settings(settings, tmp_path, "thread"), collect_interval_s=1.0)
    db = store.connect(run_settings, autostart=False)
    offset = time.time() - (T0 + dt.timedelta(seconds=50)).timestamp()
    collector = Collector(run_settings, StubPrometheus(), db, clock=lambda: time.time() - offset, db_retry_delays_s=(0.0,))
    passes: list[str] = []
    update = rollups.update_services

    def watched(*args, **kwargs):
        passes.append(threading.current_thread().name)
        return update(*args, **kwargs)

    monkeypatch.setattr(rollups, "update_services", watched)
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), name="ticking")
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while collector.now() < T0 + dt.timedelta(seconds=64) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=60)
    try:
        assert not thread.is_alive()
        assert "collector-rollups" in passes and "ticking" not in passes
        assert collector._rollup_spans == {}
        rows = {(r["service"], r["time"]) for r in db[ROLLUPS_COLLECTION].find({"time": T0})}
        assert rows == {(name, T0) for name in SERVICES}
        for name in SERVICES:
            service = service_named(name)
            fast = load_minute_frame(db, T0, T0 + dt.timedelta(minutes=1), run_settings, CADENCE, service)
            raw = raw_minute_frame(db, T0, T0 + dt.timedelta(minutes=1), run_settings, CADENCE, service)
            pd.testing.assert_frame_equal(fast, raw, check_exact=True)
            assert fast["health"].notna().all()
    finally:
        db.client.drop_database(db.name)
        db.client.close()
