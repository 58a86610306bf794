"""Forecast accuracy metrics, NaN-aware: a point is scored only where the observation and
the forecast are both known (a missing minute is never scored as zero).

Arrays are broadcast together; ``axis=None`` pools every point.

MASE (Hyndman & Koehler, 2006) divides the absolute error by the in-sample mean absolute
seasonal difference of the series' history, ``mean |y_t - y_{t-m}|``: below 1 means better
than a seasonal naive forecast *in sample*. In a rolling-origin backtest each origin has its
own history, hence its own scale; :func:`mase` pools as ``sum |e| / sum scale`` over the
scored points, so an origin whose history was flat (scale near 0) cannot blow the figure up.
"""

from __future__ import annotations

import numpy as np

#: One season of the simulated load, in minutes (the Locust shape repeats hourly).
SEASON_MINUTES = 60


def _pair(forecast: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    forecast = np.asarray(forecast, dtype=float)
    actual = np.asarray(actual, dtype=float)
    forecast, actual = np.broadcast_arrays(forecast, actual)
    known = np.isfinite(forecast) & np.isfinite(actual)
    return forecast, actual, known


def mae(forecast: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute error over the points where both are known; NaN when there are none."""
    f, a, known = _pair(forecast, actual)
    return float(np.mean(np.abs(f[known] - a[known]))) if known.any() else float("nan")


def rmse(forecast: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error over the points where both are known; NaN when there are none."""
    f, a, known = _pair(forecast, actual)
    return float(np.sqrt(np.mean((f[known] - a[known]) ** 2))) if known.any() else float("nan")


def seasonal_scale(history: np.ndarray, season: int) -> float:
    """MASE's denominator: mean ``|y_t - y_{t-season}|`` over the pairs where both are known.

    NaN when the history holds no such pair (shorter than a season, or all missing).
    """
    y = np.asarray(history, dtype=float)
    if season < 1 or len(y) <= season:
        return float("nan")
    diff = np.abs(y[season:] - y[:-season])
    diff = diff[np.isfinite(diff)]
    return float(diff.mean()) if len(diff) else float("nan")


def mase(forecast: np.ndarray, actual: np.ndarray, scale: np.ndarray | float) -> float:
    """Pooled MASE: ``sum |e| / sum scale`` over the points where forecast, actual and scale are known.

    ``scale`` broadcasts against the forecast (one value per origin: shape ``[N, 1]`` for
    ``[N, H]`` forecasts). Points whose scale is NaN or 0 are left out.
    """
    f, a, known = _pair(forecast, actual)
    s = np.broadcast_to(np.asarray(scale, dtype=float), f.shape)
    known = known & np.isfinite(s) & (s > 0)
    if not known.any():
        return float("nan")
    return float(np.abs(f[known] - a[known]).sum() / s[known].sum())


def coverage(lower: np.ndarray, upper: np.ndarray, actual: np.ndarray) -> float:
    """Share of known observations inside ``[lower, upper]`` (the nominal P10-P90 band is 80%)."""
    lo, hi, a = np.broadcast_arrays(
        np.asarray(lower, dtype=float), np.asarray(upper, dtype=float), np.asarray(actual, dtype=float)
    )
    known = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(a)
    if not known.any():
        return float("nan")
    inside = (a[known] >= lo[known]) & (a[known] <= hi[known])
    return float(inside.mean())


def pinball(quantile_forecast: np.ndarray, actual: np.ndarray, q: float) -> float:
    """Mean pinball (quantile) loss of one quantile's forecast."""
    f, a, known = _pair(quantile_forecast, actual)
    if not known.any():
        return float("nan")
    diff = a[known] - f[known]
    return float(np.mean(np.maximum(q * diff, (q - 1.0) * diff)))


__all__ = ["SEASON_MINUTES", "mae", "rmse", "seasonal_scale", "mase", "coverage", "pinball"]
