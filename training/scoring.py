"""Scoring a candidate's forecasts on a block of windows, in original units, the way serving will run it.

Torch-free: forecasts arrive as numpy arrays (scaled, as the network or the baseline graph emits
them) and are turned into original units by :func:`forecasting.forecaster.to_original`, exactly as
serving does; the registry's current model is run by :class:`forecasting.forecaster.OnnxForecaster`.
Every candidate of a run is scored on the same windows and the same minutes.

:func:`validate` also chooses where a candidate's health comes from: the network's (or the
baseline's) own health output ("direct"), or the mean of that and health scored from its forecast
streams ("mean"), whichever has the lower MAE on the windows it is given (validation, never the test
block). Health scored from the streams alone ("derived") is measured too, and served by cards that chose
it before "mean" existed; a run no longer chooses it: it errs least on many services, but its median
sits on the cuts wherever the service does, and there it calls failures that do not come.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from forecasting import baselines, calibration, metrics, registry
from forecasting.contract import FEATURES, HEALTH, TARGETS, median_index
from forecasting.forecaster import OnnxForecaster, derive_health, source_health, to_original
from forecasting.windows import Scaling
from telemetry.settings import Settings

log = logging.getLogger(__name__)
HEALTH_SOURCES = ("direct", "derived", "mean")
#: The sources a run chooses among (module doc).
CHOSEN_SOURCES = ("direct", "mean")
#: Against the current model "better" means lower by more than this: the candidate is scored from
#: torch, the current model from onnxruntime, and the two differ by float noise (~1e-7) for one model.
CURRENT_MODEL_MARGIN = 1e-6


def horizon_actuals(values: np.ndarray, origins: np.ndarray, horizon_minutes: int) -> np.ndarray:
    """[N, H, T] realised values (original units, NaN where missing or past the data) for each origin's horizon."""
    rows = origins[:, None] + np.arange(horizon_minutes)[None, :]
    inside = rows < len(values)
    return np.where(inside[..., None], values[np.minimum(rows, len(values) - 1)], np.nan)


def gate_minutes(horizon_minutes: int, settings: Settings) -> int:
    """G: the leads the gates score (the model's horizon, if shorter than ``gate_horizon_minutes``)."""
    return min(settings.gate_horizon_minutes, horizon_minutes)


def _by_hour(forecast: np.ndarray, actual: np.ndarray, mask: np.ndarray) -> list[float]:
    """MAE over each hour of the horizon (the last one may be partial)."""
    steps = forecast.shape[1]
    return [round(metrics.mae(forecast[:, a : a + 60], actual[:, a : a + 60], mask[:, a : a + 60]), 5) for a in range(0, steps, 60)]


@dataclass
class Validation:
    """The candidate and the baselines on the validation windows (original units)."""

    origins: np.ndarray
    #: [N, H, T, Q] the candidate, bounded and sorted, health from the network ("direct").
    values: np.ndarray
    actual: np.ndarray
    seasonal_naive: np.ndarray
    persistence: np.ndarray
    quantiles: tuple[float, ...]
    #: [N, H, Q] health scored from the forecast streams (:func:`forecasting.forecaster.derive_health`).
    derived_health: np.ndarray | None = None
    health_source: str = "direct"
    metrics: dict[str, Any] = field(default_factory=dict)

    def health(self, source: str | None = None) -> np.ndarray:
        """[N, H, Q] the candidate's health quantiles from ``source`` (default: the chosen one)."""
        return source_health(source or self.health_source, self.values[:, :, HEALTH, :], self.derived_health)

    def health_median(self, source: str | None = None) -> np.ndarray:
        return self.health(source)[:, :, median_index(self.quantiles)]


