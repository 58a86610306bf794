"""Time-to-failure scoring of a backtest method over every minute of a series (the rule: :mod:`forecasting.warnings`)."""

from __future__ import annotations

import numpy as np

from evaluation.forecasters import MID
from evaluation.series import EvalSeries
from forecasting.warnings import IncidentScore, TtfConfig, TtfResult, score


def scored_methods(methods) -> list:
    """The methods time to failure is scored for: every registry model, and seasonal naive as the reference."""
    return [m for m in methods if hasattr(m, "runner") or m.name == "seasonal_naive"]


def health_median_paths(method, series: EvalSeries, origins: np.ndarray, horizon: int, chunk: int = 1000) -> np.ndarray:
    """``[N, horizon]`` P50 health forecasts from a method with ``forecast_batch``, in chunks (memory)."""
    h = series.channels.index("health")
    out = np.full((len(origins), horizon), np.nan)
    for i in range(0, len(origins), chunk):
        part = origins[i : i + chunk]
        out[i : i + len(part)] = method.forecast_batch(series.frame, part, horizon, series)[:, :, h, MID]
    return out


def score_method(method, series: EvalSeries, config: TtfConfig = TtfConfig(), start_row: int | None = None, stride: int = 1) -> TtfResult:
    """Score one method over every minute of ``series`` from ``start_row`` (default: after the warm-up)."""
    if "health" not in series.channels:
        raise ValueError("time-to-failure scoring needs a health channel (minute frames of all four streams)")
    horizon = config.horizon_minutes
    first = start_row if start_row is not None else 24 * 60
    origins = np.arange(first, len(series.frame) - config.lookahead_minutes, stride)
    paths = health_median_paths(method, series, origins, horizon)
    return score(method.name, series.frame.index, series.frame["health"].to_numpy(), series.incidents, origins, paths, config)


__all__ = ["TtfConfig", "TtfResult", "IncidentScore", "score", "score_method", "scored_methods", "health_median_paths"]
