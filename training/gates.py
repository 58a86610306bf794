"""Scoring on the validation windows, and the promotion gates.

Torch-free: the candidate's forecasts arrive as numpy arrays, the current model is run by
:class:`telemetry.forecaster.OnnxForecaster` exactly as serving runs it, and the baselines
come from :mod:`telemetry.baselines`. Every method is scored on the same windows and the
same minutes (observed, and forecast by every method).

A candidate is promoted only if all of these hold:

1. ``onnx.checker`` accepts it and it honours the contract (checked at export);
2. onnxruntime matches torch on held-back windows: max abs diff <= 1e-4;
3. its validation health MAE is lower than seasonal naive's;
4. its validation health MAE is lower than the current model's on the same windows (by more
   than float noise, :data:`CURRENT_MODEL_MARGIN`).
   With no current model this holds trivially. A current model that cannot be run on
   these windows (its card lists other input features, or it cannot be loaded) is not
   comparable: the gate holds and the reason says why. A current model with another
   L or H is run with its own L and scaling at the same origins and compared on the
   horizon minutes both forecast.

One relaxation, for ``pycemaker train --quick`` on a fresh install only (``bootstrap``): when
there is no current model at all, a quick candidate that passes gates 1 and 2 but not gate 3
is still promoted, so the API has a model; the reason says the seasonal-naive gate was waived.
The next scheduled run must then beat both seasonal naive and that quick model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from telemetry import baselines, registry
from telemetry.forecaster import OnnxForecaster, derive_health, to_original
from telemetry.settings import Settings
from telemetry.windows import FEATURES, HEALTH, TARGETS, Scaling, feature_matrix, windows

log = logging.getLogger(__name__)
HEALTH_SOURCES = ("direct", "derived")
#: Against the current model "better" means lower by more than this: the candidate is scored from
#: torch, the current model from onnxruntime, and the two differ by float noise (~1e-7) for one model.
CURRENT_MODEL_MARGIN = 1e-6


def median_index(quantiles: tuple[float, ...]) -> int:
    return quantiles.index(0.5) if 0.5 in quantiles else len(quantiles) // 2


def horizon_actuals(values: np.ndarray, origins: np.ndarray, horizon_minutes: int) -> np.ndarray:
    """[N, H, T] realised values (original units, NaN where missing) for each origin's horizon."""
    return values[origins[:, None] + np.arange(horizon_minutes)[None, :]]


def _by_hour(forecast: np.ndarray, actual: np.ndarray, mask: np.ndarray) -> list[float]:
    """MAE over each hour of the horizon (the last one may be partial)."""
    steps = forecast.shape[1]
    return [round(baselines.mae(forecast[:, a : a + 60], actual[:, a : a + 60], mask[:, a : a + 60]), 5) for a in range(0, steps, 60)]


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
    #: [N, H, Q] health scored from the forecast streams (:func:`telemetry.forecaster.derive_health`).
    derived_health: np.ndarray | None = None
    health_source: str = "direct"
    metrics: dict[str, Any] = field(default_factory=dict)

    def health(self, source: str | None = None) -> np.ndarray:
        """[N, H, Q] the candidate's health quantiles from ``source`` (default: the chosen one)."""
        source = source or self.health_source
        return self.values[:, :, HEALTH, :] if source == "direct" else self.derived_health

    def health_median(self, source: str | None = None) -> np.ndarray:
        return self.health(source)[:, :, median_index(self.quantiles)]


