"""Fitting: the Lightning Trainer around the network and the data module.

GPU when one is present (bf16 mixed precision), CPU otherwise; seeds fixed; early stopping
on the validation loss; the best checkpoint (kept in a temporary directory) is restored
before the model is handed back for export.

One device by default; ``strategy="ddp"`` with ``devices``/``num_nodes`` spreads the fit over
processes (Distributed Data Parallel, docs/scaling.md). Only global rank zero restores the
checkpoint and hands a model on: the others return after training.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from training.datamodule import WindowDataModule
from training.network import QuantileLSTM

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    """Hyperparameters and budgets of one fit (recorded in the model card)."""

    hidden_size: int = 64
    num_layers: int = 1
    batch_size: int = 256
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    health_weight: float = 2.0
    #: Harmonics of the minute of the hour handed to the head (30 can express any hourly shape).
    n_harmonics: int = 8
    #: The recent level as base sources beside the seasons, gated by the window (training/network.py).
    level_sources: bool = True
    max_epochs: int = 30
    #: Epochs without a better validation loss before stopping.
    patience: int = 5
    #: Keep every n-th training window (see :class:`training.datamodule.WindowDataModule`).
    train_stride: int = 2
    #: Most training windows kept (None: all); past it the stride widens (``Settings.train_max_windows``).
    max_train_windows: int | None = None
    #: Wall-clock budget for the fit in seconds (None: no limit); the best epoch so far is kept.
    max_time_s: float | None = None
    seed: int = 7
    #: torch CPU threads (ignored on GPU); see ``Settings.train_threads``.
    threads: int = 1
    #: Where the fit runs, passed to Lightning's Trainer: ``auto``/``cpu``/``gpu``; ``auto`` or ``ddp``;
    #: devices per machine (a number, ``auto``, or GPU indices ``"0,1"``); machines.
    accelerator: str = "auto"
    strategy: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1

    @classmethod
    def from_settings(cls, settings, **changes: Any) -> "FitConfig":
        """The full run's configuration: epochs, seed, threads and time budget from the settings."""
        values: dict[str, Any] = dict(
            max_epochs=settings.max_epochs, seed=settings.seed, threads=settings.train_threads,
            max_time_s=settings.train_budget_s or None, max_train_windows=settings.train_max_windows or None,
        )
        values.update(changes)
        return cls(**values)

    @classmethod
    def quick(cls, settings=None, **changes: Any) -> "FitConfig":
        """The preset ``pycemaker train --quick`` uses on a fresh install (see docs/model.md)."""
        values: dict[str, Any] = dict(seed=settings.seed, threads=settings.train_threads) if settings else {}
        values |= dict(hidden_size=32, max_epochs=40, patience=8, train_stride=2, learning_rate=5e-3, max_time_s=75.0)
        values.update(changes)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def distributed(self) -> bool:
        """Whether the fit may run as several processes (``devices="auto"`` may take every GPU)."""
        return str(self.devices) != "1" or self.num_nodes != 1 or str(self.strategy).startswith("ddp")


@dataclass
class FitResult:
    model: QuantileLSTM
    device: str
    precision: str
    epochs: int
    #: The epoch kept (0-based); -1: the starting weights (``initial_state``), which no epoch bettered.
    best_epoch: int
    #: The kept epoch's validation pinball loss and health median MAE (scaled units).
    best_val_loss: float
    best_val_health_mae: float
    epoch_seconds: list[float] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    fit_seconds: float = 0.0
    stopped_by: str = "max_epochs"
    #: Processes the fit ran on, and whether this one is global rank zero (the one that hands a model on).
    world_size: int = 1
    is_global_zero: bool = True

    @property
    def mean_epoch_seconds(self) -> float:
        return sum(self.epoch_seconds) / len(self.epoch_seconds) if self.epoch_seconds else 0.0


class EpochTimer(Callback):
    """Wall time (validation included) and validation figures of each training epoch."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.history: list[dict[str, float]] = []
        self._began = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._began = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and self._began:
            self.seconds.append(time.perf_counter() - self._began)
            self._began = 0.0
            metrics = trainer.callback_metrics
            self.history.append({k: round(float(metrics[k]), 5) for k in ("val_loss", "val_health_mae") if k in metrics})


class StopWhenSet(Callback):
    """Ends fitting after the current batch once ``event`` is set (the trainer is shutting down)."""

    def __init__(self, event) -> None:
        self.event = event
        self.fired = False

    def on_train_batch_end(self, trainer, *args) -> None:
        if self.event.is_set():
            trainer.should_stop = True
            self.fired = True


def device_name() -> str:
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def _quiet_lightning() -> None:
    # Lightning's tips about workers and tensor cores are noise for windows held in memory.
    for message in (".*does not have many workers.*", ".*tensor cores.*", ".*number of training batches.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", message=message)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.accelerators.cuda").setLevel(logging.WARNING)


def validation_scores(model: QuantileLSTM, data: WindowDataModule, config: FitConfig, precision: str) -> dict[str, float]:
    """``model``'s ``val_loss`` (pinball) and ``val_health_mae`` (health median MAE, scaled) on ``data``'s validation
    windows, as an epoch's are measured (nan: none)."""
    trainer = L.Trainer(accelerator=config.accelerator, devices=1, precision=precision, logger=False,
                        enable_progress_bar=False, enable_model_summary=False)
    results = trainer.validate(model, datamodule=data, verbose=False)
    return {key: float(results[0].get(key, float("nan"))) if results else float("nan") for key in ("val_loss", "val_health_mae")}


