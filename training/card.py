"""The model card of a trained candidate: what it is, how it was trained and how it scored (``card.json``)."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import numpy as np

from forecasting import calibration, registry
from forecasting.contract import FEATURES, TARGETS
from telemetry.settings import Settings
from training import gates
from training.datamodule import WindowDataModule
from training.export import ExportReport
from training.fit import FitConfig, FitResult
from training.provenance import git_commit, package_versions

UTC = dt.timezone.utc


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


def lstm_card(
    settings: Settings,
    config: FitConfig,
    data: WindowDataModule,
    fitted: FitResult,
    validation: gates.Validation,
    raw: gates.Validation,
    test: gates.Validation,
    offsets: np.ndarray,
    report: ExportReport,
    *,
    seconds: float,
    export_seconds: float,
    quick: bool,
) -> registry.ModelCard:
    """The card of a fitted, scored and exported LSTM (``raw``: its validation scores before calibration)."""
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
            "seconds": round(seconds, 2),
            "fit_seconds": round(fitted.fit_seconds, 2),
            "export_seconds": round(export_seconds, 2),
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
    return card
