"""Rollup benchmark: reading a week of one service's frames raw vs from rollups, and ingest at fleet scale.

What it does (everything in one process, on loopback, against a fresh SecantusDB server):

1. **read**: simulates ``--days`` (default 7) of one service (:func:`telemetry.simulator.simulate`, the
   seed's app, four streams every 5-6 s) and writes the samples without rollups; times building them
   (:func:`telemetry.rollups.rebuild`), then reading the whole span's frame raw
   (:func:`telemetry.frames.raw_minute_frame`) and from rollups (:func:`telemetry.frames.load_minute_frame`),
   and checks that the two frames are identical.
2. **ingest**: for N services (``--services``, default 200 and 1000) at a 5-s cadence, a
   :class:`telemetry.collector.Collector` with N targets, after a minute of history per service, runs
   ``--ticks`` ticks (default 12: a minute, the first the first of a minute) of its own write path
   (:meth:`~telemetry.collector.Collector.tick`, Prometheus stood in for by an in-process answer): the
   write-ahead file, one ``insert_many`` per stream collection for every service, then one rollup pass
   for every service (``Collector._update_rollups`` -> :func:`telemetry.rollups.update_services`; only
   the first tick of a minute has an ended step to store). Reported: documents stored per second, the
   ticks without and with their rollup pass (timed apart in the same run), against the rate documents
   arrive at (N x 4 / 5 s), and the slowest tick, its inserts alone (while ``pycemaker collect`` runs, the pass is
   its rollup thread's) and with the pass (the first of the minute): a tick longer than the 5-s interval makes the
   collector skip the next grid point and backfill it. ``--no-read`` skips part 1.

Figures go to ``bench/results/rollups.json`` and docs/scaling.md (between its ``figures:rollups`` markers).

    PYTHONPATH=. .venv/bin/python bench/rollup_bench.py [--days 7] [--services 200 1000] [--ticks 12] [--no-read]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.docblock import replace_block  # noqa: E402
from telemetry import rollups, simulator, store  # noqa: E402
from telemetry.catalogue import ROLLUPS_COLLECTION, STREAMS  # noqa: E402
from telemetry.collector import Collector  # noqa: E402
from telemetry.embedded import open_server  # noqa: E402
from telemetry.frames import load_minute_frame, raw_minute_frame, service_cadence  # noqa: E402
from telemetry.prometheus import Sample  # noqa: E402
from telemetry.services import DEFAULT_SERVICE  # noqa: E402
from telemetry.settings import Settings  # noqa: E402
from telemetry.targets import SERVICE_LABEL  # noqa: E402

UTC = dt.timezone.utc
DOC = REPO / "docs" / "scaling.md"
END = dt.datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
INTERVAL_S = 5.0


def bench_read(settings: Settings, days: float) -> dict:
    db = store.connect(settings, socket_timeout_ms=600_000)
    start = END - dt.timedelta(days=days)
    sim = simulator.simulate(start, END, 42, settings)
    began = time.perf_counter()
    simulator.write(db, sim, dataclasses.replace(settings, rollups=False))
    write_s = time.perf_counter() - began
    documents = sum(len(f) for f in sim.samples.values())
    cadence = service_cadence(db, settings)
    began = time.perf_counter()
    rows = rollups.rebuild(db, settings, start, END, cadence, DEFAULT_SERVICE)
    rebuild_s = time.perf_counter() - began
    began = time.perf_counter()
    raw = raw_minute_frame(db, start, END, settings, cadence)
    raw_s = time.perf_counter() - began
    began = time.perf_counter()
    fast = load_minute_frame(db, start, END, settings, cadence)
    rollup_s = time.perf_counter() - began
    pd.testing.assert_frame_equal(fast, raw, check_exact=True)
    db.client.close()
    return {
        "days": days, "documents": documents, "frame_rows": len(raw), "rollup_rows": rows,
        "write_samples_s": round(write_s, 1), "rebuild_s": round(rebuild_s, 1),
        "read_raw_s": round(raw_s, 2), "read_rollups_s": round(rollup_s, 2), "speedup": round(raw_s / rollup_s, 1),
        "identical": True,
    }


class FleetPrometheus:
    """Stands in for Prometheus: each combined query (:func:`telemetry.targets.combined_query`) answered at once with
    one series per service, so a tick's time is the collector's own work and the database's."""

    base_url = "bench"

    def __init__(self, names: list[str], columns: dict[str, str]) -> None:
        self.names = names
        self.columns = columns  # the query each column is configured with -> the column

    def query_series(self, expr: str, at: dt.datetime) -> list[tuple[dict[str, str], Sample | None]]:
        column = next(c for q, c in self.columns.items() if expr.startswith(f"label_replace({q}{{"))
        low, high = {"cpu": (0.1, 0.6), "memory": (0.2, 0.6), "req_success": (5, 40), "req_fail": (0, 1),
                     "response_time": (0.05, 0.4)}[column]
        values = np.random.default_rng([int(at.timestamp()), len(column)]).uniform(low, high, len(self.names)).tolist()
        return [({SERVICE_LABEL: name}, Sample(at, value)) for name, value in zip(self.names, values)]


