"""Health scoring speed: 7 days of samples (~430k documents over the four streams) -> per-minute health.

Target (issue 2): scoring <= 2 s. Reading the documents from the store is timed separately,
against a real embedded server. Writes bench/results/health.json.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path

from telemetry import simulator, store
from telemetry.embedded import open_server
from telemetry.health import minute_health
from telemetry.settings import Settings

RESULTS = Path(__file__).parent / "results" / "health.json"
UTC = dt.timezone.utc


def main() -> dict:
    end = dt.datetime(2026, 11, 1, tzinfo=UTC)
    start = end - dt.timedelta(days=7)
    settings = Settings()
    sim = simulator.simulate(start, end, seed=1, settings=settings)
    documents = sum(len(f) for f in sim.samples.values())

    timings = []
    for _ in range(5):
        began = time.perf_counter()
        table = minute_health(sim.samples, start, end, settings)
        timings.append(time.perf_counter() - began)

    with tempfile.TemporaryDirectory() as tmp:
        server = open_server(Path(tmp))
        try:
            db = store.connect(Settings(mongo_uri=server.uri), autostart=False)
            simulator.write(db, sim, settings)
            began = time.perf_counter()
            samples = store.read_samples(db, start, end)
            read_s = time.perf_counter() - began
            began = time.perf_counter()
            minute_health(samples, start, end, settings)
            score_after_read_s = time.perf_counter() - began
        finally:
            server.stop()

    result = {
        "what": "per-minute health of 7 days of samples",
        "documents": documents,
        "minutes": len(table),
        "score_seconds_median_of_5": round(statistics.median(timings), 4),
        "score_seconds_max_of_5": round(max(timings), 4),
        "read_from_embedded_store_seconds": round(read_s, 2),
        "score_after_read_seconds": round(score_after_read_s, 4),
        "target_score_seconds": 2.0,
        "meets_target": max(timings) <= 2.0,
        "measured_at": dt.datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
