"""One training run, end to end.

store (last N days) -> per-minute frame -> fit -> validation scores -> ONNX export, checker,
parity -> gates -> registry (add the version; activate it or mark it rejected) -> prune ->
a ``training_runs`` record.

Safety: the version directory appears whole (:func:`forecasting.registry.add_version`), and
``current`` moves only at the very end, by :func:`forecasting.registry.activate` (write, then
rename), so a run that fails or is killed at any point leaves the current model untouched.
One training at a time per registry: a lock file in ``models_dir`` (``flock``) is held for
the whole run, by ``train --once`` and by the scheduler alike.

Distributed (DDP, docs/scaling.md): every process reads the same minutes and trains; only
global rank zero takes the lock, records the run, exports, judges and writes the registry.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from forecasting import calibration, registry, training_runs
from forecasting.contract import HEALTH, TARGETS
from telemetry.settings import Settings
from training import gates
from training.card import json_safe, lstm_card
from training.data import connect_store, load_training_frame, window_data
from training.datamodule import NotEnoughData, WindowDataModule
from training.distributed import DATA_END_ENV, DistributedSetupError, launched_from_outside, pin_data_end, pinned_data_end, process_is_rank_zero
from training.export import ExportError, ExportReport, export_and_verify
from training.fit import FitConfig, FitResult, StopWhenSet, fit
from training.lock import TrainingBusy, TrainingLock

log = logging.getLogger(__name__)
#: ``RunResult.status`` of a distributed run's process other than rank zero: it trained, rank zero did the rest.
FOLLOWER = "follower"


class RunStopped(RuntimeError):
    """The run was asked to stop (the trainer is shutting down) before it finished."""


@dataclass
class Candidate:
    """A fitted, exported and scored model, not yet in the registry."""

    onnx_path: Path
    card: registry.ModelCard
    validation: gates.Validation
    #: The held-back windows the gates judge on.
    test: gates.Validation
    export: ExportReport
    fit: FitResult
    data: WindowDataModule


@dataclass
class RunResult:
    run_id: str | None
    status: str
    version: str | None = None
    promoted: bool = False
    reason: str = ""
    error: str | None = None
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


def build_candidate(
    frame: pd.DataFrame,
    settings: Settings,
    config: FitConfig,
    workdir: Path,
    *,
    progress_bar: bool = True,
    stop: threading.Event | None = None,
    quick: bool = False,
) -> Candidate:
    """Fit on ``frame``, score on its validation windows, export and check; nothing touches the registry."""
    began = time.perf_counter()
    data = window_data(frame, settings, config)
    data.setup("fit")
    extra = [StopWhenSet(stop)] if stop is not None else []
    fitted = fit(data, tuple(settings.quantiles), config, progress_bar=progress_bar, callbacks=extra)
    if stop is not None and stop.is_set():
        raise RunStopped("stopped while fitting")

    def predict(windows_) -> np.ndarray:
        with torch.no_grad():
            return torch.cat(
                [fitted.model(torch.from_numpy(windows_.inputs[i : i + 512])) for i in range(0, len(windows_), 512)]
            ).numpy()

    def score(scaled, windows_, health_source=None, offsets=None) -> gates.Validation:
        return gates.validate(
            scaled, data.values, windows_.origins, data.scaling, tuple(settings.quantiles),
            settings.input_minutes, settings, health_source=health_source, health_offsets=offsets,
        )

    # Validation chooses the health source and calibrates the health quantiles on its residuals ...
    val_scaled, test_scaled = predict(data.validation), predict(data.test)
    raw = score(val_scaled, data.validation)
    offsets = calibration.conformal_offsets(raw.health(), raw.actual[:, :, HEALTH], settings.quantiles)
    validation = score(val_scaled, data.validation, raw.health_source, offsets)
    # ... and the held-back test windows, where no choice was made, judge the candidate (training/gates.py).
    test = score(test_scaled, data.test, raw.health_source, offsets)
    scored = time.perf_counter()
    onnx_path = workdir / registry.MODEL
    report = export_and_verify(
        fitted.model, onnx_path, data.test.inputs, settings.horizon_minutes, len(TARGETS),
        len(settings.quantiles), threads=settings.onnx_threads,
    )
    exported = time.perf_counter()
    card = lstm_card(settings, config, data, fitted, validation, raw, test, offsets, report,
                     seconds=time.perf_counter() - began, export_seconds=exported - scored, quick=quick)
    return Candidate(onnx_path, card, validation, test, report, fitted, data)


def judge(candidate: Candidate, frame: pd.DataFrame, settings: Settings, bootstrap: bool = False) -> gates.Decision:
    """Run the gates against seasonal naive and the current model, on the candidate's held-back test windows.

    ``bootstrap``: a quick run on a fresh install (see :mod:`training.gates`).
    """
    current_version = registry.current_version(settings.models_dir)
    current = None
    if current_version:
        try:
            health = gates.current_model_health(
                settings.models_dir, current_version, frame, candidate.test.origins, settings
            )
            current = (current_version, health)
        except gates.NotComparable as exc:
            current = (current_version, exc)
    return gates.decide(
        candidate.test, candidate.export.parity_max_abs_diff, candidate.card.onnx["parity_tolerance"], current,
        settings, bootstrap=bootstrap,
    )


def register(candidate: Candidate, decision: gates.Decision, settings: Settings) -> registry.ModelCard:
    """Add the candidate to the registry, then activate it or mark it rejected, then prune."""
    card = candidate.card
    card.metrics["gates"] = decision.checks
    card.metrics, card.training, card.onnx = json_safe(card.metrics), json_safe(card.training), json_safe(card.onnx)
    registry.add_version(settings.models_dir, candidate.onnx_path, card)
    if decision.promote:
        card = registry.activate(settings.models_dir, card.version, reason=decision.reason)
    else:
        card = registry.reject(settings.models_dir, card.version, decision.reason)
    pruned = registry.prune(settings.models_dir, settings.keep_versions)
    if pruned:
        log.info("pruned %d old version(s): %s", len(pruned), ", ".join(pruned))
    return card


def train_once(
    settings: Settings,
    db=None,
    *,
    days: float | None = None,
    config: FitConfig | None = None,
    quick: bool = False,
    trigger: str = "cli",
    progress_bar: bool = True,
    stop: threading.Event | None = None,
    already_locked: bool = False,
) -> RunResult:
    """One whole run (see the module doc). Never raises for a failed run: the result says so.

    Raises :class:`TrainingBusy` (before recording anything) when another run holds the lock, and
    :class:`DistributedSetupError` when a distributed run's processes could not share their data.
    In a distributed run (``config.distributed``), a process other than rank zero only reads and
    trains (:func:`_follow`).
    """
    if config is not None and config.distributed:
        if launched_from_outside() and pinned_data_end() is None:
            raise DistributedSetupError(
                f"a distributed run started by a launcher needs {DATA_END_ENV} (the same ISO-8601 time in every "
                "process) so that all of them train on the same minutes: see docs/scaling.md"
            )
        if not process_is_rank_zero():
            return _follow(settings, db, days, config)
    lock = None
    if not already_locked:
        lock = TrainingLock(settings.models_dir)
        if not lock.acquire():
            raise TrainingBusy(f"another training run holds {lock.path}")
    try:
        db = db if db is not None else connect_store(settings)
        abandoned = training_runs.fail_abandoned_runs(db, training_runs.registry_of(settings.models_dir))
        if abandoned:
            log.warning("marked %d abandoned run(s) as failed", abandoned)
        pinned = config is not None and config.distributed and pinned_data_end() is None and pin_data_end(db)
        try:
            return _run(settings, db, days, config, quick, trigger, progress_bar, stop)
        finally:
            if pinned:
                os.environ.pop(DATA_END_ENV, None)
    finally:
        if lock is not None:
            lock.release()


def _follow(settings: Settings, db, days: float | None, config: FitConfig) -> RunResult:
    """A distributed run's process other than rank zero: read the same minutes and train. The lock, the run
    record, the export, the gates and the registry are rank zero's alone."""
    began = time.perf_counter()
    db = db if db is not None else connect_store(settings)
    days = settings.train_days if days is None else days
    frame = load_training_frame(db, settings, days, end=pinned_data_end())
    fit(window_data(frame, settings, config), tuple(settings.quantiles), config, progress_bar=False)
    return RunResult(None, FOLLOWER, seconds=time.perf_counter() - began)