def bench_ingest(settings: Settings, services: int, ticks: int, spill: Path) -> dict:
    """``ticks`` collector ticks of ``services`` services (:meth:`Collector.tick`: the write-ahead file, one insert
    per stream collection, one rollup pass), the rollup pass (``Collector._update_rollups``) timed apart."""
    names = [f"svc-{i:04d}" for i in range(1, services + 1)]
    queries = {"query_cpu": "cpu", "query_memory": "memory", "query_success": "req_success", "query_fail": "req_fail",
               "query_response_time": "response_time"}
    settings = dataclasses.replace(
        settings, collect_interval_s=INTERVAL_S, collector_spill_path=spill / f"{services}.jsonl",
        collector_targets="; ".join(f'{n}={{job="{n}"}}' for n in names),
        **{field: f"m_{column}" for field, column in queries.items()},
    )
    client = FleetPrometheus(names, {f"m_{c}": c for c in queries.values()})
    db = store.connect(settings, socket_timeout_ms=600_000)
    store.ensure_indexes(db)
    rollups.ensure_indexes(db)
    now = {"t": END}
    collector = Collector(settings, client, db, clock=lambda: now["t"].timestamp() + 0.5, sleep=lambda s: None)

    # A minute of history per service, through the collector too (untimed), so the first timed tick closes a full step.
    for k in range(-12, 0):
        now["t"] = END + dt.timedelta(seconds=INTERVAL_S * k)
        collector.tick(now["t"])

    rollup_s = 0.0
    update = collector._update_rollups

    def timed_update() -> None:
        nonlocal rollup_s
        began = time.perf_counter()
        update()
        rollup_s += time.perf_counter() - began
        tick_rollup_s[-1] += time.perf_counter() - began

    collector._update_rollups = timed_update  # type: ignore[method-assign]
    # ``ticks`` ticks from the first of a minute: the steady state, where the first tick of a minute stores the
    # minute before (for every service at once) and the other eleven have no ended step to store.
    tick_s: list[float] = []
    tick_rollup_s: list[float] = []
    stored = 0
    for k in range(ticks):
        now["t"] = END + dt.timedelta(seconds=INTERVAL_S * k)
        tick_rollup_s.append(0.0)
        began = time.perf_counter()
        report = collector.tick(now["t"])
        tick_s.append(time.perf_counter() - began)
        stored += report.written
    total_s = sum(tick_s)
    documents = services * len(STREAMS) * ticks
    assert stored == documents, (stored, documents)
    arriving = services * len(STREAMS) / INTERVAL_S
    rows = db[ROLLUPS_COLLECTION].count_documents({"time": END - dt.timedelta(minutes=1)})
    db.client.drop_database(db.name)
    db.client.close()
    return {
        "services": services, "ticks": ticks, "documents": documents, "arriving_per_s": round(arriving, 1),
        "insert_only_per_s": round(documents / (total_s - rollup_s), 1), "insert_and_rollup_per_s": round(documents / total_s, 1),
        "tick_s_insert_only": round((total_s - rollup_s) / ticks, 2), "tick_s_with_rollup": round(total_s / ticks, 2),
        "slowest_tick_s": round(max(tick_s), 2), "rollup_s_per_minute": round(rollup_s * 12 / ticks, 2),
        # While `collect` runs, the pass is its rollup thread's: a tick itself is its inserts.
        "slowest_tick_without_rollup_s": round(max(t - r for t, r in zip(tick_s, tick_rollup_s)), 2),
        "keeps_up_with_rollup": bool(documents / total_s >= arriving),
        "slowest_tick_within_interval": bool(max(t - r for t, r in zip(tick_s, tick_rollup_s)) < INTERVAL_S),
        "rollup_rows_written": rows,
    }


