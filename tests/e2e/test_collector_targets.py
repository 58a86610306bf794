"""Many services from one real Prometheus: one query round per tick, each series under its service.

Three small exporters (in this process, Micrometer's metric names, known values) are scraped
every second by a real Prometheus under two jobs; the collector (real client, real database)
has three targets: ``checkout`` (job checkout), ``api-eu`` (one of job api's two instances, by
regex) and ``ghost`` (a job nobody scrapes). Counters carry explicit timestamps, so irate is
exactly the configured rate and the expected values are exact.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import json
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from telemetry.catalogue import STREAMS
from telemetry.collector import Collector, grid_floor
from telemetry.prometheus import PrometheusClient
from telemetry.settings import Settings
from telemetry.store import connect
from tests.conftest import PROMETHEUS, needs_prometheus, with_settings
from tests.e2e.stack import http_ok, start, wait_until
from tests.ports import free_port

pytestmark = [pytest.mark.e2e, needs_prometheus]

UTC = dt.timezone.utc
COLLECTIONS = [s.collection for s in STREAMS]


@dataclass(frozen=True)
class App:
    cpu: float
    heap_used: float
    heap_max: float
    success_per_s: float
    fail_per_s: float  # 0: no SERVER_ERROR series at all (an app that never failed)
    response_s: float

    def exposition(self) -> str:
        ms = int(time.time() * 1000)
        t = ms / 1000.0 - 1.7e9  # counters grow with time; explicit timestamps make irate exact
        lines = [
            f"process_cpu_usage {self.cpu}",
            f'jvm_memory_used_bytes{{area="heap",id="eden"}} {self.heap_used / 2}',
            f'jvm_memory_used_bytes{{area="heap",id="old"}} {self.heap_used / 2}',
            f'jvm_memory_max_bytes{{area="heap",id="eden"}} {self.heap_max / 2}',
            f'jvm_memory_max_bytes{{area="heap",id="old"}} {self.heap_max / 2}',
            f'http_server_requests_seconds_count{{outcome="SUCCESS",uri="/usuarios"}} {self.success_per_s * t} {ms}',
            f'http_server_requests_seconds_sum{{outcome="SUCCESS",uri="/usuarios"}} {self.success_per_s * t * self.response_s} {ms}',
            # the scrapes themselves, which the default queries leave out
            f'http_server_requests_seconds_count{{outcome="SUCCESS",uri="/actuator/prometheus"}} {1000 * t} {ms}',
            f'http_server_requests_seconds_sum{{outcome="SUCCESS",uri="/actuator/prometheus"}} {1000 * t * 9} {ms}',
        ]
        if self.fail_per_s:
            lines += [
                f'http_server_requests_seconds_count{{outcome="SERVER_ERROR",uri="/usuarios"}} {self.fail_per_s * t} {ms}',
                f'http_server_requests_seconds_sum{{outcome="SERVER_ERROR",uri="/usuarios"}} {self.fail_per_s * t * self.response_s} {ms}',
            ]
        return "\n".join(lines) + "\n"


APPS = {
    "checkout": App(cpu=0.125, heap_used=200.0, heap_max=800.0, success_per_s=12.0, fail_per_s=0.0, response_s=0.05),
    "api-eu": App(cpu=0.5, heap_used=300.0, heap_max=400.0, success_per_s=40.0, fail_per_s=2.0, response_s=0.25),
    "api-us": App(cpu=0.875, heap_used=100.0, heap_max=1000.0, success_per_s=5.0, fail_per_s=1.0, response_s=1.5),
}
#: Each app's expected documents' values, by collection.
EXPECTED = {
    name: {
        "cpu_usage": {"value": app.cpu},
        "jvm_memory_usage": {"value": app.heap_used / app.heap_max},
        "request_count": {"value_success": app.success_per_s, "value_fail": app.fail_per_s},
        "response_time": {"value": app.response_s},
    }
    for name, app in APPS.items()
}


def serve(app: App) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = app.exposition().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: checkout
    static_configs:
      - targets: ["127.0.0.1:{checkout}"]
  - job_name: api
    static_configs:
      - targets: ["127.0.0.1:{eu}", "127.0.0.1:{us}"]
"""


@dataclass
class Stack:
    prometheus_url: str
    #: The api-eu exporter's instance label (selected by regex).
    eu_instance: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("targets")
    exporters = {name: serve(app) for name, app in APPS.items()}
    ports = {name: s.server_port for name, s in exporters.items()}
    config = work / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.format(checkout=ports["checkout"], eu=ports["api-eu"], us=ports["api-us"]))
    port = free_port()
    prometheus = start(
        "prometheus",
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        work, cwd=work,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(url + "/-/ready"), 30, "Prometheus", [prometheus])
        client = PrometheusClient(url)
        # The tests query up to 5 s back, and irate needs two samples: eight of every exporter's counter.
        counted = 'min(count_over_time(http_server_requests_seconds_count{outcome="SUCCESS",uri="/usuarios"}[1m]))'
        wait_until(lambda: (client.query(counted) or _none).value >= 8
                   and (client.query('count(up == 1)') or _none).value == 3, 30, "three scrapes", [prometheus])
        yield Stack(url, f"127.0.0.1:{ports['api-eu']}")
    finally:
        prometheus.stop()
        for server in exporters.values():
            server.shutdown()
            server.server_close()


