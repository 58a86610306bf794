"""One training run, end to end.

store (last N days) -> per-minute frame -> fit -> validation scores -> ONNX export, checker,
parity -> gates -> registry (add the version; activate it or mark it rejected) -> prune ->
a ``training_runs`` record.

Safety: the version directory appears whole (:func:`telemetry.registry.add_version`), and
``current`` moves only at the very end, by :func:`telemetry.registry.activate` (write, then
rename), so a run that fails or is killed at any point leaves the current model untouched.
One training at a time per registry: a lock file in ``models_dir`` (``flock``) is held for
the whole run, by ``train --once`` and by the scheduler alike.

Distributed (DDP, docs/scaling.md): every process reads the same minutes and trains; only
global rank zero takes the lock, records the run, exports, judges and writes the registry.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import secrets
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from telemetry import calibration, frames, registry, store, training_runs
from telemetry.catalogue import STREAMS
from telemetry.health import floor_minute
from telemetry.settings import Settings
from telemetry.windows import FEATURES, HEALTH, TARGETS
from training import gates
from training.datamodule import NotEnoughData, WindowDataModule
from training.export import ExportError, ExportReport, export_and_verify
from training.fit import FitConfig, FitResult, StopWhenSet, fit

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
LOCK_FILE = ".training.lock"
#: The end (exclusive, UTC) of the data a distributed run trains on, so that every process reads the same
#: minutes. Rank zero sets it for the processes Lightning's launcher starts (they inherit the environment);
#: a torchrun or SLURM job exports it once for all of them (docs/scaling.md).
DATA_END_ENV = "PYCEMAKER_TRAIN_DATA_END"
#: Rank variables of the launchers: torchrun (RANK, LOCAL_RANK, GROUP_RANK), SLURM (SLURM_PROCID), and
#: Lightning's own launcher in the processes it starts or on another machine (LOCAL_RANK, NODE_RANK).
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
#: ``RunResult.status`` of a distributed run's process other than rank zero: it trained, rank zero did the rest.
FOLLOWER = "follower"
REPO = Path(__file__).resolve().parents[1]


class TrainingBusy(RuntimeError):
    """Another training run holds this registry's lock."""


class RunStopped(RuntimeError):
    """The run was asked to stop (the trainer is shutting down) before it finished."""


class DistributedSetupError(RuntimeError):
    """A distributed run cannot start as asked (its processes would not read the same data)."""


def _int_env(name: str, default: int = 0) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def process_is_rank_zero() -> bool:
    """Whether this process is global rank zero of a distributed run (or not part of one)."""
    return all(_int_env(name) == 0 for name in RANK_VARIABLES)


def launched_from_outside() -> bool:
    """Whether a launcher started this process as one of several (torchrun, srun, Lightning's children)."""
    started = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE")
    return any(name in os.environ for name in started) or _int_env("SLURM_NTASKS", 1) > 1


def pinned_data_end() -> dt.datetime | None:
    """``$PYCEMAKER_TRAIN_DATA_END`` as a whole UTC minute (None when unset)."""
    raw = os.environ.get(DATA_END_ENV, "").strip()
    if not raw:
        return None
    try:
        end = dt.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise DistributedSetupError(f"{DATA_END_ENV}={raw!r} is not an ISO-8601 time") from exc
    if end.tzinfo is None:
        raise DistributedSetupError(f"{DATA_END_ENV}={raw!r} has no time zone: add Z or an offset")
    return floor_minute(end)


