"""Reference forecasts the model must beat, on exactly the windows the model is scored on.

Both take per-minute values ``[time, channel]`` (any units, NaN where missing) and window
origins (as from :func:`forecasting.windows.split_origins`), and return ``[N, H, channel]``
forecasts for the minutes ``[o, o + H)`` of each origin ``o``. They only look at the
window's input, the ``input_minutes`` before ``o``, so they see what the model sees.

- :func:`seasonal_naive`: each minute is forecast by the same minute of the hour in the
  last hour of input (the load repeats hourly). Where that minute is missing, the same
  minute one hour earlier is used (if still inside the input), then persistence.
- :func:`persistence`: every minute is forecast by the last observed minute of the input.

A forecast is NaN only where the channel was missing for the whole input window; metrics
leave such points out for every method alike (:func:`forecasting.metrics.common_mask`).
"""

from __future__ import annotations

import numpy as np

#: Minutes in one period of the load (the original Locust shape repeats every hour).
SEASON_MINUTES = 60


def persistence(values: np.ndarray, origins: np.ndarray, input_minutes: int, horizon_minutes: int) -> np.ndarray:
    """The last observed value of each channel before each origin, repeated over the horizon."""
    values = np.asarray(values, dtype=float)
    origins = np.asarray(origins, dtype=int)
    n_time, n_channels = values.shape
    if len(origins) == 0:
        return np.empty((0, horizon_minutes, n_channels))
    # Index of the latest observed minute at or before each minute, per channel (-1: none yet).
    observed_at = np.where(~np.isnan(values), np.arange(n_time)[:, None], -1)
    latest = np.maximum.accumulate(observed_at, axis=0)
    last = latest[origins - 1]  # [N, C]
    inside = last >= (origins - input_minutes)[:, None]
    picked = values[np.maximum(last, 0), np.arange(n_channels)[None, :]]
    picked = np.where(inside, picked, np.nan)
    return np.repeat(picked[:, None, :], horizon_minutes, axis=1)


def seasonal_naive(
    values: np.ndarray,
    origins: np.ndarray,
    input_minutes: int,
    horizon_minutes: int,
    season: int = SEASON_MINUTES,
) -> np.ndarray:
    """The same minute of the hour, from the last hour of input (see the module doc)."""
    values = np.asarray(values, dtype=float)
    origins = np.asarray(origins, dtype=int)
    n_channels = values.shape[1]
    if len(origins) == 0:
        return np.empty((0, horizon_minutes, n_channels))
    if input_minutes < season:
        raise ValueError(f"seasonal naive needs at least one season ({season} min) of input, got {input_minutes}")
    phase = np.arange(horizon_minutes) % season
    source = origins[:, None] - season + phase[None, :]  # [N, H]: same minute, last hour of input
    forecast = values[source]  # [N, H, C]
    earliest = (origins - input_minutes)[:, None]
    back = source - season
    while np.isnan(forecast).any() and (back >= earliest).any():
        older = np.where((back >= earliest)[..., None], values[np.maximum(back, 0)], np.nan)
        forecast = np.where(np.isnan(forecast), older, forecast)
        back = back - season
    fallback = persistence(values, origins, input_minutes, horizon_minutes)
    return np.where(np.isnan(forecast), fallback, forecast)


__all__ = ["SEASON_MINUTES", "persistence", "seasonal_naive"]
