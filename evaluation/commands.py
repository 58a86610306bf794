"""``pycemaker backtest``: rolling-origin backtests of every method on what the database holds
(or on a simulated range held in memory), with time-to-failure scoring where incidents exist."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import re
import sys
from pathlib import Path

from telemetry.settings import Settings, SettingsError

log = logging.getLogger(__name__)
UTC = dt.timezone.utc


def register(sub: argparse._SubParsersAction) -> None:
    from evaluation.forecasters import BACKTEST_METHODS as METHOD_NAMES

    p = sub.add_parser("backtest", help="rolling-origin backtest of the registry's models against baselines (markdown, JSON, PNG)")
    p.add_argument("--start", help="first forecast origin (ISO 8601 with a zone; default: after the warm-up, or --days "
                                   "before --end); what is stored before it is history the methods may read")
    p.add_argument("--end", help="end (ISO 8601 with a zone; default: the newest sample)")
    p.add_argument("--days", type=float, help="length of the range ending at --end")
    p.add_argument("--simulate-seed", type=int, help="backtest a range simulated in memory with this seed instead of the database")
    p.add_argument("--origins", type=int, default=40, help="rolling origins (default 40)")
    p.add_argument("--horizons", default="15,60,180", help="horizons in minutes for the tables (default 15,60,180)")
    p.add_argument("--methods", default=",".join(METHOD_NAMES), help=f"comma-separated (default: {','.join(METHOD_NAMES)})")
    p.add_argument("--model", help="a registry version: its training run's models are backtested (default: the current one's)")
    p.add_argument("--season-minutes", type=int, help="season for seasonal naive / SARIMAX / MASE (default: 60 on minute data, 1440 otherwise)")
    p.add_argument("--no-ttf", action="store_true", help="skip time-to-failure scoring")
    p.add_argument("--out", default="bench/results/backtest", help="folder for backtest.json and the PNGs (default bench/results/backtest)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_backtest)


def _time(text: str | None, name: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SettingsError(f"--{name}: not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise SettingsError(f"--{name} needs a zone (e.g. 2026-06-01T00:00Z)")
    return value.astimezone(UTC)


def run_backtest(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd

    from evaluation import backtest, forecasters, report, series as series_mod, ttf

    horizons = tuple(int(h) for h in args.horizons.split(",") if h.strip())
    methods_wanted = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    start, end = _time(args.start, "start"), _time(args.end, "end")
    if args.simulate_seed is not None:
        days = args.days or 7.0
        start = start or (end - dt.timedelta(days=days) if end else dt.datetime(2026, 6, 1, tzinfo=UTC))
        end = end or start + dt.timedelta(days=days)
        found = [series_mod.from_simulation(args.simulate_seed, start, end, settings)]
    else:
        from telemetry import store

        db = store.connect(settings)
        span = store.data_range(db)
        if span is None:
            log.error("no samples in the database: run `pycemaker simulate`, `collect` or `import-csv` first")
            return 1
        end = end or span[1] + dt.timedelta(minutes=1)
        if start is None and args.days:
            start = end - dt.timedelta(days=args.days)
        # Everything stored before the first origin is history the methods may read (their warm-up).
        found = series_mod.from_store(db, settings, None, end, season_minutes=args.season_minutes)
    if not found:
        log.error("nothing to backtest in that range")
        return 1
    try:
        methods = forecasters.build_methods(methods_wanted, settings, args.model)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc

    out = Path(args.out)
    payload: dict = {"series": []}
    for s in found:
        warmup = backtest.default_warmup(s, methods)
        if start is not None and args.simulate_seed is None:
            warmup = max(warmup, int(s.frame.index.searchsorted(pd.Timestamp(start))))
        try:
            result = backtest.run_backtest(s, methods, origins=args.origins, horizon_minutes=max(horizons),
                                           warmup=warmup, progress=not args.no_progress)
        except ValueError as exc:
            log.error("%s", exc)
            return 1
        rows = result.metric_rows(horizons)
        slug = re.sub(r"[^A-Za-z0-9_]+", "-", s.name).strip("-")
        entry = report.backtest_payload(result, horizons)
        sys.stdout.write(f"\n## {s.name} ({len(result.origins)} origins, {s.cadence_minutes}-min steps, season {s.season_minutes} min)\n\n")
        for channel in s.channels:
            sys.stdout.write(f"### {channel}\n\n" + report.channel_table(rows, channel, result.methods, horizons) + "\n")
        report.plot_error_by_horizon(result, s.channels[-1], out / f"error-by-horizon-{slug}.png")
        report.plot_forecasts(result, s.channels[-1], out / f"forecast-{slug}.png")
        if not args.no_ttf and "health" in s.channels and s.incidents:
            warmup = backtest.default_warmup(s, methods)
            results = [ttf.score_method(m, s, ttf.TtfConfig.from_settings(settings), start_row=warmup)
                       for m in ttf.scored_methods(methods)]
            if results:
                sys.stdout.write("### time to failure\n\n" + report.ttf_table(results) + "\n")
                entry["ttf"] = [r.to_dict() for r in results]
        payload["series"].append(entry)
    path = report.write_json(out / "backtest.json", payload)
    log.info("wrote %s and the plots in %s", path, out)
    return 0