def fit(
    data: WindowDataModule,
    quantiles: tuple[float, ...],
    config: FitConfig,
    progress_bar: bool = True,
    callbacks: list[Callback] | None = None,
    network: Callable[..., QuantileLSTM] = QuantileLSTM,
    initial_state: dict[str, torch.Tensor] | None = None,
    epochs: int | None = None,
) -> FitResult:
    """Train a :class:`QuantileLSTM` (or a subclass, ``network``: its class, or a partial of it with its own
    hyperparameters) on ``data``; returns the best epoch's model, on CPU in float32. ``data``: any Lightning data module with the sizes of :class:`WindowDataModule`.
    ``initial_state``: weights to start from (fine-tuning the base model); the config's sizes must match them. They
    are scored on the validation windows first and handed back unchanged when no epoch's health MAE is lower.
    ``epochs``: train exactly that many epochs and keep the last (a refit, whose epoch count a selected fit chose:
    no early stopping, no checkpoint, the validation windows only drive the learning-rate schedule;
    ``config.max_time_s`` still bounds it)."""
    _quiet_lightning()
    L.seed_everything(config.seed, workers=True, verbose=False)
    data.setup("fit")
    cuda = torch.cuda.is_available() and config.accelerator in ("auto", "gpu", "cuda")
    if not cuda:
        torch.set_num_threads(max(1, config.threads))
    precision = "bf16-mixed" if cuda else "32-true"
    model = network(
        n_features=data.n_features,
        n_targets=data.n_targets,
        input_minutes=data.input_minutes,
        horizon_minutes=data.horizon_minutes,
        quantiles=quantiles,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        health_weight=config.health_weight,
        n_harmonics=config.n_harmonics,
        level_sources=config.level_sources,
    )
    fixed = epochs is not None  # a refit: nothing to choose among its epochs
    starting_score = float("nan")
    if initial_state is not None:
        model.load_state_dict(initial_state)
        if not fixed:
            starting_score = validation_scores(model, data, config, precision)["val_health_mae"]
    max_epochs = epochs if fixed else config.max_epochs
    timer = EpochTimer()
    stopper = EarlyStopping(monitor="val_loss", patience=config.patience, mode="min")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pycemaker-ckpt-") as ckpt_dir:
        # Early stopping watches the loss; the checkpoint kept is the epoch best at what the gates judge (a refit: neither).
        checkpoint = ModelCheckpoint(dirpath=ckpt_dir, monitor="val_health_mae", mode="min", save_top_k=1, filename="best")
        selecting = [] if fixed else [stopper, checkpoint]
        trainer = L.Trainer(
            accelerator=config.accelerator,
            strategy=config.strategy,
            devices=config.devices,
            num_nodes=config.num_nodes,
            precision=precision,
            max_epochs=max_epochs,
            max_time={"seconds": config.max_time_s} if config.max_time_s else None,
            callbacks=[*selecting, timer, *(callbacks or [])],
            enable_checkpointing=not fixed,
            enable_progress_bar=progress_bar,
            enable_model_summary=False,
            logger=False,
            num_sanity_val_steps=0,
            deterministic=False,
        )
        trainer.fit(model, datamodule=data)
        if not trainer.is_global_zero:
            # Rank zero alone saved the checkpoint and carries the run on (export, gates, registry).
            return FitResult(
                model=model.to("cpu").float().eval(), device=device_name(), precision=precision,
                epochs=len(timer.seconds), best_epoch=-1, best_val_loss=float("nan"), best_val_health_mae=float("nan"),
                world_size=trainer.world_size, is_global_zero=False,
            )
        best_epoch = len(timer.seconds) - 1 if fixed else -1
        if checkpoint.best_model_path:
            saved = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)
            model.load_state_dict(saved["state_dict"])
            best_epoch = int(saved.get("epoch", -1))
        best_score = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else float("nan")
        if math.isfinite(starting_score) and not best_score < starting_score:
            # No epoch did better on the validation windows than the weights it started from: keep those.
            model.load_state_dict(initial_state)
            best_epoch, best_score = -1, starting_score
    elapsed = time.perf_counter() - began
    if any(isinstance(c, StopWhenSet) and c.fired for c in callbacks or []):
        stopped_by = "stop_requested"
    elif stopper.stopped_epoch:
        stopped_by = "early_stopping"
    elif len(timer.seconds) >= max_epochs:
        stopped_by = "max_epochs"
    else:
        stopped_by = "max_time"
    model = model.to("cpu").float().eval()
    best = timer.history[best_epoch] if not fixed and 0 <= best_epoch < len(timer.history) else {}
    log.info(
        "fitted %d epochs in %.1f s on %s (kept epoch %d: val health MAE %.4f scaled; stopped by %s)",
        len(timer.seconds), elapsed, device_name(), best_epoch, best_score, stopped_by,
    )
    return FitResult(
        model=model,
        device=device_name(),
        precision=precision,
        epochs=len(timer.seconds),
        best_epoch=best_epoch,
        best_val_loss=best.get("val_loss", float("nan")),
        best_val_health_mae=best_score,
        epoch_seconds=timer.seconds,
        history=timer.history,
        fit_seconds=elapsed,
        stopped_by=stopped_by,
        world_size=trainer.world_size,
    )