def render(results: dict) -> str:
    """The docs/scaling.md block, from the JSON."""
    lines = [
        f"Measured by `bench/rollup_bench.py` ({results['machine']}, {results['when']}; one embedded SecantusDB server in",
        "the same process):",
        "",
    ]
    r = results.get("read")
    if r:
        lines += [
            f"- **Reading {r['days']:g} days of one service's frames** (the simulator's seed app, four streams every 5-6 s; "
            f"{r['documents']:,} samples, {r['frame_rows']:,} one-minute rows): "
            f"{r['read_raw_s']:.1f} s from the raw samples, {r['read_rollups_s']:.2f} s from the rollups ({r['speedup']:.0f}x), "
            "the same frame to the last bit. Building the rows once from the samples "
            f"(`pycemaker rollup --rebuild`) took {r['rebuild_s']:.0f} s.",
            "",
        ]
    lines += [
        f"- **Ingest** through the collector's own tick ({results['ingest'][0]['ticks']} ticks of every service from the first of",
        "  a minute, Prometheus answered in-process; per tick the write-ahead file, one insert per stream collection for",
        "  every service, then one rollup pass for every service, which stores the minute before at the first tick and",
        "  has nothing to store at the others; the pass timed apart in the same run. While `pycemaker collect` runs the",
        "  pass is its rollup thread's, so a tick waits for its inserts alone; a tick over the 5-s interval makes the",
        "  collector skip the next grid point and backfill it from Prometheus):",
        "",
        "| services | arriving | stored: ticks without rollups | with the rollup pass | rollup pass per minute "
        "| slowest tick: inserts / with the pass | keeps up |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in results["ingest"]:
        lines.append(
            f"| {size['services']} | {size['arriving_per_s']:.0f} docs/s | {size['insert_only_per_s']:.0f} docs/s "
            f"| {size['insert_and_rollup_per_s']:.0f} docs/s | {size['rollup_s_per_minute']:.1f} s "
            f"| {size['slowest_tick_without_rollup_s']:.1f} s / {size['slowest_tick_s']:.1f} s "
            f"| {'yes' if size['keeps_up_with_rollup'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--services", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--ticks", type=int, default=12, help="ticks of every service (default 12: a minute)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "rollups.json")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/scaling.md's figures")
    parser.add_argument("--no-read", action="store_true", help="skip the read part (the JSON keeps --out's earlier read figures)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    data_dir = Path(tempfile.mkdtemp(prefix="pycemaker-rollup-bench-"))
    server = open_server(data_dir)
    try:
        settings = Settings(mongo_uri=server.uri, database="rollup_bench")
        ingest = []
        for count in args.services:
            ingest.append(bench_ingest(Settings(mongo_uri=server.uri, database=f"ingest_{count}"), count, args.ticks, data_dir))
            print(json.dumps(ingest[-1]), file=sys.stderr)
        if args.no_read:
            read = json.loads(args.out.read_text()).get("read") if args.out.exists() else None
        else:
            read = bench_read(settings, args.days)
            print(json.dumps(read), file=sys.stderr)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    results = {
        "what": "frames of one service read raw vs from rollups; collector write path at fleet scale",
        "machine": f"{os.cpu_count()} cores, CPython {platform.python_version()}",
        "when": dt.date.today().isoformat(),
        "read": read,
        "ingest": ingest,
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_docs:
        replace_block(DOC, "rollups", render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