def validate(
    scaled: np.ndarray,
    values: np.ndarray,
    origins: np.ndarray,
    scaling: Scaling,
    quantiles: tuple[float, ...],
    input_steps: int,
    settings: Settings,
    health_source: str | None = None,
    health_offsets: np.ndarray | None = None,
    flag_spread: Mapping[str, float] | None = None,
) -> Validation:
    """Score the candidate's scaled forecasts [N, H, T, Q] at ``origins`` against the baselines.

    ``values`` [time, T] are the frame's targets in original units. Chooses the health source
    (direct, or the mean of direct and derived: :data:`CHOSEN_SOURCES`) with the lower MAE, unless ``health_source``
    is given (scoring the test windows with the source validation chose). ``health_offsets``:
    the calibration (:mod:`forecasting.calibration`), applied to the health of either source. ``flag_spread``: the
    samples' spread derived health is scored with (:mod:`forecasting.flag_spread`; None: the hard cuts).
    """
    horizon = scaled.shape[1]
    forecast = to_original(scaled, scaling, "direct", settings, health_offsets)
    derived = calibration.apply(derive_health(forecast, settings, flag_spread), health_offsets)
    actual = horizon_actuals(values, origins, horizon)
    naive = baselines.seasonal_naive(values, origins, input_steps, horizon, season=min(baselines.SEASON_MINUTES, input_steps))
    persist = baselines.persistence(values, origins, input_steps, horizon)
    v = Validation(origins, forecast, actual, naive, persist, tuple(quantiles), derived)
    mid = median_index(v.quantiles)

    h_actual = actual[:, :, HEALTH]
    mask = metrics.common_mask(h_actual, naive[:, :, HEALTH], persist[:, :, HEALTH])
    health_mae = {source: metrics.mae(v.health_median(source), h_actual, mask) for source in HEALTH_SOURCES}
    v.health_source = health_source or min(CHOSEN_SOURCES, key=lambda s: health_mae[s])
    chosen = v.health(v.health_source)
    inside = (h_actual >= chosen[:, :, 0]) & (h_actual <= chosen[:, :, -1])
    v.metrics = {
        "validation_windows": int(len(origins)),
        "scored_minutes": int(mask.sum()),
        "health_mae": {
            "model": health_mae[v.health_source],
            "direct": health_mae["direct"],
            "derived": health_mae["derived"],
            "mean": health_mae["mean"],
            "seasonal_naive": metrics.mae(naive[:, :, HEALTH], h_actual, mask),
            "persistence": metrics.mae(persist[:, :, HEALTH], h_actual, mask),
        },
        "health_mae_by_hour": {
            "model": _by_hour(v.health_median(), h_actual, mask),
            "seasonal_naive": _by_hour(naive[:, :, HEALTH], h_actual, mask),
            "persistence": _by_hour(persist[:, :, HEALTH], h_actual, mask),
        },
        "health_band": {
            "quantiles": [v.quantiles[0], v.quantiles[-1]],
            "nominal_coverage": round(v.quantiles[-1] - v.quantiles[0], 4),
            "coverage": float(inside[mask].mean()) if mask.any() else float("nan"),
        },
        "gate": gate_scores(v, settings),
        "stream_mae": {},
    }
    for t, name in enumerate(TARGETS):
        if t == HEALTH:
            continue
        m = metrics.common_mask(actual[:, :, t], naive[:, :, t], persist[:, :, t])
        v.metrics["stream_mae"][name] = {
            "model": metrics.mae(forecast[:, :, t, mid], actual[:, :, t], m),
            "seasonal_naive": metrics.mae(naive[:, :, t], actual[:, :, t], m),
            "persistence": metrics.mae(persist[:, :, t], actual[:, :, t], m),
        }
    return v


def gate_scores(v: Validation, settings: Settings) -> dict[str, Any]:
    """Health RMSE of the candidate and the baselines, and the band's coverage, over the first G leads."""
    g = gate_minutes(v.actual.shape[1], settings)
    h_actual = v.actual[:, :g, HEALTH]
    naive, persist = v.seasonal_naive[:, :g, HEALTH], v.persistence[:, :g, HEALTH]
    mask = metrics.common_mask(h_actual, naive, persist)
    band = v.health()[:, :g]
    inside = (h_actual >= band[:, :, 0]) & (h_actual <= band[:, :, -1])
    return {
        "horizon_minutes": g,
        "health_rmse": {
            "model": metrics.rmse(v.health_median()[:, :g], h_actual, mask),
            "seasonal_naive": metrics.rmse(naive, h_actual, mask),
            "persistence": metrics.rmse(persist, h_actual, mask),
        },
        "coverage": float(inside[mask].mean()) if mask.any() else float("nan"),
    }


class NotComparable(Exception):
    """The current model cannot be run on the candidate's validation windows."""


def registry_model_values(
    models_dir: Path, version: str, frame: pd.DataFrame, origins: np.ndarray, settings: Settings
) -> tuple[np.ndarray, registry.ModelCard]:
    """A registry model's forecasts [N, H, T, Q] (original units, as served) at ``origins`` of ``frame``, and its card.

    Its inputs are built with its own card (scaling, L), as serving builds them.
    """
    try:
        forecaster = OnnxForecaster(models_dir, version, settings)
    except registry.RegistryError as exc:
        raise NotComparable(f"cannot load it ({exc})") from exc
    card = forecaster.card
    if list(card.features) != list(FEATURES) or list(card.targets) != list(TARGETS):
        raise NotComparable("its card lists other input features or targets than this trainer builds")
    steps = (frame.index[1] - frame.index[0]) / pd.Timedelta(minutes=1) if len(frame) > 1 else card.step_minutes
    if card.step_minutes != steps:
        raise NotComparable(f"it forecasts {card.step_minutes}-minute steps, this data has {steps:g}-minute steps")
    if len(origins) and (origins < card.input_steps).any():
        raise NotComparable(f"its input ({card.input_minutes} min) reaches before the data")
    return forecaster.forecast_batch(frame, origins), card