def validate(
    scaled: np.ndarray,
    values: np.ndarray,
    origins: np.ndarray,
    scaling: Scaling,
    quantiles: tuple[float, ...],
    input_minutes: int,
    settings: Settings,
    health_source: str | None = None,
) -> Validation:
    """Score the candidate's scaled forecasts [N, H, T, Q] at ``origins`` against the baselines.

    ``values`` [time, T] are the frame's targets in original units. Chooses the health source
    (direct or derived from the forecast streams) with the lower MAE, unless ``health_source``
    is given (scoring the test windows with the source validation chose).
    """
    horizon = scaled.shape[1]
    forecast = to_original(scaled, scaling, "direct", settings)
    actual = horizon_actuals(values, origins, horizon)
    naive = baselines.seasonal_naive(values, origins, input_minutes, horizon)
    persist = baselines.persistence(values, origins, input_minutes, horizon)
    v = Validation(origins, forecast, actual, naive, persist, tuple(quantiles), derive_health(forecast, settings))
    mid = median_index(v.quantiles)

    h_actual = actual[:, :, HEALTH]
    mask = baselines.common_mask(h_actual, naive[:, :, HEALTH], persist[:, :, HEALTH])
    health_mae = {source: baselines.mae(v.health_median(source), h_actual, mask) for source in HEALTH_SOURCES}
    v.health_source = health_source or min(HEALTH_SOURCES, key=lambda s: health_mae[s])
    chosen = v.health(v.health_source)
    inside = (h_actual >= chosen[:, :, 0]) & (h_actual <= chosen[:, :, -1])
    v.metrics = {
        "validation_windows": int(len(origins)),
        "scored_minutes": int(mask.sum()),
        "health_mae": {
            "model": health_mae[v.health_source],
            "direct": health_mae["direct"],
            "derived": health_mae["derived"],
            "seasonal_naive": baselines.mae(naive[:, :, HEALTH], h_actual, mask),
            "persistence": baselines.mae(persist[:, :, HEALTH], h_actual, mask),
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
        "stream_mae": {},
    }
    for t, name in enumerate(TARGETS):
        if t == HEALTH:
            continue
        m = baselines.common_mask(actual[:, :, t], naive[:, :, t], persist[:, :, t])
        v.metrics["stream_mae"][name] = {
            "model": baselines.mae(forecast[:, :, t, mid], actual[:, :, t], m),
            "seasonal_naive": baselines.mae(naive[:, :, t], actual[:, :, t], m),
            "persistence": baselines.mae(persist[:, :, t], actual[:, :, t], m),
        }
    return v


class NotComparable(Exception):
    """The current model cannot be run on the candidate's validation windows."""


def current_model_health(
    models_dir: Path, version: str, frame: pd.DataFrame, origins: np.ndarray, settings: Settings
) -> np.ndarray:
    """The current model's median health [N, H_current] at ``origins`` of ``frame``, run through onnxruntime.

    Its inputs are built with its own card (scaling, L), as serving would build them.
    """
    try:
        forecaster = OnnxForecaster(models_dir, version, settings)
    except registry.RegistryError as exc:
        raise NotComparable(f"cannot load it ({exc})") from exc
    card = forecaster.card
    if list(card.features) != list(FEATURES) or list(card.targets) != list(TARGETS):
        raise NotComparable("its card lists other input features or targets than this trainer builds")
    if (origins < card.input_minutes).any():
        raise NotComparable(f"its input ({card.input_minutes} min) reaches before the data")
    features = feature_matrix(frame, forecaster.scaling)
    dummy = np.zeros((len(frame), len(TARGETS)), dtype=np.float32)
    x, _ = windows(features, dummy, origins, card.input_minutes, 1)
    scaled = np.concatenate([forecaster.predict_scaled(x[i : i + 256]) for i in range(0, len(x), 256)]) if len(x) else np.empty((0,))
    values = forecaster.to_original(scaled)
    return values[:, :, HEALTH, median_index(tuple(card.quantiles))]


@dataclass
class Decision:
    promote: bool
    reason: str
    checks: dict[str, Any]


def decide(
    validation: Validation,
    parity_max_abs_diff: float,
    parity_tolerance: float,
    current: tuple[str, np.ndarray] | tuple[str, NotComparable] | None,
    bootstrap: bool = False,
) -> Decision:
    """Apply gates 2-4 (gate 1, the checker, already passed when this runs).

    ``current``: None with no current model, else (version, its median health [N, H'] at the
    validation origins) or (version, the reason it is not comparable). ``bootstrap``: see the
    module doc (honoured only when ``current`` is None).
    """
    failed: list[str] = []
    waived: list[str] = []
    notes: list[str] = []
    checks: dict[str, Any] = {"parity_max_abs_diff": parity_max_abs_diff, "parity_tolerance": parity_tolerance}
    if not (np.isfinite(parity_max_abs_diff) and parity_max_abs_diff <= parity_tolerance):
        failed.append(f"ONNX parity {parity_max_abs_diff:.2e} > {parity_tolerance:.0e}")

    h_actual = validation.actual[:, :, HEALTH]
    model_h = validation.health_median()
    naive_h = validation.seasonal_naive[:, :, HEALTH]
    mask = baselines.common_mask(h_actual, naive_h, validation.persistence[:, :, HEALTH])
    model_mae = baselines.mae(model_h, h_actual, mask)
    naive_mae = baselines.mae(naive_h, h_actual, mask)
    checks.update(health_mae=model_mae, seasonal_naive_health_mae=naive_mae)
    if not np.isfinite(model_mae):
        failed.append("no observed health minute in the validation windows")
    elif not model_mae < naive_mae:
        message = f"validation health MAE {model_mae:.4f} is not below seasonal naive's {naive_mae:.4f}"
        (waived if bootstrap and current is None else failed).append(message)

    if current is None:
        notes.append("no current model")
        checks["current_model"] = None
    else:
        version, result = current
        checks["current_model"] = {"version": version}
        if isinstance(result, NotComparable):
            notes.append(f"current model {version} not comparable: {result}")
            checks["current_model"]["not_comparable"] = str(result)
        else:
            steps = min(result.shape[1], model_h.shape[1])
            overlap = mask[:, :steps] & np.isfinite(result[:, :steps])
            ours = baselines.mae(model_h[:, :steps], h_actual[:, :steps], overlap)
            theirs = baselines.mae(result[:, :steps], h_actual[:, :steps], overlap)
            checks["current_model"].update(health_mae=theirs, candidate_health_mae=ours, horizon_minutes_compared=steps)
            if not ours < theirs - CURRENT_MODEL_MARGIN:
                failed.append(f"validation health MAE {ours:.4f} is not below the current model {version}'s {theirs:.4f}")
            else:
                notes.append(f"beats current model {version} ({ours:.4f} < {theirs:.4f} over {steps} min)")

    if failed:
        return Decision(False, "; ".join(failed), checks)
    if waived:
        checks["waived"] = waived
        summary = f"bootstrap (quick model, no current model): seasonal-naive gate waived ({waived[0]})"
    else:
        summary = f"health MAE {model_mae:.4f} < seasonal naive {naive_mae:.4f}"
    summary += f"; parity {parity_max_abs_diff:.1e}"
    return Decision(True, "; ".join([summary] + notes), checks)
