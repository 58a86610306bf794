"""End to end with real parts: target -> Prometheus -> `pycemaker collect` -> database -> health.

The demo target, a real Prometheus (scraping every 1 s on loopback, storage in a temporary
directory), the collector CLI and a short headless Locust run with the original shape
compressed (one cycle in 30 s, 1/50 of the users), all on random free loopback ports.
Every process is stopped when the test ends, pass or fail.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
import pytest

from telemetry import store
from telemetry.catalogue import CRITICITY_LABELS, STREAMS
from telemetry.health import minute_health
from telemetry.settings import Settings
from tests.conftest import PROMTOOL, REPO, needs_prometheus, needs_promtool
from tests.e2e.stack import Service, child_env, services, start, start_target_and_prometheus, wait_until  # noqa: F401 (fixture)

pytestmark = [pytest.mark.e2e, needs_prometheus]

UTC = dt.timezone.utc
LOAD_SECONDS = 24
COLLECT_INTERVAL_S = 1.0


def target_counters(url: str) -> dict[tuple[str, str], float]:
    """The target's own request counts by (uri, outcome), excluding the scrapes."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    counts: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("http_server_requests_seconds_count{"):
            uri = re.search(r'uri="([^"]*)"', line).group(1)
            result = re.search(r'outcome="([^"]*)"', line).group(1)
            if not uri.startswith("/actuator"):
                counts[(uri, result)] = counts.get((uri, result), 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def test_collector_stores_the_four_streams_from_a_real_prometheus(
    settings: Settings, db, tmp_path: Path, services: list[Service]
) -> None:
    began = dt.datetime.now(UTC)
    python = sys.executable
    env = child_env()
    target_url, prometheus_url = start_target_and_prometheus(tmp_path, services)
    metrics_url = target_url + "/actuator/prometheus"
    target, prometheus = services

    collector = start(
        "collector",
        [
            python,
            "-m",
            "pycemaker",
            "collect",
            "--interval",
            str(COLLECT_INTERVAL_S),
            "--prometheus-url",
            prometheus_url,
        ],
        tmp_path,
        cwd=REPO,
        env=child_env(
            MONGO_URI=settings.mongo_uri,
            PYCEMAKER_DATABASE=settings.database,
            PYCEMAKER_COLLECTOR_SPILL_PATH=str(tmp_path / "spill.jsonl"),
            PYCEMAKER_DATA_DIR=str(tmp_path / "db"),
            PYCEMAKER_COLLECTOR_METRICS_PORT="0",
        ),
    )
    services.append(collector)
    locust = start(
        "locust",
        [
            python,
            "-m",
            "locust",
            "-f",
            str(REPO / "testbed" / "locustfile.py"),
            "--headless",
            "--host",
            target_url,
            "--run-time",
            f"{LOAD_SECONDS}s",
            "--time-scale",
            "120",
            "--user-scale",
            "0.02",
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        tmp_path,
        cwd=REPO,
        env=env,
    )
    services.append(locust)
    wait_until(
        lambda: not locust.running(),
        LOAD_SECONDS + 40,
        "the Locust run to end",
        [target, prometheus, collector],
    )
    assert locust.process.returncode == 0, locust.tail()
    load_ended = dt.datetime.now(UTC)

    # Let the collector store the ticks covering the last requests, then stop it the way systemd/Docker do.
    def caught_up() -> bool:
        latest = store.newest_sample_times(db)["cpu_usage"]
        return latest is not None and latest >= load_ended + dt.timedelta(seconds=3)

    wait_until(caught_up, 20, "the collector to catch up", [collector])
    counters = target_counters(metrics_url)
    assert collector.stop() == 0, collector.tail()
    ended = dt.datetime.now(UTC)
    assert " ERROR " not in collector.log_path.read_text(), collector.tail()

    docs = {s.collection: list(db[s.collection].find({}, {"_id": 0}).sort("time_series", 1)) for s in STREAMS}
    for name, found in docs.items():
        assert len(found) >= LOAD_SECONDS // 2, f"{name}: only {len(found)} documents"
        for doc in found:
            t = doc["time_series"]
            assert began - dt.timedelta(seconds=1) <= t <= ended, (name, t)
            # Sample time = the tick's grid point: whole seconds, and the original's epoch ms.
            assert (
                doc["origin_time_series"] == int(t.timestamp() * 1000)
                and doc["origin_time_series"] % 1000 == 0
            )
            assert doc["criticity"] in CRITICITY_LABELS

    cpu = [d["value"] for d in docs["cpu_usage"]]
    assert all(0.0 <= v <= 1.0 for v in cpu) and max(cpu) > 0.0
    memory = [d["value"] for d in docs["jvm_memory_usage"]]
    assert all(0.0 < v < 1.0 for v in memory)
    assert all(d["consume_percent"].endswith("%") for d in docs["jvm_memory_usage"])

    success = [d["value_success"] for d in docs["request_count"]]
    fail = [d["value_fail"] for d in docs["request_count"]]
    # The target never failed: no SERVER_ERROR series exists, and the collector writes 0, not nothing.
    assert fail == [0.0] * len(fail)
    assert min(success) >= 0.0 and max(success) >= 5.0
    # One document a second: the per-second rates add up to the requests the target counted.
    served = sum(v for (uri, result), v in counters.items() if result == "SUCCESS")
    assert served > 100
    assert sum(success) * COLLECT_INTERVAL_S == pytest.approx(served, rel=0.25)

    # The original user behaviour: each user registers, deletes itself, then lists users.
    registered, deleted = (
        counters[("/registrar", "SUCCESS")],
        counters[("/usuario/delete/{user_id}", "SUCCESS")],
    )
    assert registered == deleted >= 2
    assert counters[("/usuarios", "SUCCESS")] > 10 * registered

    response_time = [d["value"] for d in docs["response_time"]]
    assert all(0.0 < v < 1.0 for v in response_time)

    # Health computed from what was collected: known, within [0, 1], and healthy under this light load.
    first = min(found[0]["time_series"] for found in docs.values())
    last = max(found[-1]["time_series"] for found in docs.values()) + dt.timedelta(seconds=1)
    health = minute_health(store.read_samples(db, first, last), first, last, settings)
    known = health["health"].dropna()
    assert len(known) >= 1, health
    assert known.between(0.0, 1.0).all()
    assert (known > settings.failure_threshold).all(), known
    assert (health.loc[known.index, "coverage"] > 0).all()


@needs_promtool
def test_the_compose_scrape_config_is_valid() -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(REPO / "deploy" / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
