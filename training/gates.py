"""Scoring on the validation and test windows, and the promotion gates.

Torch-free: the candidate's forecasts arrive as numpy arrays, the current model is run by
:class:`forecasting.forecaster.OnnxForecaster` exactly as serving runs it, and the baselines
come from :mod:`forecasting.baselines`. Every method is scored on the same windows and the
same minutes (observed, and forecast by every method).

The windows are the held-back **test** block: validation already chose the epoch, the health
source and the calibration (:mod:`forecasting.calibration`), so it is not used to judge. The
comparison is the evaluation's quality bar (docs/evaluation.md), with the thresholds from
settings: over the first ``gate_horizon_minutes`` (G, 60) of each window, pooled.

A candidate is promoted only if all of these hold:

1. ``onnx.checker`` accepts it and it honours the contract (checked at export);
2. onnxruntime matches torch on held-back windows: max abs diff <= 1e-4;
3. its health RMSE over G is at most ``gate_naive_ratio`` (0.8) x seasonal naive's;
4. its calibrated P10-P90 health band covers a share of the observations within
   ``gate_coverage`` (70-90%) over G;
5. its health RMSE over G is lower than the current model's on the same windows (by more
   than float noise, :data:`CURRENT_MODEL_MARGIN`).
   With no current model this holds trivially. A current model that cannot be run on
   these windows (its card lists other input features, or it cannot be loaded) is not
   comparable: the gate holds and the reason says why. A current model with another
   L or H is run with its own L, scaling and calibration at the same origins and compared
   on the minutes both forecast.

One relaxation, for ``pycemaker train --quick`` on a fresh install only (``bootstrap``): when
there is no current model at all, a quick candidate that passes gates 1 and 2 but not 3 or 4
is still promoted, so the API has a model; the reason says which gates were waived.
The next scheduled run must then pass them all and beat that quick model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting import baselines, calibration, metrics, registry
from forecasting.contract import FEATURES, HEALTH, TARGETS, median_index
from forecasting.forecaster import OnnxForecaster, derive_health, to_original
from forecasting.windows import Scaling, feature_matrix, windows
from telemetry.settings import Settings

log = logging.getLogger(__name__)
HEALTH_SOURCES = ("direct", "derived")
#: Against the current model "better" means lower by more than this: the candidate is scored from
#: torch, the current model from onnxruntime, and the two differ by float noise (~1e-7) for one model.
CURRENT_MODEL_MARGIN = 1e-6


def horizon_actuals(values: np.ndarray, origins: np.ndarray, horizon_minutes: int) -> np.ndarray:
    """[N, H, T] realised values (original units, NaN where missing) for each origin's horizon."""
    return values[origins[:, None] + np.arange(horizon_minutes)[None, :]]


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
    health_offsets: np.ndarray | None = None,
) -> Validation:
    """Score the candidate's scaled forecasts [N, H, T, Q] at ``origins`` against the baselines.

    ``values`` [time, T] are the frame's targets in original units. Chooses the health source
    (direct or derived from the forecast streams) with the lower MAE, unless ``health_source``
    is given (scoring the test windows with the source validation chose). ``health_offsets``:
    the calibration (:mod:`forecasting.calibration`), applied to the health of either source.
    """
    horizon = scaled.shape[1]
    forecast = to_original(scaled, scaling, "direct", settings, health_offsets)
    derived = calibration.apply(derive_health(forecast, settings), health_offsets)
    actual = horizon_actuals(values, origins, horizon)
    naive = baselines.seasonal_naive(values, origins, input_minutes, horizon)
    persist = baselines.persistence(values, origins, input_minutes, horizon)
    v = Validation(origins, forecast, actual, naive, persist, tuple(quantiles), derived)
    mid = median_index(v.quantiles)

    h_actual = actual[:, :, HEALTH]
    mask = metrics.common_mask(h_actual, naive[:, :, HEALTH], persist[:, :, HEALTH])
    health_mae = {source: metrics.mae(v.health_median(source), h_actual, mask) for source in HEALTH_SOURCES}
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
    held_back: Validation,
    parity_max_abs_diff: float,
    parity_tolerance: float,
    current: tuple[str, np.ndarray] | tuple[str, NotComparable] | None,
    settings: Settings,
    bootstrap: bool = False,
) -> Decision:
    """Apply gates 2-5 (gate 1, the checker, already passed when this runs) on the held-back windows.

    ``current``: None with no current model, else (version, its median health [N, H'] at the
    same origins) or (version, the reason it is not comparable). ``bootstrap``: see the
    module doc (honoured only when ``current`` is None).
    """
    failed: list[str] = []
    waived: list[str] = []
    notes: list[str] = []
    checks: dict[str, Any] = {"parity_max_abs_diff": parity_max_abs_diff, "parity_tolerance": parity_tolerance}
    if not (np.isfinite(parity_max_abs_diff) and parity_max_abs_diff <= parity_tolerance):
        failed.append(f"ONNX parity {parity_max_abs_diff:.2e} > {parity_tolerance:.0e}")
    waivable = waived if bootstrap and current is None else failed

    scores = gate_scores(held_back, settings)
    g = scores["horizon_minutes"]
    model_rmse, naive_rmse = scores["health_rmse"]["model"], scores["health_rmse"]["seasonal_naive"]
    ratio = model_rmse / naive_rmse if naive_rmse > 0 else float("inf")
    coverage = scores["coverage"]
    low, high = settings.gate_coverage
    checks.update(
        horizon_minutes=g, health_rmse=model_rmse, seasonal_naive_health_rmse=naive_rmse, seasonal_naive_ratio=ratio,
        max_seasonal_naive_ratio=settings.gate_naive_ratio, coverage=coverage, coverage_range=[low, high],
    )
    if not np.isfinite(model_rmse):
        failed.append("no observed health minute in the held-back windows")
    else:
        if not ratio <= settings.gate_naive_ratio:
            waivable.append(f"{g}-min health RMSE {model_rmse:.4f} is {ratio:.2f} x seasonal naive's {naive_rmse:.4f}"
                            f" (at most {settings.gate_naive_ratio:.2f})")
        if not low <= coverage <= high:
            waivable.append(f"P10-P90 coverage {coverage:.1%} is outside {low:.0%}-{high:.0%}")

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
            steps = min(result.shape[1], g)
            h_actual = held_back.actual[:, :steps, HEALTH]
            overlap = metrics.common_mask(
                h_actual, held_back.seasonal_naive[:, :steps, HEALTH], held_back.persistence[:, :steps, HEALTH], result[:, :steps]
            )
            ours = metrics.rmse(held_back.health_median()[:, :steps], h_actual, overlap)
            theirs = metrics.rmse(result[:, :steps], h_actual, overlap)
            checks["current_model"].update(health_rmse=theirs, candidate_health_rmse=ours, horizon_minutes_compared=steps)
            if not ours < theirs - CURRENT_MODEL_MARGIN:
                failed.append(f"{steps}-min health RMSE {ours:.4f} is not below the current model {version}'s {theirs:.4f}")
            else:
                notes.append(f"beats current model {version} ({ours:.4f} < {theirs:.4f} over {steps} min)")

    if failed:
        return Decision(False, "; ".join(failed), checks)
    if waived:
        checks["waived"] = waived
        summary = f"bootstrap (quick model, no current model): gates waived ({'; '.join(waived)})"
    else:
        summary = (f"{g}-min health RMSE {model_rmse:.4f} = {ratio:.2f} x seasonal naive's {naive_rmse:.4f}, "
                   f"P10-P90 coverage {coverage:.1%}")
    summary += f"; parity {parity_max_abs_diff:.1e}"
    return Decision(True, "; ".join([summary] + notes), checks)
