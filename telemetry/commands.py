"""Subcommands for the data side: ``db``, ``simulate``, ``health``, ``collect``, ``import-csv``, ``rollup``."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

from telemetry.settings import Settings, override

log = logging.getLogger(__name__)
UTC = dt.timezone.utc


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="host the embedded database (SecantusDB) in the foreground")
    p.add_argument("--data-dir", help="data directory (default: $PYCEMAKER_DATA_DIR or var/db)")
    p.add_argument("--port", type=int, help="loopback port (default: $PYCEMAKER_EMBEDDED_PORT or 27217)")
    p.set_defaults(handler=run_db)

    p = sub.add_parser("simulate", help="write simulated metrics (backfill, or --live in real time)")
    p.add_argument("--days", type=float, default=7.0, help="days to backfill before now (default 7)")
    p.add_argument("--seed", type=int, help="random seed (default: $PYCEMAKER_SIMULATOR_SEED or 42)")
    p.add_argument("--services", type=int, default=1,
                   help="simulate this many services (svc-01..svc-K, each its own app); 1: the default service (default)")
    p.add_argument("--live", action="store_true", help="after the backfill, keep appending in real time")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between live writes (default 5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--profile-seed", type=int, help="simulate the app family's member sampled from this seed (default: the seed's app)")
    p.add_argument("--list-family", type=int, nargs="?", const=5, metavar="N",
                   help="print N (default 5) sampled app profiles as JSON, from --profile-seed (default 0) on, and exit")
    p.set_defaults(handler=run_simulate)

    p = sub.add_parser("health", help="print per-minute health over the last hours")
    p.add_argument("--hours", type=float, default=2.0, help="how far back (default 2)")
    p.set_defaults(handler=run_health)

    p = sub.add_parser("collect", help="query Prometheus every few seconds and store the four streams")
    p.add_argument("--prometheus-url", help="Prometheus base URL (default: $PYCEMAKER_PROMETHEUS_URL)")
    p.add_argument("--interval", type=float, help="seconds between ticks (default 5)")
    p.add_argument("--once", action="store_true", help="collect the current tick, then exit")
    p.add_argument("--hours", type=float, help="backfill the last HOURS with query_range, then exit")
    p.add_argument("--start", help="backfill from this ISO 8601 time with a zone (2024-05-01T10:00Z)")
    p.add_argument("--end", help="end of the backfill (default: now)")
    p.add_argument("--target", action="append", metavar="SERVICE=SELECTOR",
                   help='collect SERVICE from the series SELECTOR matches, e.g. checkout=\'{job="checkout"}\' '
                        "(repeat for more; default: $PYCEMAKER_COLLECTOR_TARGETS, or the default service alone)")
    p.add_argument("--targets-file", metavar="PATH",
                   help="read the targets from PATH, one SERVICE=SELECTOR a line (default: $PYCEMAKER_COLLECTOR_TARGETS_FILE)")
    p.set_defaults(handler=run_collect)

    p = sub.add_parser("import-csv", help="load a timestamp,value CSV into one stream (naive times are UTC)")
    p.add_argument("file", help="CSV with a header: timestamp,value")
    p.add_argument("--stream", required=True, help="cpu_usage, jvm_memory_usage, request_count (value = successes/s) or response_time")
    p.add_argument("--scale", default="1", help="multiply every value: 0.01 for percent -> ratio, 1/300 for per-5-min counts -> per second")
    p.set_defaults(handler=run_import_csv)

    p = sub.add_parser("rollup", help="recompute the per-step frame rows (rollups) from the samples")
    p.add_argument("--rebuild", action="store_true", required=True, help="recompute the rows of the range from the raw samples")
    p.add_argument("--service", help="only this service (default: every service with samples)")
    p.add_argument("--start", help="from this ISO 8601 time with a zone (default: the service's oldest sample)")
    p.add_argument("--end", help="up to this ISO 8601 time with a zone (default: its newest sample)")
    p.set_defaults(handler=run_rollup)


def run_db(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from telemetry.embedded import serve_forever

    settings = override(
        settings, data_dir=Path(args.data_dir) if args.data_dir else None, embedded_port=args.port
    )
    serve_forever(settings)
    return 0


def run_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry import app_family, simulator, store
    from telemetry.settings import SettingsError

    if args.list_family is not None:
        sys.stdout.write(format_family(args.list_family, args.profile_seed or 0))
        return 0
    seed = settings.simulator_seed if args.seed is None else args.seed
    if args.services < 1:
        raise SettingsError("--services must be at least 1")
    profile = None
    if args.profile_seed is not None:
        profile = app_family.sample_profile(args.profile_seed)
        app = app_family.app_settings(settings, profile)  # what to serve it with (the simulator derives it too)
        log.info("app %s: %s traffic, streams %s every %g s; serve it with PYCEMAKER_STREAMS=%s PYCEMAKER_SCRAPE_INTERVAL_S=%g "
                 "PYCEMAKER_REQUEST_RATE_CUTS=%s", profile.name, profile.traffic, ",".join(profile.streams),
                 profile.scrape_interval_s, ",".join(profile.streams), profile.scrape_interval_s,
                 ",".join(f"{c:g}" for c in app.request_rate_cuts))
    db = store.connect(settings)
    end = dt.datetime.now(UTC).replace(microsecond=0)
    if args.services > 1:
        live = []
        for index in range(1, args.services + 1):
            name, service_seed, scale = simulator.fleet_service(seed, index, args.services)
            if args.days > 0:
                sim = simulator.backfill(db, args.days, settings, seed=service_seed, end=end, show_progress=not args.no_progress,
                                         profile=profile, service=name, capacity_scale=scale)
                log.info("%s (capacity x%.2f): %d samples, %d incidents", name, scale,
                         sum(len(f) for f in sim.samples.values()), len(sim.incidents))
            live.append(simulator.LiveService(name, service_seed + 1, profile, scale))  # live days: the next seeds
    else:
        live = [simulator.LiveService(None, seed + 1, profile)]
        if args.days > 0:
            sim = simulator.backfill(db, args.days, settings, seed=seed, end=end, show_progress=not args.no_progress,
                                     profile=profile)
            total = sum(len(f) for f in sim.samples.values())
            log.info("backfilled %.1f days: %d samples, %d incidents", args.days, total, len(sim.incidents))
    if args.live:
        log.info("appending live samples for %d service(s) every %.0f s; Ctrl-C to stop", len(live), args.interval)
        simulator.run_live(db, settings, seed=seed + 1, interval_s=args.interval, services=live,
                           start=end if args.days > 0 else None)
    return 0


def format_family(count: int, first_seed: int = 0) -> str:
    """``count`` sampled app profiles from ``first_seed`` on, as a JSON list (each says whether it is held out)."""
    import json

    from telemetry import app_family

    profiles = [app_family.sample_profile(s) for s in range(first_seed, first_seed + count)]
    rows = [{**p.to_dict(), "held_out": app_family.is_held_out(p)} for p in profiles]
    return json.dumps(rows, indent=2) + "\n"


def run_health(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry import store
    from telemetry.health import minute_health

    db = store.connect(settings)
    end = dt.datetime.now(UTC)
    span = store.data_range(db)
    if span is None:
        log.error("no samples in the database: run `pycemaker simulate` or `pycemaker collect` first")
        return 1
    end = min(end, span[1] + dt.timedelta(minutes=1))
    start = end - dt.timedelta(hours=args.hours)
    table = minute_health(store.read_samples(db, start, end), start, end, settings)
    sys.stdout.write(format_health_summary(table, settings))
    return 0


def _with_targets(settings: Settings, args: argparse.Namespace) -> Settings:
    """``--target`` (repeated) or ``--targets-file`` replace the configured targets, whichever way they were given."""
    import dataclasses
    from pathlib import Path

    if args.target and args.targets_file:
        from telemetry.settings import SettingsError

        raise SettingsError("--target and --targets-file are both given: use one")
    if args.target:
        return dataclasses.replace(settings, collector_targets="\n".join(args.target), collector_targets_file=None)
    if args.targets_file:
        return dataclasses.replace(settings, collector_targets="", collector_targets_file=Path(args.targets_file))
    return settings


def run_collect(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from telemetry import store
    from telemetry.collector import Collector, grid_floor, parse_time
    from telemetry.prometheus import PrometheusClient, PrometheusError
    from telemetry.settings import SettingsError

    settings = override(_with_targets(settings, args), prometheus_url=args.prometheus_url, collect_interval_s=args.interval)
    if settings.collect_interval_s <= 0:
        raise SettingsError("collect_interval_s must be positive")
    try:
        end = parse_time(args.end) if args.end else dt.datetime.now(UTC)
        start = parse_time(args.start) if args.start else None
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    if start is None and args.hours:
        start = end - dt.timedelta(hours=args.hours)
    # Not checked: a database that is down is buffered, not fatal.
    db = store.connect(settings, check=False)
    client = PrometheusClient(settings.prometheus_url, timeout_s=max(1.0, settings.collect_interval_s))
    collector = Collector(settings, client, db)
    try:
        if start is not None:
            found = collector.backfill(start, end)
            log.info("backfilled %s .. %s: %d samples found", start.isoformat(), end.isoformat(), found)
        elif args.once:
            report = collector.tick(grid_floor(dt.datetime.now(UTC), settings.collect_interval_s))
            log.info("collected %d samples at %s (missing: %s)", report.collected, report.time.isoformat(),
                     ", ".join(report.missing) or "none")
            if not report.collected:
                return 1
        else:
            if settings.collector_metrics_port:
                try:
                    collector.metrics.serve(settings.collector_metrics_port, settings.host)
                except OSError as exc:  # the data matters more than its metrics: collect anyway
                    log.error("cannot serve the collector's metrics on %s:%d (%s); collecting without them",
                              settings.host, settings.collector_metrics_port, exc)
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            collector.run(stop)
    except PrometheusError as exc:
        log.error("%s", exc)
        return 2
    finally:
        collector.close()
        db.client.close()
    return 0


def run_import_csv(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry import store
    from telemetry.importer import CsvImportError, import_csv, parse_scale

    try:
        scale = parse_scale(args.scale)
        result = import_csv(store.connect(settings), args.file, args.stream, settings, scale=scale)
    except CsvImportError as exc:
        log.error("%s", exc)
        return 2
    sys.stdout.write(
        f"{result.stream}: {result.rows} rows, {result.inserted} new, {result.duplicates} already stored, "
        f"{result.skipped} skipped; {result.first:%Y-%m-%d %H:%M} .. {result.last:%Y-%m-%d %H:%M} UTC\n"
    )
    return 0


def run_rollup(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild each service's rows over the range at its own cadence; prints one JSON line per service."""
    import json

    from telemetry import rollups, store
    from telemetry.collector import parse_time
    from telemetry.services import service_named
    from telemetry.settings import SettingsError

    try:
        start = parse_time(args.start) if args.start else None
        end = parse_time(args.end) if args.end else None
        services = [service_named(args.service, settings.default_service)] if args.service else None
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    if start is not None and end is not None and end <= start:
        raise SettingsError("--end must be after --start")
    if not settings.rollups:
        log.warning("PYCEMAKER_ROLLUPS is off: the rows are rebuilt, but neither kept up to date nor read")
    db = store.connect(settings)
    if services is None:
        names = store.list_services(db, settings.stream_set, default_name=settings.default_service)
        services = [service_named(name, settings.default_service) for name in names]
    for service in services:
        rows = rollups.rebuild(db, settings, start, end, service=service)
        sys.stdout.write(json.dumps({"service": service.name, "rows": rows}) + "\n")
    return 0


def format_health_summary(table, settings: Settings) -> str:
    """A per-minute table and a one-line summary, for people at a terminal."""
    known = table["health"].dropna()
    lines = [f"{'minute (UTC)':<17}  health  coverage  flags cpu/mem/req/rt"]
    for t, row in table.iterrows():
        health = "   null" if row.isna()["health"] else f"{row['health']:7.3f}"
        flags = "/".join("-" if row.isna()[c] else f"{row[c]:.1f}" for c in table.columns if c.startswith("flag_"))
        mark = "  FAILURE" if not row.isna()["health"] and row["health"] <= settings.failure_threshold else ""
        lines.append(f"{t:%Y-%m-%d %H:%M}  {health}  {row['coverage']:8.0%}  {flags}{mark}")
    if len(known):
        failing = (known <= settings.failure_threshold).mean()
        lines.append(
            f"\n{len(table)} minutes, {len(known)} known: mean health {known.mean():.3f}, "
            f"min {known.min():.3f}, {failing:.0%} of known minutes at or below {settings.failure_threshold}"
        )
    else:
        lines.append(f"\n{len(table)} minutes, none known")
    return "\n".join(lines) + "\n"
