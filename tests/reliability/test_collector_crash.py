"""The collector is SIGKILLed in the middle of a database outage, restarted, and the database comes back:
every sample Prometheus holds for the outage is in the database exactly once.

Real parts throughout: the demo target under light traffic, Debian's Prometheus scraping it
every second, a SecantusDB server stopped and started again on the same address, and
``pycemaker collect`` (1 s ticks) as a subprocess with a write-ahead file small enough to fill
during the outage (~5 s of samples), so both ways back are exercised: the file's replay and the
Prometheus backfill of what it dropped or what the killed run never got to write.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import requests

from telemetry import store
from telemetry.catalogue import STREAMS
from telemetry.collector import grid_ceil, grid_floor, stream_queries, stream_values
from telemetry.prometheus import PrometheusClient
from telemetry.settings import Settings
from tests.conftest import REPO, needs_prometheus
from tests.e2e.stack import Service, child_env, services, start, start_target_and_prometheus, wait_until  # noqa: F401
from tests.ports import free_port
from tests.reliability.processes import RestartableServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    needs_prometheus,
]
UTC = dt.timezone.utc
WAL_BYTES = 4096  # the smallest bound: about 5 ticks of 4 documents


def metric(url: str, name: str) -> float | None:
    """One unlabelled sample from a /metrics page (None while it does not answer)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def prometheus_samples(prometheus_url: str, start: dt.datetime, end: dt.datetime) -> dict[str, set[dt.datetime]]:
    """Per collection, the grid points in [start, end] where Prometheus holds every column of the stream."""
    client = PrometheusClient(prometheus_url)
    out = {}
    for query in stream_queries(Settings()):
        found = {column: {s.time: s for s in client.query_range(expr, start, end, 1.0)} for column, expr in query.exprs.items()}
        times = sorted(set().union(*(set(by_time) for by_time in found.values())))
        out[query.stream.collection] = {
            t for t in times if stream_values(query.stream, {c: by_time.get(t) for c, by_time in found.items()}) is not None
        }
    return out


def test_a_collector_killed_mid_outage_loses_nothing_and_duplicates_nothing(tmp_path: Path, services: list[Service]) -> None:
    target_url, prometheus_url = start_target_and_prometheus(tmp_path, services)
    servers = list(services)  # the target and Prometheus: a wait fails early if one of them dies
    stop_traffic = threading.Event()

    def traffic() -> None:  # the request streams exist only while the app serves requests
        with requests.Session() as http:
            while not stop_traffic.wait(0.05):
                try:
                    http.get(target_url + "/usuarios", timeout=2)
                except requests.RequestException:
                    pass

    load = threading.Thread(target=traffic, daemon=True)
    load.start()
    db_server = RestartableServer(tmp_path / "db")
    settings = Settings(mongo_uri=db_server.uri, database="crash", mongo_timeout_ms=300)
    db = store.connect(settings, autostart=False)
    metrics_port = free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    wal = tmp_path / "collector-wal.jsonl"
    env = child_env(MONGO_URI=db_server.uri, PYCEMAKER_DATABASE="crash", PYCEMAKER_MONGO_TIMEOUT_MS="300",
                    PYCEMAKER_COLLECTOR_SPILL_PATH=str(wal), PYCEMAKER_COLLECTOR_SPILL_MAX_BYTES=str(WAL_BYTES),
                    PYCEMAKER_COLLECTOR_METRICS_PORT=str(metrics_port))
    command = [sys.executable, "-m", "pycemaker", "collect", "--interval", "1", "--prometheus-url", prometheus_url]

    def newest(stream) -> dt.datetime | None:
        now = dt.datetime.now(UTC)
        return store.newest_sample_time(db, stream, before=now, after=now - dt.timedelta(hours=1))

    try:
        first = start("collector-1", command, tmp_path, cwd=REPO, env=env)
        services.append(first)
        wait_until(lambda: all(newest(s) for s in STREAMS), 60, "all four streams stored", [*servers, first])
        # Some ticks more before the outage: the span checked below starts 4 s before it, after the first tick.
        stored_at = dt.datetime.now(UTC)
        wait_until(lambda: all(newest(s) >= stored_at + dt.timedelta(seconds=5) for s in STREAMS), 30,
                   "five more seconds stored", [*servers, first])

        db_server.stop()
        down_at = dt.datetime.now(UTC)
        wait_until(lambda: wal.is_file() and wal.stat().st_size > 0 and metric(metrics_url, "pycemaker_collector_database_up") == 0,
                   20, "ticks written ahead while the database is down", [*servers, first])
        wait_until(lambda: (metric(metrics_url, "pycemaker_collector_wal_samples") or 0) >= 8, 20, "two ticks waiting", [*servers, first])
        os.killpg(first.process.pid, signal.SIGKILL)  # no handler, no flush: only what is on disk survives
        first.process.wait(10)
        assert first.process.returncode == -signal.SIGKILL
        waiting = len(wal.read_text().splitlines())
        assert waiting >= 8

        second = start("collector-2", command, tmp_path, cwd=REPO, env=env)
        services.append(second)
        running = [*servers, second]
        wait_until(lambda: metric(metrics_url, "pycemaker_collector_wal_full") == 1, 30, "the write-ahead file full", running)
        assert wal.stat().st_size <= WAL_BYTES
        assert (metric(metrics_url, "pycemaker_collector_wal_dropped_samples_total") or 0) > 0

        db_server.start()  # back on the same address, with the same data
        up_at = dt.datetime.now(UTC)
        wait_until(lambda: metric(metrics_url, "pycemaker_collector_wal_full") == 0, 90, "the waiting samples stored", running)
        # A tick backfills before the next one runs: live ticks after the outage mean the backfill is done.
        wait_until(lambda: all((t := newest(s)) and t >= up_at + dt.timedelta(seconds=5) for s in STREAMS),
                   30, "live ticks after the outage", running)
        assert second.stop() == 0, second.tail()
    finally:
        stop_traffic.set()
        load.join(5)

    log = second.log_path.read_text()
    assert "is full" in log and " ERROR " not in log, log[-3000:]
    # The outage, a few seconds on either side: the kill, the restart and both ways back inside it.
    start_at = grid_ceil(down_at - dt.timedelta(seconds=4), 1.0)
    end_at = grid_floor(up_at + dt.timedelta(seconds=3), 1.0)
    expected = prometheus_samples(prometheus_url, start_at, end_at)
    try:
        for stream in STREAMS:
            docs = list(db[stream.collection].find({"time_series": {"$gte": start_at, "$lte": end_at}}, {"_id": 0, "time_series": 1}))
            times = [d["time_series"] for d in docs]
            assert len(times) == len(set(times)), f"{stream.collection}: a sample stored twice"
            want = expected[stream.collection]
            assert len(want) >= (end_at - start_at).total_seconds() - 2, f"{stream.collection}: Prometheus holds too little"
            assert set(times) == want, (stream.collection, sorted(want - set(times))[:5], sorted(set(times) - want)[:5])
    finally:
        db.client.close()
        db_server.stop()
