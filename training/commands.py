"""Subcommands for the training side: ``train``, ``pretrain`` and ``models``.

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

from telemetry.settings import CANDIDATE_KINDS, Settings, override

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a forecasting model and promote it if it passes the gates")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="one training run, then exit")
    mode.add_argument("--schedule", action="store_true",
                      help="retrain every $PYCEMAKER_TRAIN_INTERVAL_HOURS (first run now) and serve training requests")
    p.add_argument("--days", type=float, help="days of history to train on (default: $PYCEMAKER_TRAIN_DAYS or 7)")
    p.add_argument("--end", type=_time, help="with --once: train on the --days before this time (ISO 8601 with a zone; "
                                             "default: the newest sample), e.g. the first 70%% of an imported history")
    p.add_argument("--kinds", type=_kinds, help="candidate kinds to fit and compare, comma-separated "
                                                f"(default: $PYCEMAKER_CANDIDATE_KINDS or {','.join(CANDIDATE_KINDS)})")
    p.add_argument("--max-epochs", type=int, help="the LSTM's epoch limit (default: $PYCEMAKER_MAX_EPOCHS or 30)")
    p.add_argument("--quick", action="store_true",
                   help="a smaller, faster LSTM (about a minute on 2 cores); judged like any other candidate")
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

    p = sub.add_parser("pretrain", help="pretrain the base LSTM on sampled app-family members (models/base/<version>/)")
    p.add_argument("--apps", type=int, default=256, help="family members to train on (default 256)")
    p.add_argument("--validation-apps", type=int, default=4, help="other members that pick the epoch and calibrate (default 4)")
    p.add_argument("--held-out-apps", type=int, default=8, help="unseen members it is scored on, zero-shot (default 8)")
    p.add_argument("--days", type=float, default=2.0, help="simulated days per app (default 2)")
    p.add_argument("--stride", type=int, default=10, help="minutes between two windows of an app (default 10)")
    p.add_argument("--first-seed", type=int, default=0, help="first profile seed sampled (default 0)")
    p.add_argument("--epochs", type=int, default=20, help="epoch limit (default 20)")
    p.add_argument("--hidden-size", type=int, default=64, help="LSTM width (default 64)")
    p.add_argument("--health-weight", type=float, default=2.0,
                   help="the health target's weight in the loss, beside 1 for each stream (default 2)")
    p.add_argument("--members", type=int, default=4,
                   help="networks pretrained in turn, from seeds --seed, +1, ..., and averaged (default 4; 1: one network)")
    p.add_argument("--seed", type=int, help="the first member's seed (default: $PYCEMAKER_SEED)")
    p.add_argument("--combine", metavar="VERSION,...",
                   help="average these base models instead (one network each, this recipe, pretrained apart: "
                        "e.g. two --members 1 runs at a time with other --seed on two cores); fits nothing")
    p.add_argument("--level-sources", action=argparse.BooleanOptionalAction, default=True,
                   help="the recent level as base sources beside the seasons, gated by the window (default: on)")
    p.add_argument("--min-scale", type=float, default=0.5,
                   help="the floor of a window's spread in the network's per-window scaling, in scaled units (default 0.5)")
    p.add_argument("--budget", type=float, default=780.0, help="wall-clock limit of the fit in seconds (default 780; 0: none)")
    p.add_argument("--threads", type=int, help="CPU threads torch trains with (default: $PYCEMAKER_TRAIN_THREADS)")
    p.add_argument("--accelerator", choices=("auto", "cpu", "gpu"), default="auto", help="default auto: a GPU when present")
    p.add_argument("--models-root", help="registry root; the model goes to ROOT/base/ (default: $PYCEMAKER_MODELS_DIR)")
    p.add_argument("--results", default="bench/results/pretrain.json", help="where the run's figures go ('' : nowhere)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_pretrain)

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


def _time(text: str):
    import datetime as dt

    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no zone: add Z or +00:00")
    return value.astimezone(dt.timezone.utc).replace(second=0, microsecond=0)


def _kinds(text: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in text.split(",") if k.strip())


def _placement(args: argparse.Namespace) -> dict:
    """The distributed flags given, as FitConfig fields."""
    given = {"strategy": args.strategy, "devices": args.devices, "num_nodes": args.num_nodes, "accelerator": args.accelerator}
    return {k: v for k, v in given.items() if v is not None}


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    from training.data import connect_store

    placement = _placement(args)
    if (placement or args.end) and args.schedule:
        log.error("--end, --strategy, --devices, --num-nodes and --accelerator go with --once: "
                  "the scheduler trains on the newest data, in one process")
        return 2
    settings = override(settings, train_days=args.days, max_epochs=args.max_epochs, candidate_kinds=args.kinds)
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
        result = train_once(settings, db, end=args.end, config=config, trigger="cli", progress_bar=not args.no_progress)
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


def run_pretrain(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from forecasting import registry
    from training.fit import FitConfig
    from training.pretrain import PretrainConfig, pretrain

    combine = [v for v in (args.combine or "").split(",") if v]
    if min(args.apps, args.validation_apps, args.epochs, args.stride, args.members) < 1 or min(args.days, args.min_scale, args.health_weight) <= 0:
        log.error("--apps, --validation-apps, --epochs, --stride and --members must be at least 1, and --days, --min-scale "
                  "and --health-weight positive")
        return 2
    config = PretrainConfig(apps=args.apps, validation_apps=args.validation_apps, held_out_apps=max(0, args.held_out_apps),
                            days=args.days, first_seed=args.first_seed, stride=args.stride, min_scale=args.min_scale,
                            members=len(combine) if combine else args.members)
    fit_config = FitConfig.from_settings(
        settings, max_epochs=args.epochs, hidden_size=args.hidden_size, max_time_s=args.budget or None,
        health_weight=args.health_weight, level_sources=args.level_sources,
        accelerator=args.accelerator, patience=4, **({"threads": args.threads} if args.threads else {}),
        **({"seed": args.seed} if args.seed is not None else {}),
    )
    root = Path(args.models_root) if args.models_root else settings.models_dir
    try:
        model = pretrain(settings, config, fit_config, root, Path(args.results) if args.results else None,
                         progress_bar=not args.no_progress, combine=combine)
    except (ValueError, registry.RegistryError) as exc:
        log.error("%s", exc)
        return 2
    figures, scores = model.card.training, model.card.metrics["held_out_zero_shot"]
    ratio = scores["median_rmse_ratio_to_seasonal_naive"]
    sys.stdout.write(
        f"base model {model.card.version} in {model.directory}\n"
        f"  {figures['epochs']} epochs, {figures['seconds']['total']:.0f} s in all on {figures['device']} ({figures['precision']})\n"
        f"  held-out apps, zero-shot: health RMSE over {scores['gate_minutes']} min = {_fmt(ratio, '.2f')} x seasonal naive's (median)\n"
    )
    return 0


def _fmt(value: Any, spec: str = ".4f") -> str:
    return format(value, spec) if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def candidate_rows(selection: dict) -> list[str]:
    """One line per candidate of a run (training/selection.py): its scores on the held-back windows and its verdict."""
    lines = [f"    {'kind':<15} {'version':<40} {'MAE':>7} {'RMSE':>7} {'band':>5} {'warned':>7} {'false':>5}  verdict: why"]
    for c in selection.get("candidates", []):
        s = c.get("scores", {})
        warned = f"{s.get('warned', 0)}/{s.get('episodes', 0)}" if s.get("episodes") else "-"
        lines.append(
            f"    {c['kind'] + (' (champion)' if c.get('champion') else ''):<15} {c['version']:<40} "
            f"{_fmt(s.get('health_mae')):>7} {_fmt(s.get('health_rmse')):>7} {_fmt(s.get('coverage'), '.0%'):>5} {warned:>7} "
            f"{s.get('false_alarms', '-') if s.get('windows') else '-':>5}  {c.get('verdict', '')}: {c.get('why', '')[:120]}"
        )
    for f in selection.get("failed", []):
        lines.append(f"    {f['kind']:<15} {'-':<40} {'-':>7} {'-':>7} {'-':>5} {'-':>7} {'-':>5}  {f.get('verdict', 'failed')}: {f['error'][:120]}")
    return lines


def summarise(card) -> str:
    """The run behind ``card``, for the terminal: what serves, every candidate and why it won or lost."""
    sel = card.selection or {}
    head = (f"run {sel.get('run_id', '?')}: {sel.get('plan', '?')} plan, season "
            f"{str(sel.get('season_minutes')) + ' min' if sel.get('season_minutes') else 'none found'}; "
            f"{sel.get('reason', card.reason)}\n"
            f"  history: {card.data_range.get('start', '?')[:16]} to {card.data_range.get('end', '?')[:16]} UTC "
            f"({card.data_range.get('minutes', '?')} minutes); scores over the first "
            f"{card.metrics.get('scores', {}).get('horizon_minutes', '-')} min of each "
            f"{'held-back window' if card.metrics.get('scores', {}).get('held_back', True) else 'window it was fitted on'}\n")
    return head + "\n".join(candidate_rows(sel)) + "\n"


def format_versions(settings: Settings) -> str:
    """Every version, grouped by the run that made it, newest run last; ``*`` marks the current one."""
    from forecasting import registry

    cards = registry.list_versions(settings.models_dir)
    if not cards:
        return f"no models in {settings.models_dir}: run `pycemaker train --once`\n"
    current = registry.current_version(settings.models_dir)
    runs: dict[str, list] = {}
    for card in cards:
        runs.setdefault((card.selection or {}).get("run_id") or card.version, []).append(card)
    lines = []
    for run_id, members in runs.items():
        first = members[0]
        sel = first.selection or {}
        lines.append(f"run {run_id} ({first.created_at[:16].replace('T', ' ')} UTC): {sel.get('reason') or first.reason}")
        for card in members:
            mark = "*" if card.version == current else " "
            s = card.metrics.get("scores", {})
            lines.append(f"  {mark} {card.kind:<15} {card.version:<40} {card.status:<9} MAE {_fmt(s.get('health_mae'))} "
                         f"band {_fmt(s.get('coverage'), '.0%')}  {card.reason[:100]}")
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
