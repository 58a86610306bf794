"""Memory exhaustion: the memory floor's trend and when it reaches a level. Pure functions, no I/O.

The forecast of a heap running out, like Prometheus' ``predict_linear`` on a heap, read from the *memory floor*: the
lowest memory over the last ``FLOOR_MINUTES`` (what is left after garbage collection; a GC sawtooth does not move it, a
leak raises it). A least-squares line over the floor's last ``TREND_MINUTES`` counts only when the rise is sustained
and significant: at least ``MIN_RISE`` of the heap over the window, R^2 at least ``MIN_R2``. Serving's time to failure
(serving/eta.py) and the evaluation's warnings (evaluation/family.py, evaluation/leak_check.py) read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The memory floor: the lowest per-minute memory over this many minutes (a GC sawtooth's trough).
FLOOR_MINUTES = 10
#: The trend is fitted over the floor's last this many minutes.
TREND_MINUTES = 30
#: A trend counts only when the fitted floor rises at least this share of the heap over the window...
MIN_RISE = 0.1
#: ...and the line explains at least this share of the floor's variance (sustained, not a step or noise).
MIN_R2 = 0.6


@dataclass(frozen=True)
class MemoryTrend:
    """A least-squares line through the memory floor's last minutes: its value now, its slope and standard error
    (share of the heap per minute) and R^2."""

    floor_now: float
    slope: float
    slope_se: float
    r2: float


def memory_floor(memory: np.ndarray, minutes: int = FLOOR_MINUTES) -> np.ndarray:
    """The lowest value over each trailing ``minutes`` (missing minutes skipped; NaN where all are missing)."""
    return pd.Series(np.asarray(memory, dtype=float)).rolling(minutes, min_periods=1).min().to_numpy()


def memory_trend(memory: np.ndarray, window: int = TREND_MINUTES, floor_minutes: int = FLOOR_MINUTES,
                 min_rise: float = MIN_RISE, min_r2: float = MIN_R2, step_minutes: int = 1) -> MemoryTrend | None:
    """The floor's trend over the last ``window`` minutes of ``memory``, one value per ``step_minutes`` (the last is
    now); slope per minute. None unless it rises at least ``min_rise`` over the window with R^2 >= ``min_r2``
    (from two thirds of the window's values at least)."""
    values = np.asarray(memory, dtype=float)
    steps, floor_steps = max(3, window // step_minutes), max(1, floor_minutes // step_minutes)
    if len(values) < steps:
        return None
    floor = memory_floor(values[-(steps + floor_steps - 1):], floor_steps)[-steps:]
    x = (np.arange(len(floor), dtype=float) - (len(floor) - 1)) * step_minutes  # minutes from now (0 = now)
    ok = np.isfinite(floor)
    if ok.sum() < max(3, 2 * steps // 3):
        return None
    x, y = x[ok], floor[ok]
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual ** 2).sum()) / total if total > 0 else 0.0
    if slope * window < min_rise or r2 < min_r2:
        return None
    se = float(np.sqrt((residual ** 2).sum() / max(1, len(x) - 2) / ((x - x.mean()) ** 2).sum()))
    return MemoryTrend(float(intercept), float(slope), se, r2)


def minutes_to_level(trend: MemoryTrend, level: float, slope: float | None = None) -> float | None:
    """Minutes from now until the trend line (or the same floor at ``slope``) reaches ``level``; 0: already there;
    None: it does not rise."""
    rate = trend.slope if slope is None else slope
    if trend.floor_now >= level:
        return 0.0
    return None if rate <= 0 else (level - trend.floor_now) / rate


def reach_index(times: pd.DatetimeIndex, reach: pd.Timestamp, start: int = 1) -> int | None:
    """Index of the first of ``times`` (from ``start``) at or after ``reach``; None: past the last."""
    hits = np.flatnonzero(times[start:] >= reach)
    return int(start + hits[0]) if len(hits) else None


def exhaustion_minutes(memory: np.ndarray, level: float | None, step_minutes: int = 1) -> float | None:
    """Minutes from now until the floor's trend of ``memory`` (the last value is now) reaches ``level``; None: no
    sustained rise, or the rule is off (``level`` None)."""
    if level is None:
        return None
    trend = memory_trend(memory, step_minutes=step_minutes)
    return None if trend is None else minutes_to_level(trend, level)


__all__ = ["FLOOR_MINUTES", "TREND_MINUTES", "MIN_RISE", "MIN_R2", "MemoryTrend", "memory_floor", "memory_trend",
           "minutes_to_level", "reach_index", "exhaustion_minutes"]
