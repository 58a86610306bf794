"""Rollup benchmark: reading a week of one service's frames raw vs from rollups, and ingest at fleet scale.

What it does (everything in one process, on loopback, against a fresh SecantusDB server):

1. **read**: simulates ``--days`` (default 7) of one service (:func:`telemetry.simulator.simulate`, the
   seed's app, four streams every 5-6 s) and writes the samples without rollups; times building them
   (:func:`telemetry.rollups.rebuild`), then reading the whole span's frame raw
   (:func:`telemetry.frames.raw_minute_frame`) and from rollups (:func:`telemetry.frames.load_minute_frame`),
   and checks that the two frames are identical.
2. **ingest**: for N services (``--services``, default 200 and 1000) at a 5-s cadence, after a minute of
   history per service, runs ``--ticks`` collector ticks (default 12: a minute, the first the first of a
   minute) through the collector's write path: per service, one document per stream
   (``store.insert_idempotent``), then one rollup update (:func:`telemetry.rollups.update`, as
   ``Collector._update_rollups``; only the first tick of a minute has an ended step to store). Reported:
   documents stored per second, the inserts alone and with the rollup updates (timed apart in the same
   run), against the rate they arrive at (N x 4 / 5 s).

Figures go to ``bench/results/rollups.json`` and docs/scaling.md (between its ``figures:rollups`` markers).

    PYTHONPATH=. .venv/bin/python bench/rollup_bench.py [--days 7] [--services 200 1000] [--ticks 12]
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
from telemetry.catalogue import ROLLUPS_COLLECTION, STREAMS, to_document  # noqa: E402
from telemetry.embedded import open_server  # noqa: E402
from telemetry.frames import Cadence, load_minute_frame, raw_minute_frame, service_cadence  # noqa: E402
from telemetry.services import DEFAULT_SERVICE, service_named  # noqa: E402
from telemetry.settings import Settings  # noqa: E402

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


def _tick_documents(index: int, at: dt.datetime, cuts: dict) -> list[tuple[str, dict]]:
    rng = np.random.default_rng([index, int(at.timestamp())])
    values = {"cpu": rng.uniform(0.1, 0.6), "memory": rng.uniform(0.2, 0.6), "req_success": rng.uniform(5, 40),
              "req_fail": rng.uniform(0, 1), "response_time": rng.uniform(0.05, 0.4)}
    return [(s.collection, to_document(s, at, values, cuts[s.flag])) for s in STREAMS]


def bench_ingest(settings: Settings, services: int, ticks: int) -> dict:
    """Ticks of ``services`` services through the collector's write path, without then with the rollup update."""
    db = store.connect(settings, socket_timeout_ms=600_000)
    store.ensure_indexes(db)
    rollups.ensure_indexes(db)
    cuts = settings.cuts()
    names = [service_named(f"svc-{i:04d}") for i in range(1, services + 1)]
    cadence = Cadence(1, 15.0)
    # A minute of history per service (one batch per stream), so the updates read full steps.
    first = END - dt.timedelta(minutes=1)
    history = [first + dt.timedelta(seconds=INTERVAL_S * k) for k in range(12)]
    for collection in [s.collection for s in STREAMS]:
        docs = [d | {"service": svc.name} for i, svc in enumerate(names) for t in history
                for c, d in _tick_documents(i, t, cuts) if c == collection]
        store.insert_idempotent(db, collection, docs)

    # A minute of ticks (12), the first of them the first of a minute: the collector's steady state, where the
    # first tick of a minute stores the minute before and the other eleven have no ended step to store.
    insert_s = rollup_s = 0.0
    for k in range(ticks):
        at = END + dt.timedelta(seconds=INTERVAL_S * k)
        for i, svc in enumerate(names):
            began = time.perf_counter()
            for collection, doc in _tick_documents(i, at, cuts):
                store.insert_idempotent(db, collection, [doc | {"service": svc.name}])
            wrote = time.perf_counter()
            rollups.update(db, settings, at - dt.timedelta(seconds=INTERVAL_S), at, cadence, svc,
                           now=at + dt.timedelta(seconds=0.5))
            insert_s += wrote - began
            rollup_s += time.perf_counter() - wrote
    documents = services * len(STREAMS) * ticks
    arriving = services * len(STREAMS) / INTERVAL_S
    rows = db[ROLLUPS_COLLECTION].count_documents({})
    db.client.drop_database(db.name)
    db.client.close()
    return {
        "services": services, "ticks": ticks, "documents": documents, "arriving_per_s": round(arriving, 1),
        "insert_only_per_s": round(documents / insert_s, 1), "insert_and_rollup_per_s": round(documents / (insert_s + rollup_s), 1),
        "tick_s_insert_only": round(insert_s / ticks, 2), "tick_s_with_rollup": round((insert_s + rollup_s) / ticks, 2),
        "rollup_s_per_minute": round(rollup_s * 12 / ticks, 2),
        "keeps_up_with_rollup": bool(documents / (insert_s + rollup_s) >= arriving), "rollup_rows_written": rows,
    }


def render(results: dict) -> str:
    """The docs/scaling.md block, from the JSON."""
    r = results["read"]
    lines = [
        f"Measured by `bench/rollup_bench.py` ({results['machine']}, {results['when']}; the simulator's seed app, four streams",
        "every 5-6 s, one embedded SecantusDB server in the same process):",
        "",
        f"- **Reading {r['days']:g} days of one service's frames** ({r['documents']:,} samples, {r['frame_rows']:,} one-minute rows): "
        f"{r['read_raw_s']:.1f} s from the raw samples, {r['read_rollups_s']:.2f} s from the rollups ({r['speedup']:.0f}x), "
        "the same frame to the last bit. Building the rows once from the samples "
        f"(`pycemaker rollup --rebuild`) took {r['rebuild_s']:.0f} s.",
        "",
        f"- **Ingest** through the collector's write path ({results['ingest'][0]['ticks']} ticks of every service from the first of a",
        "  minute; per service and tick one document per stream, then its rollup update, which stores the minute",
        "  before at the first tick and has nothing to store at the others; the two timed apart in the same run):",
        "",
        "| services | arriving | stored: inserts alone | inserts + rollup updates | rollup updates per minute | keeps up |",
        "|---|---|---|---|---|---|",
    ]
    for size in results["ingest"]:
        lines.append(
            f"| {size['services']} | {size['arriving_per_s']:.0f} docs/s | {size['insert_only_per_s']:.0f} docs/s "
            f"| {size['insert_and_rollup_per_s']:.0f} docs/s | {size['rollup_s_per_minute']:.1f} s "
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    data_dir = Path(tempfile.mkdtemp(prefix="pycemaker-rollup-bench-"))
    server = open_server(data_dir)
    try:
        settings = Settings(mongo_uri=server.uri, database="rollup_bench")
        ingest = []
        for count in args.services:
            ingest.append(bench_ingest(Settings(mongo_uri=server.uri, database=f"ingest_{count}"), count, args.ticks))
            print(json.dumps(ingest[-1]), file=sys.stderr)
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