class _None:
    value = -1.0


_none = _None()


class CountingClient(PrometheusClient):
    """The real client, counting the requests it sends (one round per tick: one per stream column)."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, timeout_s=5.0)
        self.calls: list[str] = []

    def _call(self, path: str, params: dict[str, str]):
        self.calls.append(path)
        return super()._call(path, params)


def targets_text(stack: Stack) -> str:
    eu = stack.eu_instance.replace(".", "\\\\.")
    return f'checkout={{job="checkout"}}\napi-eu={{job="api", instance=~"{eu}"}}\nghost={{job="ghost"}}'


@pytest.fixture
def tsettings(settings: Settings, stack: Stack, tmp_path: Path) -> Settings:
    return with_settings(
        settings,
        prometheus_url=stack.prometheus_url,
        collect_interval_s=1.0,
        collector_targets=targets_text(stack),
        collector_spill_path=tmp_path / "spill.jsonl",
    )


def docs(db, collection: str) -> list[dict]:
    return list(db[collection].find({}, {"_id": 0}).sort([("service", 1), ("time_series", 1)]))


def assert_expected(db, times: list[dt.datetime]) -> None:
    """Every collection holds checkout's and api-eu's documents at ``times`` with their app's values; nothing else."""
    for collection in COLLECTIONS:
        found = docs(db, collection)
        assert {d.get("service") for d in found} == {"checkout", "api-eu"}, collection  # no ghost, no unlabelled
        for service in ("checkout", "api-eu"):
            mine = [d for d in found if d["service"] == service]
            assert [d["time_series"].replace(tzinfo=UTC) for d in mine] == times, (collection, service)
            for doc in mine:
                for field, value in EXPECTED[service][collection].items():
                    assert doc[field] == pytest.approx(value, rel=1e-6), (collection, service, field)


def test_one_round_per_tick_stores_each_target_under_its_service(tsettings, db) -> None:
    client = CountingClient(tsettings.prometheus_url)
    collector = Collector(tsettings, client, db)
    end = grid_floor(dt.datetime.now(UTC), 1.0) - dt.timedelta(seconds=1)
    times = [end - dt.timedelta(seconds=k) for k in (2, 1, 0)]
    for at in times:
        before = len(client.calls)
        report = collector.tick(at)
        # one query per stream column (cpu, memory, success, fail, response time) for all three targets
        assert client.calls[before:] == ["/api/v1/query"] * 5
        assert report.collected == 8
        assert report.missing == tuple(f"ghost/{c}" for c in COLLECTIONS)
    assert_expected(db, times)
    # checkout never failed: its fail series does not exist, and that is 0 failures/s, not missing
    assert {d["value_fail"] for d in docs(db, "request_count") if d["service"] == "checkout"} == {0.0}
    sample = collector.metrics.registry.get_sample_value
    assert sample("pycemaker_collector_service_samples_total", {"service": "checkout"}) == 12
    assert sample("pycemaker_collector_service_samples_total", {"service": "api-eu"}) == 12
    assert sample("pycemaker_collector_service_samples_total", {"service": "ghost"}) == 0
    assert sample("pycemaker_collector_service_missing_streams", {"service": "ghost"}) == 4
    assert sample("pycemaker_collector_service_missing_streams", {"service": "api-eu"}) == 0


def test_backfill_stores_each_target_under_its_service(tsettings, db) -> None:
    client = CountingClient(tsettings.prometheus_url)
    collector = Collector(tsettings, client, db)
    end = grid_floor(dt.datetime.now(UTC), 1.0)
    start = end - dt.timedelta(seconds=4)
    found = collector.backfill(start, end)
    assert found == 4 * 4 * 2  # four grid points, four streams, two targets with data
    assert client.calls == ["/api/v1/query_range"] * 5  # one range query per column for all targets
    assert_expected(db, [start + dt.timedelta(seconds=k) for k in range(4)])
    assert collector.backfill(start, end) == 32 and collector._backfill_stored == 32  # the repeat stores nothing new


