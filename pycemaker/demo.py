"""``pycemaker demo``: the whole product on the embedded database with simulated data."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

from telemetry.settings import Settings

log = logging.getLogger(__name__)
UTC = dt.timezone.utc


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the product on the embedded database with simulated data")
    p.add_argument("--days", type=float, default=2.0, help="days of history to simulate (default 2)")
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry import simulator, store
    from telemetry.commands import format_health_summary
    from telemetry.health import minute_health

    db = store.connect(settings)  # hosts the embedded server in this process unless MONGO_URI is set
    now = dt.datetime.now(UTC)
    span = store.data_range(db)
    if span is None or now - span[1] > dt.timedelta(minutes=10) or now - span[0] < dt.timedelta(days=args.days) * 0.9:
        log.info("simulating %.0f days of metrics into %s", args.days, settings.data_dir)
        simulator.backfill(db, args.days, settings, seed=settings.simulator_seed, end=now)
    start = now - dt.timedelta(hours=2)
    table = minute_health(store.read_samples(db, start, now), start, now, settings)
    sys.stdout.write(format_health_summary(table, settings))
    return 0