class TrainingLock:
    """An exclusive, non-blocking ``flock`` on ``models_dir/.training.lock``.

    Each instance opens its own file description, so two threads of one process exclude each
    other as two processes do. The kernel drops the lock when the holder dies (no stale locks).
    """

    def __init__(self, models_dir: Path):
        self.path = Path(models_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "TrainingLock":
        if not self.acquire():
            raise TrainingBusy(f"another training run holds {self.path}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


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


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("PYCEMAKER_GIT_COMMIT", "unknown")


def package_versions() -> dict[str, str]:
    out = {}
    for name in ("torch", "lightning", "onnx", "onnxscript", "onnxruntime", "numpy", "pandas"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def json_safe(value: Any) -> Any:
    """Non-finite floats become None (a card is JSON, and NaN is not), numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def newest_sample_time(db) -> dt.datetime | None:
    """The newest sample of any stream.

    Probes the last day first with an indexed range query: a sorted ``find_one`` (what
    :func:`telemetry.store.data_range` does) scans the whole collection on the embedded
    server, ~3 s per stream on 7 days. Falls back to that for older data.
    """
    since = dt.datetime.now(UTC) - dt.timedelta(days=1)
    newest = None
    for stream in STREAMS:
        cursor = db[stream.collection].find({"time_series": {"$gte": since}}, {"_id": 0, "time_series": 1})
        for doc in cursor:
            t = doc["time_series"]
            newest = t if newest is None or t > newest else newest
    if newest is not None:
        return newest.astimezone(UTC)
    span = store.data_range(db)
    return span[1] if span else None


def connect_store(settings: Settings):
    """The trainer's database handle: one read may take ``train_read_timeout_s`` (a week of samples)."""
    return store.connect(settings, socket_timeout_ms=int(settings.train_read_timeout_s * 1000))


def load_training_frame(db, settings: Settings, days: float, end: dt.datetime | None = None) -> pd.DataFrame:
    """The last ``days`` of whole minutes in the store (up to ``end``, a whole minute, when given), as a
    per-minute frame.

    The newest minute may still be filling, so it is left out; minutes before the first
    scored one (the store holds less than ``days``) are trimmed.
    """
    if end is None:
        newest = newest_sample_time(db)
        if newest is None:
            raise NotEnoughData("no samples in the database: run `pycemaker simulate` or `pycemaker collect` first")
        end = floor_minute(newest)
    start = end - dt.timedelta(days=days)
    log.info("reading %s .. %s from the store", start.isoformat(), end.isoformat())
    frame = frames.load_minute_frame(db, start, end, settings)
    known = frame.index[frame["health"].notna()]
    if len(known) == 0:
        raise NotEnoughData(f"no scorable minute between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M}")
    # The first scored minute may have begun mid-minute: start at the next one.
    return frame.loc[known[0] + pd.Timedelta(minutes=1) :]


def window_data(frame: pd.DataFrame, settings: Settings, config: FitConfig) -> WindowDataModule:
    return WindowDataModule(
        frame, settings.input_minutes, settings.horizon_minutes,
        batch_size=config.batch_size, train_stride=config.train_stride, seed=config.seed,
    )


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
    version = registry.new_version(suffix=secrets.token_hex(3))
    card = registry.ModelCard(
        version=version,
        created_at=dt.datetime.now(UTC).isoformat(timespec="seconds"),
        input_minutes=settings.input_minutes,
        horizon_minutes=settings.horizon_minutes,
        quantiles=list(settings.quantiles),
        features=list(FEATURES),
        targets=list(TARGETS),
        scaling=data.scaling.to_dict(),
        health_source=validation.health_source,
        data_range=data.data_range(),
        calibration=calibration.to_card(offsets, len(data.validation)),
        metrics={
            **validation.metrics,
            "uncalibrated": {"health_mae": raw.metrics["health_mae"]["model"], "health_band": raw.metrics["health_band"]},
            "val_pinball_loss": fitted.best_val_loss,
            "test": test.metrics,
        },
        training={
            "seconds": round(time.perf_counter() - began, 2),
            "fit_seconds": round(fitted.fit_seconds, 2),
            "export_seconds": round(exported - scored, 2),
            "epochs": fitted.epochs,
            "best_epoch": fitted.best_epoch,
            "stopped_by": fitted.stopped_by,
            "epoch_seconds_mean": round(fitted.mean_epoch_seconds, 3),
            "epoch_seconds": [round(s, 3) for s in fitted.epoch_seconds],
            "history": fitted.history,
            "train_windows": len(data.train),
            "device": fitted.device,
            "world_size": fitted.world_size,
            "precision": fitted.precision,
            "quick": quick,
            "config": config.to_dict(),
            "git_commit": git_commit(),
            "packages": package_versions(),
        },
        onnx=report.to_dict(),
    )
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
        pinned = config is not None and config.distributed and pinned_data_end() is None and _pin_data_end(db)
        try:
            return _run(settings, db, days, config, quick, trigger, progress_bar, stop)
        finally:
            if pinned:
                os.environ.pop(DATA_END_ENV, None)
    finally:
        if lock is not None:
            lock.release()


def _pin_data_end(db) -> bool:
    """Rank zero fixes the end of the data before Lightning starts the other processes (they inherit it)."""
    try:
        newest = newest_sample_time(db)
    except Exception:  # the database: the run reads it again, fails, and is recorded as usual
        return False
    if newest is None:
        return False  # no data: likewise
    os.environ[DATA_END_ENV] = floor_minute(newest).isoformat()
    return True


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


def _sci(value: Any) -> str:
    return f"{value:.1e}" if isinstance(value, (int, float)) else "n/a"


def summarise(card: registry.ModelCard) -> str:
    """One line per headline figure, for the terminal."""
    h = card.metrics.get("health_mae", {})
    gate = card.metrics.get("test", {}).get("gate", {})
    rmse = gate.get("health_rmse", {})
    fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.4f}"  # noqa: E731
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