def test_the_write_ahead_file_keeps_each_sample_under_its_service(tsettings, db, tmp_path) -> None:
    """Ticks while the database is down wait in the file; the next run replays them, services intact."""
    from telemetry.embedded import open_server

    server = open_server(tmp_path / "down-db", port=0)
    down = with_settings(tsettings, mongo_uri=server.uri, mongo_timeout_ms=300)
    down_db = connect(down, autostart=False)
    server.stop()
    end = grid_floor(dt.datetime.now(UTC), 1.0) - dt.timedelta(seconds=1)
    times = [end - dt.timedelta(seconds=1), end]
    try:
        collector = Collector(down, PrometheusClient(down.prometheus_url), down_db, db_retry_delays_s=(0.0,))
        for at in times:
            assert collector.tick(at).written == 0
        collector.close()
        lines = [json.loads(line) for line in tsettings.collector_spill_path.read_text().splitlines()]
        assert len(lines) == 16 and {line["doc"]["service"] for line in lines} == {"checkout", "api-eu"}
    finally:
        down_db.client.close()
    replay = Collector(tsettings, PrometheusClient(tsettings.prometheus_url), db)
    assert replay.flush(force=True) == 16
    assert_expected(db, times)


def test_the_collect_command_takes_targets_from_its_flags(tsettings, db, stack, tmp_path) -> None:
    from pycemaker.cli import main

    names = ("mongo_uri", "database", "prometheus_url", "collector_spill_path")
    config = tmp_path / "pycemaker.toml"
    config.write_text("\n".join(f"{n} = {json.dumps(str(getattr(tsettings, n)))}" for n in names) + "\n")
    end = grid_floor(dt.datetime.now(UTC), 1.0)
    start = end - dt.timedelta(seconds=3)
    eu = stack.eu_instance
    rc = main(["--config", str(config), "collect", "--interval", "1",
               "--target", 'checkout={job="checkout"}', "--target", f'api-eu={{job="api",instance="{eu}"}}',
               "--start", start.isoformat(), "--end", end.isoformat()])
    assert rc == 0
    assert_expected(db, [start + dt.timedelta(seconds=k) for k in range(3)])


def test_a_target_query_prometheus_refuses_is_reported_not_zero(tsettings, db, caplog) -> None:
    """A selector Prometheus rejects (an RE2 syntax Python accepts) makes the streams missing, with Prometheus's reason."""
    bad = with_settings(tsettings, collector_targets='a={job=~"(?=api)api"}')
    collector = Collector(bad, PrometheusClient(bad.prometheus_url), db)
    report = collector.tick(grid_floor(dt.datetime.now(UTC), 1.0) - dt.timedelta(seconds=1))
    assert report.collected == 0 and len(report.missing) == 4
    assert "rejected" in caplog.text
    assert all(docs(db, c) == [] for c in COLLECTIONS)



def test_a_target_matching_several_instances_keeps_only_its_aggregated_streams(tsettings, db, caplog) -> None:
    """``api={job="api"}`` holds two instances: the sums are the job's, the per-instance CPU is reported, never mixed."""
    both = with_settings(tsettings, collector_targets='api={job="api"}')
    collector = Collector(both, PrometheusClient(both.prometheus_url), db)
    at = grid_floor(dt.datetime.now(UTC), 1.0) - dt.timedelta(seconds=1)
    report = collector.tick(at)
    assert report.missing == ("api/cpu_usage",)
    assert "several series for service 'api'" in caplog.text
    eu, us = APPS["api-eu"], APPS["api-us"]
    [memory] = docs(db, "jvm_memory_usage")
    assert memory["service"] == "api"
    assert memory["value"] == pytest.approx((eu.heap_used + us.heap_used) / (eu.heap_max + us.heap_max), rel=1e-6)
    [requests] = docs(db, "request_count")
    assert requests["value_success"] == pytest.approx(eu.success_per_s + us.success_per_s, rel=1e-6)
    assert requests["value_fail"] == pytest.approx(eu.fail_per_s + us.fail_per_s, rel=1e-6)


@pytest.mark.parametrize(
    "expr",
    [
        'sum by (job) (rate(process_cpu_usage[5m] offset 1m)) / on(job) group_left() count without(instance)(up{a!="}"}) > bool 0',
        "histogram_quantile(0.9, sum by (le) (rate(http_server_requests_seconds_count[5m:1m])))",
        '{__name__=~"process_cpu_.*"}',
        'label_replace(up, "a", "$1", "job", "(.*)")',
        "max(process_cpu_usage @ end()) - Inf",
        "sum(jvm_memory_used_bytes) and ignoring(x) sum(jvm_memory_max_bytes) unless sum(absent_metric)",
    ],
)
def test_restricted_queries_are_valid_promql_for_prometheus(stack: Stack, expr: str) -> None:
    from telemetry.targets import combined_query, parse_targets

    client = PrometheusClient(stack.prometheus_url)
    query = combined_query(expr, parse_targets('checkout={job="checkout"}; api={job="api"}'))
    client.query_series(query, dt.datetime.now(UTC))  # Prometheus rejecting it raises QueryError
