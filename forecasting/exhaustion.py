"""Memory exhaustion: the memory floor's trend and when it reaches a level. Pure functions, no I/O.

The forecast of a heap running out, like Prometheus' ``predict_linear`` on a heap, read from the *memory floor*: the
lowest memory over the last ``FLOOR_MINUTES`` (what is left after garbage collection; a GC sawtooth does not move it, a
leak raises it). A least-squares line over the floor's last ``TREND_MINUTES`` counts only when the rise is sustained
and significant: at least ``MIN_RISE`` of the heap over the window, R^2 at least ``MIN_R2``.

The window is 50 minutes, most of an hour: a leak's rise is sustained over it, a traffic cycle's is not. Per-minute
memory is a mean over the minute's scrapes, and when load rises the GC cycles shorten below a minute, so the floor
climbs with the load: over 30 minutes an hourly load ramp (the seed's Locust stages) fits a rising line or parabola as
well as a leak does, over 50 its fall spoils the fit.

A leak often accelerates (more objects retained, more retained per request as the heap fills): a line through the
window then extrapolates the slow start and gives the crash too late. So a parabola is fitted over the same minutes
too, and where its curvature is positive and significant (t-statistic at least ``MIN_CURVATURE_T``) the trend is the
parabola: its value now, its slope now and its curvature. A steady leak, a plateau or noise keep the straight line.
The rule's constants were chosen on pretraining members of the simulator's app family (leaks of every curve, and the
same apps without them for false alarms), never on the held-out ones the leak check reports (docs/health.md).

Serving's time to failure (serving/eta.py) and the evaluation's warnings (evaluation/family.py,
evaluation/leak_check.py) read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The memory floor: the lowest per-minute memory over this many minutes (a GC sawtooth's trough).
FLOOR_MINUTES = 10
#: The trend is fitted over the floor's last this many minutes.
TREND_MINUTES = 50
#: A trend counts only when the fitted floor rises at least this share of the heap over the window...
MIN_RISE = 0.1
#: ...and the line explains at least this share of the floor's variance (sustained, not a step or noise).
MIN_R2 = 0.8
#: The parabola's curvature is used only when it is positive with at least this t-statistic (an acceleration, not noise).
MIN_CURVATURE_T = 2.0


@dataclass(frozen=True)
class MemoryTrend:
    """The memory floor's trend over its last minutes: its value now, its slope now and the slope's standard error
    (share of the heap per minute), the straight line's R^2, and the curvature (share of the heap per minute squared:
    ``floor(t) = floor_now + slope * t + curvature * t^2``; 0 for a straight line)."""

    floor_now: float
    slope: float
    slope_se: float
    r2: float
    curvature: float = 0.0


def memory_floor(memory: np.ndarray, minutes: int = FLOOR_MINUTES) -> np.ndarray:
    """The lowest value over each trailing ``minutes`` (missing minutes skipped; NaN where all are missing)."""
    return pd.Series(np.asarray(memory, dtype=float)).rolling(minutes, min_periods=1).min().to_numpy()


def _least_squares(x: np.ndarray, y: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients (highest power first), their standard errors and the residuals of a polynomial fit."""
    design = np.vander(x, degree + 1)
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coefficients
    variance = float((residual ** 2).sum()) / max(1, len(x) - degree - 1)
    se = np.sqrt(np.clip(np.diag(np.linalg.pinv(design.T @ design)) * variance, 0.0, None))
    return coefficients, se, residual


def memory_trend(memory: np.ndarray, window: int = TREND_MINUTES, floor_minutes: int = FLOOR_MINUTES,
                 min_rise: float = MIN_RISE, min_r2: float = MIN_R2, step_minutes: int = 1,
                 min_curvature_t: float = MIN_CURVATURE_T) -> MemoryTrend | None:
    """The floor's trend over the last ``window`` minutes of ``memory``, one value per ``step_minutes`` (the last is
    now); slope per minute. None unless its straight line rises at least ``min_rise`` over the window with
    R^2 >= ``min_r2`` (from two thirds of the window's values at least); a parabola where the rise accelerates
    significantly (module doc)."""
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
    (slope, intercept), (slope_se, _), residual = _least_squares(x, y, 1)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual ** 2).sum()) / total if total > 0 else 0.0
    if slope * window < min_rise or r2 < min_r2:
        return None
    line = MemoryTrend(float(intercept), float(slope), float(slope_se), r2)
    if len(x) < 4:
        return line
    (curvature, slope_now, floor_now), (curvature_se, slope_now_se, _), _ = _least_squares(x, y, 2)
    if curvature <= 0 or curvature < min_curvature_t * curvature_se:
        return line
    return MemoryTrend(float(floor_now), float(slope_now), float(slope_now_se), r2, float(curvature))


def minutes_to_level(trend: MemoryTrend, level: float, slope: float | None = None) -> float | None:
    """Minutes from now until the trend (or the same floor and curvature at ``slope`` now) reaches ``level``;
    0: already there; None: it does not get there."""
    rate = trend.slope if slope is None else slope
    gap = level - trend.floor_now
    if gap <= 0:
        return 0.0
    if trend.curvature > 0:  # floor_now + rate t + curvature t^2 = level: the positive root (the cancellation-free form)
        return 2 * gap / (rate + float(np.sqrt(rate * rate + 4 * trend.curvature * gap)))
    return None if rate <= 0 else gap / rate


def reach_index(times: pd.DatetimeIndex, reach: pd.Timestamp, start: int = 1) -> int | None:
    """Index of the first of ``times`` (from ``start``) at or after ``reach``; None: past the last."""
    hits = np.flatnonzero(times[start:] >= reach)
    return int(start + hits[0]) if len(hits) else None


def exhaustion_minutes(memory: np.ndarray, level: float | None, step_minutes: int = 1, **options: float) -> float | None:
    """Minutes from now until the floor's trend of ``memory`` (the last value is now) reaches ``level``; None: no
    sustained rise, or the rule is off (``level`` None). ``options``: :func:`memory_trend`'s constants."""
    if level is None:
        return None
    trend = memory_trend(memory, step_minutes=step_minutes, **options)
    return None if trend is None else minutes_to_level(trend, level)


__all__ = ["FLOOR_MINUTES", "TREND_MINUTES", "MIN_RISE", "MIN_R2", "MIN_CURVATURE_T", "MemoryTrend", "memory_floor", "memory_trend",
           "minutes_to_level", "reach_index", "exhaustion_minutes"]
