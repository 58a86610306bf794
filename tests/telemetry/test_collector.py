"""The collector and its Prometheus client, against a stand-in Prometheus API and a real database.

The stand-in speaks Prometheus's HTTP API over TCP (the real client, urllib and all, runs);
the real Prometheus is exercised by tests/e2e/test_stack.py.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import pytest

from telemetry import collector as collector_module
from telemetry import prometheus as prometheus_module
from telemetry.catalogue import STREAMS
from telemetry import wal as wal_module
from telemetry.collector import Collector, grid_ceil, grid_floor, parse_time
from telemetry.prometheus import PrometheusClient, PrometheusUnavailable, QueryError, Sample
from telemetry.settings import Settings
from telemetry.store import connect
from telemetry.wal import WriteAheadLog
from tests.conftest import with_settings
from tests.ports import free_port

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
COLLECTIONS = [s.collection for s in STREAMS]
# Each stream's value as a function of the evaluation time (s since the epoch): None = no series.
Series = Callable[[float], "float | str | list | None"]


def _ramp(base: float, slope: float) -> Series:
    return lambda t: base + slope * ((t - T0.timestamp()) % 600)


DEFAULT_SERIES: dict[str, Series] = {
    "cpu": _ramp(0.2, 0.0005),
    "memory": _ramp(0.4, 0.0001),
    "success": _ramp(10.0, 0.05),
    "fail": lambda t: 0.5,
    "rt": _ramp(0.1, 0.001),
}


class FakePrometheus:
    """Prometheus's /api/v1/query and /api/v1/query_range for a few named expressions."""

    def __init__(self) -> None:
        self.series: dict[str, Series] = dict(DEFAULT_SERIES)
        self.unavailable = False  # answer 503 to everything
        self.fail_next = 0  # answer 503 to the next N requests
        self.requests: list[tuple[str, dict[str, str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                params = dict(urllib.parse.parse_qsl(body))
                fake.requests.append((self.path, params))
                status, payload = fake.answer(self.path, params)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, dict]:
        if self.unavailable or self.fail_next > 0:
            self.fail_next -= 1
            return 503, {"status": "error", "errorType": "timeout", "error": "query timed out"}
        fn = self.series.get(params["query"])
        if fn is None:
            return 400, {"status": "error", "errorType": "bad_data", "error": "1:1: parse error: unexpected"}
        if path == "/api/v1/query":
            t = float(params["time"])
            return 200, _ok("vector", [{"metric": {}, "value": [t, str(v)]} for v in _values(fn(t))])
        start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
        points: list[list] = []
        n = 0
        while start + n * step <= end + 1e-9:
            t = round(start + n * step, 3)
            points += [[t, str(v)] for v in _values(fn(t))]
            n += 1
        return 200, _ok("matrix", [{"metric": {}, "values": points}] if points else [])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _values(v) -> list:
    return [] if v is None else v if isinstance(v, list) else [v]


def _ok(kind: str, result) -> dict:
    return {"status": "success", "data": {"resultType": kind, "result": result}}


@pytest.fixture
def prom() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def csettings(settings: Settings, prom: FakePrometheus, tmp_path: Path) -> Settings:
    """Collector settings: short configurable queries (the stand-in knows them by name)."""
    return with_settings(
        settings,
        prometheus_url=prom.url,
        collect_interval_s=5.0,
        query_cpu="cpu",
        query_memory="memory",
        query_success="success",
        query_fail="fail",
        query_response_time="rt",
        collector_spill_path=tmp_path / "spill" / "collector.jsonl",
    )


class Sleeps(list):
    """A sleep that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_collector(settings: Settings, db, sleeps: Sleeps | None = None) -> Collector:
    return Collector(
        settings,
        PrometheusClient(settings.prometheus_url, timeout_s=2.0),
        db,
        sleep=sleeps if sleeps is not None else Sleeps(),
        db_retry_delays_s=(0.0,),
    )


def docs_of(db, collection: str) -> list[dict]:
    return list(db[collection].find({}, {"_id": 0}).sort("time_series", 1))


# --- the client ------------------------------------------------------------------------


def test_client_reads_a_vector_at_the_requested_time(prom: FakePrometheus) -> None:
    client = PrometheusClient(prom.url)
    at = T0 + dt.timedelta(milliseconds=250)
    sample = client.query("cpu", at)
    assert sample == Sample(at, pytest.approx(0.2 + 0.0005 * 0.25))
    assert sample.time.tzinfo is not None and sample.time.utcoffset() == dt.timedelta(0)
    assert prom.requests[-1] == ("/api/v1/query", {"query": "cpu", "time": f"{int(T0.timestamp())}.250"})


@pytest.mark.parametrize("raw", [None, "NaN", "+Inf", "-Inf"])
def test_client_reports_empty_nan_and_infinite_results_as_missing(prom: FakePrometheus, raw) -> None:
    prom.series["x"] = lambda t: raw
    client = PrometheusClient(prom.url)
    assert client.query("x", T0) is None
    assert client.query_range("x", T0, T0 + dt.timedelta(seconds=20), 5) == []


def test_client_range_leaves_out_missing_points_and_splits_long_ranges(prom, monkeypatch) -> None:
    monkeypatch.setattr(prometheus_module, "MAX_POINTS_PER_QUERY", 4)
    t0 = T0.timestamp()
    prom.series["gappy"] = lambda t: None if int(t - t0) // 5 in (2, 3) else (t - t0) / 5
    samples = PrometheusClient(prom.url).query_range("gappy", T0, T0 + dt.timedelta(seconds=45), 5)
    assert [s.value for s in samples] == [0, 1, 4, 5, 6, 7, 8, 9]
    assert [s.time for s in samples] == [T0 + dt.timedelta(seconds=5 * k) for k in (0, 1, 4, 5, 6, 7, 8, 9)]
    ranges = [p for path, p in prom.requests if path == "/api/v1/query_range"]
    # 10 points, at most 4 per request, no point asked twice.
    assert [(float(r["start"]) - t0, float(r["end"]) - t0) for r in ranges] == [(0, 15), (20, 35), (40, 45)]


def test_client_errors_say_whether_a_retry_can_help(prom: FakePrometheus) -> None:
    client = PrometheusClient(prom.url)
    with pytest.raises(QueryError, match="parse error"):
        client.query("no_such_expression(", T0)
    prom.series["split"] = lambda t: [1.0, 2.0]
    with pytest.raises(QueryError, match="2 series; aggregate"):
        client.query("split", T0)
    prom.fail_next = 1
    with pytest.raises(PrometheusUnavailable, match="503"):
        client.query("cpu", T0)
    with pytest.raises(PrometheusUnavailable, match="unreachable"):
        PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout_s=1).query("cpu", T0)


# --- one tick --------------------------------------------------------------------------


def test_tick_writes_one_document_per_stream_in_the_original_shape(csettings, db) -> None:
    at = T0 + dt.timedelta(seconds=150)
    report = make_collector(csettings, db).tick(at)

    assert (report.collected, report.written, report.missing, report.pending) == (4, 4, (), 0)
    millis = int(at.timestamp() * 1000)
    assert docs_of(db, "cpu_usage") == [
        {
            "time_series": at,
            "origin_time_series": millis,
            "value": pytest.approx(0.275),
            "consume_percent": "27.5%",
            "criticity": "medium",
        }
    ]
    assert docs_of(db, "jvm_memory_usage") == [
        {
            "time_series": at,
            "origin_time_series": millis,
            "value": pytest.approx(0.415),
            "consume_percent": "41.5%",
            "criticity": "medium",
        }
    ]
    # 17.5 + 0.5 req/s is above the 15 cut and below the 30 cut: "medium".
    assert docs_of(db, "request_count") == [
        {
            "time_series": at,
            "origin_time_series": millis,
            "value_success": pytest.approx(17.5),
            "value_fail": 0.5,
            "criticity": "medium",
        }
    ]
    assert docs_of(db, "response_time") == [
        {"time_series": at, "origin_time_series": millis, "value": pytest.approx(0.25), "criticity": "low"}
    ]


def test_missing_data_is_never_written_as_zero(csettings, db, prom) -> None:
    prom.series["memory"] = lambda t: None  # nobody scraped it
    prom.series["rt"] = lambda t: "NaN"  # 0/0: no requests in the window
    prom.series["fail"] = lambda t: None  # no SERVER_ERROR series yet
    collector = make_collector(csettings, db)

    report = collector.tick(T0)
    assert report.missing == ("jvm_memory_usage", "response_time")
    assert docs_of(db, "jvm_memory_usage") == docs_of(db, "response_time") == []
    [requests] = docs_of(db, "request_count")
    assert (requests["value_success"], requests["value_fail"]) == (10.0, 0.0)

    prom.series["success"] = lambda t: None  # no success rate: the request stream is missing
    report = collector.tick(T0 + dt.timedelta(seconds=5))
    assert "request_count" in report.missing
    assert len(docs_of(db, "request_count")) == 1


def test_a_rejected_fail_query_makes_requests_missing_not_zero(csettings, db) -> None:
    settings = with_settings(csettings, query_fail="broken(")
    report = make_collector(settings, db).tick(T0)
    assert report.missing == ("request_count",)
    assert docs_of(db, "request_count") == []
    assert len(docs_of(db, "cpu_usage")) == 1


def test_a_retried_tick_never_duplicates(csettings, db) -> None:
    collector = make_collector(csettings, db)
    first = collector.tick(T0)
    again = collector.tick(T0)
    assert (first.written, again.collected, again.written) == (4, 4, 0)
    assert [len(docs_of(db, c)) for c in COLLECTIONS] == [1, 1, 1, 1]


def test_transient_prometheus_errors_are_retried_with_backoff(csettings, db, prom) -> None:
    prom.fail_next = 2
    sleeps = Sleeps()
    report = make_collector(csettings, db, sleeps).tick(T0)
    assert report.collected == 4 and report.missing == ()
    assert sleeps == [0.25, 0.5]


def test_a_prometheus_outage_is_backfilled_when_it_answers(csettings, db, prom) -> None:
    collector = make_collector(csettings, db)
    prom.unavailable = True
    for k in range(3):
        report = collector.tick(T0 + dt.timedelta(seconds=5 * k))
        assert report.collected == 0 and len(report.missing) == 4
    prom.unavailable = False
    collector.tick(T0 + dt.timedelta(seconds=15))

    expected = [T0 + dt.timedelta(seconds=5 * k) for k in range(4)]
    for name in COLLECTIONS:
        assert [d["time_series"] for d in docs_of(db, name)] == expected
    assert [d["value"] for d in docs_of(db, "cpu_usage")] == pytest.approx([0.2, 0.2025, 0.205, 0.2075])


def test_backfill_stores_what_live_ticks_would_have(csettings, db, settings) -> None:
    live = make_collector(csettings, db)
    for k in (2, 3):
        live.tick(T0 + dt.timedelta(seconds=5 * k))
    # Not on the grid on purpose: the backfill starts at the next grid point.
    found = live.backfill(T0 + dt.timedelta(milliseconds=1), T0 + dt.timedelta(seconds=30))

    assert found == 4 * 5  # grid points 5..25 s, four streams
    times = [T0 + dt.timedelta(seconds=5 * k) for k in range(1, 6)]
    for name in COLLECTIONS:
        assert [d["time_series"] for d in docs_of(db, name)] == times

    other = connect(with_settings(settings, database=settings.database + "_live"), autostart=False)
    try:
        twin = make_collector(csettings, other)
        for t in times:
            twin.tick(t)
        for name in COLLECTIONS:
            assert docs_of(other, name) == docs_of(db, name)
    finally:
        other.client.drop_database(other.name)
        other.client.close()


def test_a_long_backfill_goes_window_by_window(csettings, db, prom, monkeypatch) -> None:
    monkeypatch.setattr(collector_module, "BACKFILL_WINDOW", dt.timedelta(seconds=12))
    found = make_collector(csettings, db).backfill(T0, T0 + dt.timedelta(seconds=60))
    assert found == 4 * 12
    for name in COLLECTIONS:
        assert [d["time_series"] for d in docs_of(db, name)] == [
            T0 + dt.timedelta(seconds=5 * k) for k in range(12)
        ]
    cpu_ranges = [p for path, p in prom.requests if path == "/api/v1/query_range" and p["query"] == "cpu"]
    assert [(float(r["start"]) - T0.timestamp(), float(r["end"]) - T0.timestamp()) for r in cpu_ranges] == [
        (0, 10),
        (15, 25),
        (30, 40),
        (45, 55),
    ]


def test_a_restarted_collector_resumes_from_the_newest_stored_sample(csettings, db) -> None:
    first = make_collector(csettings, db)
    first.tick(T0)
    now = T0 + dt.timedelta(seconds=32)
    resumed = Collector(
        csettings,
        PrometheusClient(csettings.prometheus_url),
        db,
        clock=lambda: now.timestamp(),
        sleep=Sleeps(),
        db_retry_delays_s=(0.0,),
    )
    resumed.resume_from_store()
    resumed.tick(grid_floor(now, 5.0))
    assert [d["time_series"] for d in docs_of(db, "cpu_usage")] == [
        T0 + dt.timedelta(seconds=5 * k) for k in range(7)
    ]


def test_run_ticks_on_the_grid_until_stopped(csettings, db) -> None:
    collector = make_collector(with_settings(csettings, collect_interval_s=0.2), db)
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,))
    thread.start()
    try:
        time.sleep(1.5)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    for name in COLLECTIONS:
        times = [d["time_series"] for d in docs_of(db, name)]
        assert len(times) >= 4
        assert all(d["origin_time_series"] % 200 == 0 for d in docs_of(db, name))
        # Consecutive grid points, none skipped (a late tick's skipped points are backfilled).
        assert all(b - a == dt.timedelta(milliseconds=200) for a, b in itertools.pairwise(times))


# --- the database is down -----------------------------------------------------------


def test_every_tick_is_on_disk_before_the_database_sees_it(csettings, db, monkeypatch) -> None:
    collector = make_collector(csettings, db)
    on_disk_at_write: list[int] = []
    insert = collector_module.store.insert_idempotent

    def watched(database, collection, docs):
        on_disk_at_write.append(len(csettings.collector_spill_path.read_text().splitlines()))
        return insert(database, collection, docs)

    monkeypatch.setattr(collector_module.store, "insert_idempotent", watched)
    report = collector.tick(T0)
    assert report.written == 4 and on_disk_at_write == [4, 4, 4, 4]  # all four fsynced before the first write
    assert csettings.collector_spill_path.stat().st_size == 0 and len(collector.wal) == 0  # emptied once stored


def test_a_database_outage_waits_in_the_write_ahead_file_and_is_stored_on_recovery(csettings, tmp_path) -> None:
    from telemetry.embedded import open_server

    server = open_server(tmp_path / "outage-db", port=0)
    port = server.port
    settings = with_settings(csettings, mongo_uri=server.uri, mongo_timeout_ms=300)
    db = connect(settings, autostart=False)
    collector = make_collector(settings, db)
    try:
        collector.tick(T0)
        server.stop()
        for k in range(1, 5):
            report = collector.tick(T0 + dt.timedelta(seconds=5 * k))
            assert report.written == 0 and report.pending == 4 * k
        wal = settings.collector_spill_path
        assert len(wal.read_text().splitlines()) == 16
        assert _metric(collector, "pycemaker_collector_database_up") == 0
        assert _metric(collector, "pycemaker_collector_wal_samples") == 16

        server = _restart(tmp_path / "outage-db", port)
        report = collector.tick(T0 + dt.timedelta(seconds=25))
        assert (report.written, report.pending) == (4 * 5, 0)
        assert wal.stat().st_size == 0
        for name in COLLECTIONS:
            assert [d["time_series"] for d in docs_of(db, name)] == [
                T0 + dt.timedelta(seconds=5 * k) for k in range(6)
            ]
        assert _metric(collector, "pycemaker_collector_database_up") == 1
    finally:
        db.client.close()
        server.stop()


def test_a_full_write_ahead_file_keeps_the_newest_and_the_rest_comes_from_prometheus(csettings, tmp_path, caplog) -> None:
    """The bound holds ~4 ticks: an outage of 12 drops the oldest, says so, and loses nothing once the database is back."""
    from telemetry.embedded import open_server

    server = open_server(tmp_path / "full-db", port=0)
    port = server.port
    settings = with_settings(csettings, mongo_uri=server.uri, mongo_timeout_ms=300, collector_spill_max_bytes=4096)
    db = connect(settings, autostart=False)
    clock = {"now": T0}
    collector = Collector(settings, PrometheusClient(settings.prometheus_url, timeout_s=2.0), db, sleep=Sleeps(),
                          db_retry_delays_s=(0.0,), clock=lambda: clock["now"].timestamp() + 1)
    ticks = [T0 + dt.timedelta(seconds=5 * k) for k in range(14)]
    try:
        collector.tick(ticks[0])
        server.stop()
        with caplog.at_level(logging.INFO, logger="telemetry.wal"):
            for at in ticks[1:13]:
                clock["now"] = at
                collector.tick(at)
        wal = settings.collector_spill_path
        assert collector.wal.full and wal.stat().st_size <= 4096
        kept = sorted({json.loads(line)["doc"]["time_series"]["$date"] for line in wal.read_text().splitlines()})
        assert kept[-1] == ticks[12].isoformat() and kept[0] > ticks[1].isoformat()  # the newest ticks, not the first
        dropped = 4 * 12 - len(wal.read_text().splitlines())
        assert dropped > 0 and collector.wal.dropped == dropped
        assert _metric(collector, "pycemaker_collector_wal_full") == 1
        assert _metric(collector, "pycemaker_collector_wal_dropped_samples_total") == dropped
        full = [r for r in caplog.records if "is full" in r.getMessage()]
        assert len(full) == 1 and full[0].levelno == logging.WARNING  # said once, not at every drop

        server = _restart(tmp_path / "full-db", port)
        clock["now"] = ticks[13]
        with caplog.at_level(logging.INFO, logger="telemetry.wal"):
            collector.tick(ticks[13])
        for name in COLLECTIONS:  # the dropped ticks were backfilled from Prometheus: every tick once
            assert [d["time_series"] for d in docs_of(db, name)] == ticks, name
        assert _metric(collector, "pycemaker_collector_wal_full") == 0 and wal.stat().st_size == 0
        assert any("empty again" in r.getMessage() for r in caplog.records)
    finally:
        db.client.close()
        server.stop()


def test_a_collector_started_while_the_database_is_down_backfills_from_the_newest_stored_sample(csettings, tmp_path) -> None:
    """Killed mid-outage (its file cut short here, as a kill before the fsync would), restarted while the database
    is still down: once it answers, everything after the newest stored sample comes back from Prometheus."""
    from telemetry.embedded import open_server

    server = open_server(tmp_path / "restart-db", port=0)
    port = server.port
    settings = with_settings(csettings, mongo_uri=server.uri, mongo_timeout_ms=300)
    db = connect(settings, autostart=False)
    clock = {"now": T0}

    def collector() -> Collector:
        return Collector(settings, PrometheusClient(settings.prometheus_url, timeout_s=2.0), db, sleep=Sleeps(),
                         db_retry_delays_s=(0.0,), clock=lambda: clock["now"].timestamp() + 1)

    ticks = [T0 + dt.timedelta(seconds=5 * k) for k in range(8)]
    try:
        first = collector()
        first.tick(ticks[0])
        server.stop()
        for at in ticks[1:4]:
            clock["now"] = at
            first.tick(at)
        settings.collector_spill_path.write_text("")  # whatever the killed run had written ahead is gone

        second = collector()
        second.resume_from_store()  # what run() does at start
        for at in ticks[4:6]:
            clock["now"] = at
            second.tick(at)  # the database is still down: this run cannot know where the last one stopped
        server = _restart(tmp_path / "restart-db", port)
        for at in ticks[6:8]:
            clock["now"] = at
            second.tick(at)
        for name in COLLECTIONS:
            assert [d["time_series"] for d in docs_of(db, name)] == ticks, name
    finally:
        db.client.close()
        server.stop()


def _metric(collector: Collector, name: str) -> float | None:
    return collector.metrics.registry.get_sample_value(name)


def _restart(data_dir: Path, port: int):
    from telemetry.embedded import open_server

    deadline = time.monotonic() + 30
    while True:
        try:
            return open_server(data_dir, port=port)
        except OSError:  # the old socket is still closing
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_samples_waiting_at_exit_are_stored_by_the_next_run(csettings, db) -> None:
    down = with_settings(csettings, mongo_uri=f"mongodb://127.0.0.1:{free_port()}/", mongo_timeout_ms=200)
    first = make_collector(down, connect(down, autostart=False, check=False))
    first.tick(T0)
    first.tick(T0 + dt.timedelta(seconds=5))
    first.close()
    assert len(csettings.collector_spill_path.read_text().splitlines()) == 8

    second = make_collector(csettings, db)
    assert len(second.wal) == 8
    report = second.tick(T0 + dt.timedelta(seconds=10))
    assert report.written == 12 and report.pending == 0
    assert [len(docs_of(db, c)) for c in COLLECTIONS] == [3, 3, 3, 3]


def test_the_write_ahead_file_keeps_order_and_utc_times_and_skips_a_torn_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(wal_module, "FLUSH_CHUNK", 2)
    path = tmp_path / "wal.jsonl"
    wal = WriteAheadLog(path, max_bytes=1 << 20)
    times = [T0 + dt.timedelta(seconds=k) for k in range(5)]
    wal.append([("c", {"time_series": t, "value": float(k)}) for k, t in enumerate(times)])
    with path.open("a") as f:
        f.write('{"collection": "c", "doc": {"time_se')  # a crash mid-append

    reopened = WriteAheadLog(path, max_bytes=1 << 20)
    assert len(reopened) == 6  # the torn line counts until it is read
    later = T0 + dt.timedelta(minutes=1)
    reopened.append([("c", {"time_series": later, "value": 9.0})])  # after the torn line, not glued to it
    written: list[tuple[str, list]] = []
    total = reopened.flush(lambda c, docs: written.append((c, docs)) or len(docs))
    assert total == 6
    flat = [d for _, docs in written for d in docs]
    assert [d["time_series"] for d in flat] == [*times, later]
    assert all(d["time_series"].utcoffset() == dt.timedelta(0) for d in flat)
    assert max(len(docs) for _, docs in written) <= 2  # read back in chunks
    assert path.stat().st_size == 0 and len(reopened) == 0


def test_a_failed_flush_keeps_every_document(tmp_path) -> None:
    wal = WriteAheadLog(tmp_path / "wal.jsonl", max_bytes=1 << 20)
    wal.append([("c", {"time_series": T0 + dt.timedelta(seconds=k)}) for k in range(4)])
    wal.append([("c", {"time_series": T0 + dt.timedelta(seconds=9)})])

    def refuse(collection, docs):
        raise collector_module.DatabaseUnavailable("down")

    with pytest.raises(collector_module.DatabaseUnavailable):
        wal.flush(refuse)
    assert len(wal) == 5 and len(WriteAheadLog(tmp_path / "wal.jsonl", max_bytes=1 << 20)) == 5


# --- grid, times, the command ---------------------------------------------------------


def test_grid_points_are_multiples_of_the_interval_since_the_epoch() -> None:
    t = T0 + dt.timedelta(seconds=7, milliseconds=300)
    assert grid_floor(t, 5.0) == T0 + dt.timedelta(seconds=5)
    assert grid_ceil(t, 5.0) == T0 + dt.timedelta(seconds=10)
    assert grid_ceil(T0, 5.0) == grid_floor(T0, 5.0) == T0
    assert grid_floor(t, 0.5) == T0 + dt.timedelta(seconds=7)


def test_times_without_a_zone_are_refused() -> None:
    assert parse_time("2024-05-01T12:00Z") == T0
    assert parse_time("2024-05-01T14:00+02:00") == T0
    with pytest.raises(ValueError, match="no time zone"):
        parse_time("2024-05-01T12:00")


def write_config(settings: Settings, path: Path, interval_s: float) -> Path:
    """A TOML config for the CLI (main() reads it instead of the cached process settings)."""
    names = (
        "mongo_uri",
        "database",
        "prometheus_url",
        "query_cpu",
        "query_memory",
        "query_success",
        "query_fail",
        "query_response_time",
        "collector_spill_path",
    )
    lines = [f"{name} = {json.dumps(str(getattr(settings, name)))}" for name in names]
    path.write_text("\n".join([*lines, f"collect_interval_s = {interval_s}"]) + "\n")
    return path


def test_collect_command_backfills_an_interval(csettings, db, tmp_path) -> None:
    from pycemaker.cli import main

    config = str(write_config(csettings, tmp_path / "pycemaker.toml", 5.0))
    rc = main(
        ["--config", config, "collect", "--start", "2024-05-01T12:00:00Z", "--end", "2024-05-01T12:01:00Z"]
    )
    assert rc == 0
    for name in COLLECTIONS:
        assert len(docs_of(db, name)) == 12
    assert main(["--config", config, "collect", "--start", "2024-05-01T12:00:00"]) == 2  # no zone


def test_collect_once_says_whether_it_collected(csettings, db, prom, tmp_path) -> None:
    from pycemaker.cli import main

    config = str(write_config(csettings, tmp_path / "pycemaker.toml", 1.0))
    assert main(["--config", config, "collect", "--once"]) == 0
    assert [len(docs_of(db, c)) for c in COLLECTIONS] == [1, 1, 1, 1]
    prom.unavailable = True
    assert main(["--config", config, "collect", "--once"]) == 1


def test_default_queries_are_micrometers() -> None:
    queries = {q.stream.collection: dict(q.exprs) for q in collector_module.stream_queries(Settings())}
    assert queries["cpu_usage"] == {"cpu": "process_cpu_usage"}
    assert queries["jvm_memory_usage"] == {"memory": "sum(jvm_memory_used_bytes)/sum(jvm_memory_max_bytes)"}
    assert 'outcome="SUCCESS"' in queries["request_count"]["req_success"]
    assert 'outcome="SERVER_ERROR"' in queries["request_count"]["req_fail"]
    rt = queries["response_time"]["response_time"]
    assert rt.count("irate(") == 2 and "_seconds_sum" in rt and " / " in rt