def _run(settings, db, days, config, quick, trigger, progress_bar, stop) -> RunResult:
    days = settings.train_days if days is None else days
    config = config or (FitConfig.quick(settings) if quick else FitConfig.from_settings(settings))
    params = {"days": days, "quick": quick, "config": config.to_dict(), "input_minutes": settings.input_minutes,
              "horizon_minutes": settings.horizon_minutes}
    run_id = training_runs.start_run(db, trigger, params, registry=training_runs.registry_of(settings.models_dir))
    began = time.perf_counter()
    version = None
    log.info("training run %s (%s) started", run_id, trigger)
    try:
        frame = load_training_frame(db, settings, days, end=pinned_data_end() if config.distributed else None)
        read_seconds = time.perf_counter() - began
        with tempfile.TemporaryDirectory(prefix="pycemaker-train-") as workdir:
            candidate = build_candidate(
                frame, settings, config, Path(workdir), progress_bar=progress_bar, stop=stop, quick=quick
            )
            gates_began = time.perf_counter()
            decision = judge(candidate, frame, settings, bootstrap=quick)
            candidate.card.training["read_seconds"] = round(read_seconds, 2)
            candidate.card.training["gates_seconds"] = round(time.perf_counter() - gates_began, 2)
            if stop is not None and stop.is_set():
                raise RunStopped("stopped before promotion")
            candidate.card.training["run_seconds"] = round(time.perf_counter() - began, 2)
            version = candidate.card.version
            card = register(candidate, decision, settings)
    except BaseException as exc:  # recorded, then re-raised only for interrupts
        error = f"{type(exc).__name__}: {exc}"
        if version is not None and (settings.models_dir / version).is_dir():
            _mark_failed(settings, version, error)
        try:
            training_runs.finish_run(db, run_id, training_runs.FAILED, version=version, error=error)
        except Exception:  # the database may be what failed
            log.exception("could not record the failed run %s", run_id)
        if not isinstance(exc, Exception):
            raise
        expected = isinstance(exc, (NotEnoughData, RunStopped, ExportError))
        log.log(logging.WARNING if expected else logging.ERROR, "training run %s failed: %s", run_id, error,
                exc_info=not expected)
        return RunResult(run_id, training_runs.FAILED, version=version, error=error, seconds=time.perf_counter() - began)

    promoted = card.status == registry.STATUS_PROMOTED
    metrics = {
        "health_mae": card.metrics["health_mae"],
        "test_gate": card.metrics["test"]["gate"],
        "health_source": card.health_source,
        "parity_max_abs_diff": card.onnx["parity_max_abs_diff"],
        "epochs": card.training["epochs"],
        "epoch_seconds_mean": card.training["epoch_seconds_mean"],
        "device": card.training["device"],
    }
    training_runs.finish_run(
        db, run_id, training_runs.SUCCEEDED, version=card.version, promoted=promoted, metrics=metrics, reason=card.reason
    )
    seconds = time.perf_counter() - began
    log.info("training run %s: version %s %s in %.1f s (%s)", run_id, card.version,
             "promoted" if promoted else "rejected", seconds, card.reason)
    return RunResult(run_id, training_runs.SUCCEEDED, card.version, promoted, card.reason, None, seconds, metrics)


def _mark_failed(settings: Settings, version: str, error: str) -> None:
    """A version that made it into the registry before the run failed is marked rejected (never current)."""
    try:
        card = registry.read_card(settings.models_dir, version)
        if card.status != registry.STATUS_PROMOTED:
            registry.reject(settings.models_dir, version, f"run failed: {error}")
    except registry.RegistryError:
        log.exception("could not mark version %s as rejected", version)
