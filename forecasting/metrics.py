"""Forecast accuracy metrics, each defined once: MAE, RMSE, MASE, interval coverage and pinball loss.

NaN-aware: a point is scored only where the observation and the forecast are both known (a
missing minute is never scored as zero), and, where a ``mask`` is given, only inside it (so that
several methods are scored on the same points: :func:`common_mask`). Arrays are broadcast
together and every point is pooled. The training gates, the backtests and the reports all use these.

MASE (Hyndman & Koehler, 2006) divides the absolute error by the in-sample mean absolute
seasonal difference of the series' history, ``mean |y_t - y_{t-m}|``: below 1 means better
than a seasonal naive forecast *in sample*. In a rolling-origin backtest each origin has its
own history, hence its own scale; :func:`mase` pools as ``sum |e| / sum scale`` over the
scored points, so an origin whose history was flat (scale near 0) cannot blow the figure up.
"""

from __future__ import annotations

import numpy as np

def _pair(
    forecast: np.ndarray, actual: np.ndarray, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    forecast = np.asarray(forecast, dtype=float)
    actual = np.asarray(actual, dtype=float)
    forecast, actual = np.broadcast_arrays(forecast, actual)
    known = np.isfinite(forecast) & np.isfinite(actual)
    if mask is not None:
        known &= np.broadcast_to(np.asarray(mask, dtype=bool), known.shape)
    return forecast, actual, known


def common_mask(actual: np.ndarray, *forecasts: np.ndarray) -> np.ndarray:
    """Points every method is scored on: observed, and forecast by every method."""
    mask = np.isfinite(np.asarray(actual, dtype=float))
    for forecast in forecasts:
        mask &= np.isfinite(forecast)
    return mask


def mae(forecast: np.ndarray, actual: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error over the points where both are known (and ``mask`` holds); NaN when there are none."""
    f, a, known = _pair(forecast, actual, mask)
    return float(np.mean(np.abs(f[known] - a[known]))) if known.any() else float("nan")


def rmse(forecast: np.ndarray, actual: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root mean squared error over the points where both are known (and ``mask`` holds); NaN when there are none."""
    f, a, known = _pair(forecast, actual, mask)
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


def coverage(lower: np.ndarray, upper: np.ndarray, actual: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Share of known observations (inside ``mask``, when given) within ``[lower, upper]`` (the nominal P10-P90 band is 80%)."""
    lo, hi, a = np.broadcast_arrays(
        np.asarray(lower, dtype=float), np.asarray(upper, dtype=float), np.asarray(actual, dtype=float)
    )
    known = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(a)
    if mask is not None:
        known &= np.broadcast_to(np.asarray(mask, dtype=bool), known.shape)
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


__all__ = ["common_mask", "mae", "rmse", "seasonal_scale", "mase", "coverage", "pinball"]
