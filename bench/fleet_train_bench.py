"""Fleet training benchmark: one ``train --once`` across 20 to 1,000 simulated services, as the scheduler runs it.

What it does, per fleet size:

1. hosts a SecantusDB server in its own process (``pycemaker db``, as production does) and writes ``--hours`` of
   simulated history per service (``svc-01``..``svc-N``, each its own app: :func:`telemetry.simulator.fleet_service`;
   written as bench/fleet_bench.py writes them: rollups for every hour, raw samples for the last ``--raw-minutes``);
2. runs one whole :func:`training.pipeline.train_once` with the production settings (every candidate kind, the
   LSTM's fit within ``train_budget_s``) over every service: each service's frame read from its rollups, one model
   pooled across the fleet, every candidate judged on every service's held-back block, the per-service choice;
3. records the run's seconds (whole, reading, fitting every candidate, judging and registering), what it promoted,
   how many services it scored and assigned a model of their own, the LSTM's training windows and epochs, and this
   process's peak resident memory during the run (reset before it: each size's own, whatever ran before).

The default ``--hours 36`` is the shortest history the LSTM's split takes at the production input and horizon
(120 + 180 minutes in a 15 % block: 2,001 minutes), with a margin. Writing 1,000 services of it takes about 20
minutes on 2 cores and the run as long (the JSON's ``write_s`` and ``train_s``); ``--sizes 20 200`` is the quick run.

    PYTHONPATH=. .venv/bin/python bench/fleet_train_bench.py [--sizes 20 200 1000] [--hours 36] [--keep]

``--keep`` keeps the sizes the JSON already holds that this run does not measure (each with its date).

Figures go to ``bench/results/fleet_train.json`` and docs/scaling.md (between its ``figures:fleet_train`` markers).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.fleet_bench import DOC, dates, fleet_arguments, header, run_and_record, write_fleet  # noqa: E402, F401 (DOC: where run_and_record writes, as tests/bench reads it)
from bench.serve_bench import database_process, free_port, stop_process  # noqa: E402
from forecasting import registry  # noqa: E402
from telemetry.settings import load_settings  # noqa: E402

UTC = dt.timezone.utc
log = logging.getLogger("fleet_train")


def reset_peak_rss() -> None:
    """Start this process's peak resident memory afresh (Linux: ``clear_refs`` 5 resets VmHWM), so each size's peak
    is its own, whichever ran before it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        log.warning("the peak RSS cannot be reset here: each size's peak includes the sizes before it")


def peak_rss_kib() -> int:
    """This process's peak resident memory since :func:`reset_peak_rss` (VmHWM; ru_maxrss where /proc has none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_size(count: int, args, work: Path) -> dict:
    from training.pipeline import train_once

    settings = dataclasses.replace(
        load_settings(), mongo_uri=f"mongodb://127.0.0.1:{free_port()}/", database=f"train{count}",
        models_dir=work / f"models-{count}", max_services=max(1000, count),
    )
    result: dict = {"services": count}
    server, db = database_process(work / f"db-{count}", settings, work / f"db-{count}.log")
    try:
        result["write_s"] = round(write_fleet(db, settings, count, args.hours, jobs=args.jobs, raw_minutes=args.raw_minutes), 1)
        log.info("%d services written in %.0f s", count, result["write_s"])
        reset_peak_rss()
        began = time.perf_counter()
        run = train_once(settings, db, days=args.hours / 24, progress_bar=False)
        result["train_s"] = round(time.perf_counter() - began, 1)
        metrics = run.metrics
        seconds = metrics.get("seconds", {})
        result.update({
            "status": run.status,
            "error": run.error,
            "read_s": seconds.get("read"),
            "fit_all_s": seconds.get("fit_all"),
            "judge_and_register_s": seconds.get("judge_and_register"),
            "candidates_s": seconds.get("candidates"),
            "plan": metrics.get("plan"),
            "trained_services": len(metrics.get("services", [])),
            "scored_services": len(metrics.get("scored_services", [])),
            "assigned_own_model": len(metrics.get("assignments", {}) or {}),
            "promoted": registry.read_card(settings.models_dir, run.version).kind if run.promoted and run.version else None,
            "peak_rss_mib": round(peak_rss_kib() / 1024, 1),
        })
        lstm = [card for card in registry.list_versions(settings.models_dir) if card.kind == "lstm"]
        if lstm:
            result["lstm"] = {key: lstm[-1].training.get(key) for key in ("train_windows", "epochs", "stopped_by", "epoch_seconds_mean")}
        db.client.close()
    finally:
        stop_process(server)
    return result


def render(results: dict) -> str:
    """The docs/scaling.md block, from the JSON."""
    lines = [
        f"Measured by `bench/fleet_train_bench.py` ({results['machine']}, {dates(results)}; {results['hours']:g} h of "
        f"history per service, production settings, an empty registry: every candidate kind, the LSTM's fit within "
        f"{results['train_budget_s']:g} s"
        + (f" on at most {results['train_max_windows']:,} training windows" if results.get("train_max_windows") else "") + "):",
        "",
        "| services | `train --once` | reading frames | fitting every candidate | judging and registering "
        "| services scored | assigned a model of their own | promoted | LSTM: training windows, epochs | peak RSS (trainer) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in results["sizes"]:
        if size["status"] != "succeeded":
            lines.append(f"| {size['services']} | failed: {size['error']} | | | | | | | | |")
            continue
        lstm = f"{size['lstm']['train_windows']:,}, {size['lstm']['epochs']}" if size.get("lstm") else "-"
        lines.append(
            f"| {size['services']} | {size['train_s']:.0f} s | {size['read_s']:.0f} s | {size['fit_all_s']:.0f} s "
            f"| {size['judge_and_register_s']:.0f} s | {size['scored_services']} | {size['assigned_own_model']} "
            f"| {size['promoted'] or '-'} | {lstm} | {size['peak_rss_mib']:.0f} MiB |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 200], help="fleet sizes (default 20 200)")
    parser.add_argument("--hours", type=float, default=36.0, help="hours of history per service (default 36: the LSTM's minimum and a margin)")
    parser.add_argument("--raw-minutes", type=float, default=10.0, help="raw samples kept for the last N minutes (rollups for every hour)")
    fleet_arguments(parser, "fleet_train.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    results = {
        **header("bench/fleet_train_bench.py"),
        "hours": args.hours,
        "raw_minutes": args.raw_minutes,
        "train_budget_s": load_settings().train_budget_s,
        "train_max_windows": load_settings().train_max_windows,
    }
    run_and_record(results, args, run_size, "pycemaker-fleet-train-", "fleet_train", render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
