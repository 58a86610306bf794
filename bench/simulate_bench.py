"""Simulator speed: generate 7 days and write them to a real embedded server.

Target (issue 2): <= 120 s for generation and writes together. Writes bench/results/simulate.json.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from pathlib import Path

from telemetry import simulator, store
from telemetry.embedded import open_server
from telemetry.settings import Settings

RESULTS = Path(__file__).parent / "results" / "simulate.json"
UTC = dt.timezone.utc


def main(days: float = 7.0) -> dict:
    settings = Settings()
    end = dt.datetime(2026, 11, 1, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        # A separate server process would be closer to production; in-process it shares the GIL,
        # so this figure is an upper bound on the write time.
        server = open_server(Path(tmp))
        try:
            db = store.connect(Settings(mongo_uri=server.uri), autostart=False)
            began = time.perf_counter()
            sim = simulator.simulate(end - dt.timedelta(days=days), end, seed=1, settings=settings)
            generate_s = time.perf_counter() - began
            written = simulator.write(db, sim, settings)
            total_s = time.perf_counter() - began
        finally:
            server.stop()
    result = {
        "what": f"simulate {days:g} days and write them to an embedded SecantusDB",
        "documents": written,
        "incidents": len(sim.incidents),
        "generate_seconds": round(generate_s, 2),
        "generate_and_write_seconds": round(total_s, 1),
        "documents_per_second": round(written / (total_s - generate_s)),
        "target_seconds": 120,
        "meets_target": total_s <= 120,
        "measured_at": dt.datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
