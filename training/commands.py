"""Subcommands for the training side: ``train`` and ``models``.

Only argparse here: torch and Lightning are imported inside the handlers, so the CLI (and
the CPU serving image, which has no torch) can import this module. ``models`` needs no
torch at all.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from typing import Any

from telemetry.settings import Settings, override

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a forecasting model and promote it if it passes the gates")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="one training run, then exit")
    mode.add_argument("--schedule", action="store_true",
                      help="retrain every $PYCEMAKER_TRAIN_INTERVAL_HOURS (first run now) and serve training requests")
    p.add_argument("--days", type=float, help="days of history to train on (default: $PYCEMAKER_TRAIN_DAYS or 7)")
    p.add_argument("--max-epochs", type=int, help="epoch limit (default: $PYCEMAKER_MAX_EPOCHS or 30)")
    p.add_argument("--quick", action="store_true",
                   help="a small, fast model (about a minute on 2 cores): what `make demo` trains on a fresh install")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    dist = p.add_argument_group("several devices or machines, with --once (Lightning DDP; docs/scaling.md)")
    dist.add_argument("--strategy", choices=("auto", "ddp"), help="ddp: one process per device (default: auto)")
    dist.add_argument("--devices", type=_devices,
                      help="devices per machine: a number, auto, or GPU indices such as 0,1 (default 1)")
    dist.add_argument("--num-nodes", type=int,
                      help="machines, each running the same command under torchrun or srun (default 1)")
    dist.add_argument("--accelerator", choices=("auto", "cpu", "gpu"),
                      help="what to train on (default: auto, a GPU when present)")
    p.set_defaults(handler=run_train)

    p = sub.add_parser("models", help="the model registry: list versions, activate one (rollback)")
    models = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    q = models.add_parser("list", help="every version, newest last; * marks the current one")
    q.set_defaults(handler=run_models_list)
    q = models.add_parser("activate", help="make VERSION the current model (rollback)")
    q.add_argument("version")
    q.add_argument("--force", action="store_true", help="also activate a version the gates rejected")
    q.set_defaults(handler=run_models_activate)


def _devices(text: str) -> int | str:
    """``--devices``: a count (``2``, ``-1`` for all), ``auto``, or device indices (``0,1``), as Lightning takes them."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if text == "auto" or all(part.strip().isdigit() for part in text.split(",")):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: a number, auto, or indices such as 0,1")


def _placement(args: argparse.Namespace) -> dict:
    """The distributed flags given, as FitConfig fields."""
    given = {"strategy": args.strategy, "devices": args.devices, "num_nodes": args.num_nodes, "accelerator": args.accelerator}
    return {k: v for k, v in given.items() if v is not None}


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    from training.data import connect_store

    placement = _placement(args)
    if placement and args.schedule:
        log.error("--strategy, --devices, --num-nodes and --accelerator go with --once: "
                  "the scheduler trains in one process")
        return 2
    settings = override(settings, train_days=args.days, max_epochs=args.max_epochs)
    db = connect_store(settings)
    if args.schedule:
        from training.scheduler import run_schedule

        return run_schedule(settings, db)

    from forecasting import registry
    from training.fit import FitConfig
    from training.distributed import DistributedSetupError
    from training.lock import TrainingBusy
    from training.pipeline import FOLLOWER, train_once

    config = None
    if args.quick:
        config = FitConfig.quick(settings, **({"max_epochs": args.max_epochs} if args.max_epochs else {}), **placement)
    elif placement:
        config = FitConfig.from_settings(settings, **placement)
    try:
        result = train_once(settings, db, config=config, quick=args.quick, trigger="cli", progress_bar=not args.no_progress)
    except TrainingBusy as exc:
        log.error("%s", exc)
        return 3
    except DistributedSetupError as exc:
        log.error("%s", exc)
        return 2
    if result.status == FOLLOWER:
        return 0  # a distributed run's other process: rank zero reports the run
    if result.error:
        log.error("training failed: %s", result.error)
        return 1
    sys.stdout.write(summarise(registry.read_card(settings.models_dir, result.version)))
    return 0 if result.promoted else 4


def _sci(value: Any) -> str:
    return f"{value:.1e}" if isinstance(value, (int, float)) else "n/a"


def summarise(card) -> str:
    """One line per headline figure, for the terminal."""
    h = card.metrics.get("health_mae", {})
    gate = card.metrics.get("test", {}).get("gate", {})
    rmse = gate.get("health_rmse", {})
    fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"  # noqa: E731
    coverage = gate.get("coverage")
    return (
        f"version {card.version}: {card.status} ({card.reason})\n"
        f"  held-back test, {gate.get('horizon_minutes')} min: health RMSE model {fmt(rmse.get('model'))}, seasonal naive "
        f"{fmt(rmse.get('seasonal_naive'))}; P10-P90 coverage {'n/a' if coverage is None else f'{coverage:.1%}'}\n"
        f"  validation health MAE: model {fmt(h.get('model'))} ({card.health_source}; direct {fmt(h.get('direct'))}, "
        f"derived {fmt(h.get('derived'))}), seasonal naive {fmt(h.get('seasonal_naive'))}, persistence {fmt(h.get('persistence'))}\n"
        f"  {card.training.get('epochs')} epochs, {card.training.get('epoch_seconds_mean')} s/epoch on {card.training.get('device')}, "
        f"run {card.training.get('run_seconds')} s; ONNX parity {_sci(card.onnx.get('parity_max_abs_diff'))}\n"
    )


def format_versions(settings: Settings) -> str:
    from forecasting import registry

    cards = registry.list_versions(settings.models_dir)
    if not cards:
        return f"no models in {settings.models_dir}: run `pycemaker train --once`\n"
    current = registry.current_version(settings.models_dir)
    lines = [f"{'':1} {'version':<26} {'created (UTC)':<17} {'status':<9} {'RMSE':>7} {'x naive':>7} {'band':>5}  source    reason"]
    fmt = lambda v, spec: format(v, spec) if isinstance(v, (int, float)) else "-"  # noqa: E731
    for card in cards:
        gate = card.metrics.get("gates", {})  # the held-back test figures the gates judged (cards before: "-")
        lines.append(
            f"{'*' if card.version == current else ' '} {card.version:<26} {card.created_at[:16].replace('T', ' '):<17} "
            f"{card.status:<9} {fmt(gate.get('health_rmse'), '.4f'):>7} {fmt(gate.get('seasonal_naive_ratio'), '.2f'):>7} "
            f"{fmt(gate.get('coverage'), '.0%'):>5}  {card.health_source:<8}  {card.reason[:80]}"
        )
    return "\n".join(lines) + "\n"


def run_models_list(args: argparse.Namespace, settings: Settings) -> int:
    sys.stdout.write(format_versions(settings))
    return 0


def run_models_activate(args: argparse.Namespace, settings: Settings) -> int:
    from forecasting import registry

    try:
        card = registry.read_card(settings.models_dir, args.version)
    except registry.RegistryError as exc:
        log.error("%s", exc)
        return 1
    if card.status == registry.STATUS_REJECTED and not args.force:
        log.error("version %s was rejected (%s); add --force to activate it anyway", card.version, card.reason)
        return 1
    previous = registry.current_version(settings.models_dir)
    try:
        registry.activate(settings.models_dir, args.version, reason=f"activated by hand (was {previous or 'none'}); {card.reason}")
    except registry.RegistryError as exc:
        log.error("%s", exc)
        return 1
    sys.stdout.write(f"current model: {args.version} (was {previous or 'none'})\n")
    return 0
