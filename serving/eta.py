"""Time to failure and the streams behind it, from a quantile forecast. Pure functions, no I/O.

- A minute *fails* when its health is at or below ``failure_threshold`` (telemetry.health).
- The expected crossing is the first forecast minute whose P50 health fails; the range comes
  from the band paths: the P10 path (pessimistic) crosses first, the P90 path (optimistic)
  last or not at all within the horizon. Quantiles never cross, so earliest <= expected <= latest.
- A stream's contribution at a minute is its flag (0-3) over the largest flag sum (12 with four
  streams): the share of health it takes away (health = 1 - sum(flags) / that sum). The driver is the stream whose contribution rises most
  from now to the crossing (ties: the larger contribution).

Memory exhaustion (``memory_exhaustion``, an addition to what counts as a predicted failure; health's own definition
is unchanged): a minute also fails when the JVM memory reaches that share of the heap, the app running out of heap
and no longer answering (a leak's crash: health barely shows it coming). It is forecast like Prometheus'
``predict_linear`` on a heap, from the trend of the *memory floor* (forecasting/exhaustion.py: what is left after
garbage collection, which a GC sawtooth does not move and a leak raises; only a sustained, significant rise counts). Its crossing of the level is the expected minute; the slope +- 2 standard
errors give the earliest and latest. The failure is the earliest of the health crossing and this one, bound by bound
(:func:`combine`); its ``cause`` says which (``health`` or ``memory_exhaustion``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from forecasting.exhaustion import (  # noqa: F401 (the rule's parts, re-exported)
    FLOOR_MINUTES, MIN_R2, MIN_RISE, TREND_MINUTES, MemoryTrend, memory_floor, memory_trend, minutes_to_level, reach_index,
)
from forecasting.forecaster import Forecast
from telemetry.catalogue import FLAG_NAMES, STREAM_COLUMNS, flag_inputs, flag_of
from telemetry.settings import Settings

#: The bands every response carries, whatever quantiles the model was trained on.
BANDS: dict[str, float] = {"p10": 0.1, "p50": 0.5, "p90": 0.9}


def bands(forecast: Forecast, target: str) -> np.ndarray:
    """[H, 3] P10/P50/P90 of one target (the model's own quantiles, interpolated if it uses other levels)."""
    values = forecast.target(target)
    levels = np.asarray(forecast.quantiles, dtype=float)
    wanted = np.asarray(list(BANDS.values()))
    if len(levels) == len(wanted) and np.allclose(levels, wanted):
        return values
    return np.stack([np.array([np.interp(w, levels, row) for w in wanted]) for row in values])


def first_failing(path: np.ndarray, threshold: float, start: int = 0) -> int | None:
    """Index of the first value at or below the threshold, from ``start`` (None: none)."""
    hits = np.flatnonzero(np.asarray(path[start:], dtype=float) <= threshold)
    return int(start + hits[0]) if len(hits) else None


#: Why a minute fails: health at or below the threshold, or memory at the exhaustion level.
HEALTH_CAUSE = "health"
MEMORY_EXHAUSTION = "memory_exhaustion"
CAUSES = (HEALTH_CAUSE, MEMORY_EXHAUSTION)

@dataclass(frozen=True)
class Crossing:
    """When a path first fails: the minute, the seconds from "now" to it, and why it fails (:data:`CAUSES`)."""

    at: dt.datetime
    seconds: float
    cause: str = HEALTH_CAUSE


def crossing(times: pd.DatetimeIndex, path: np.ndarray, threshold: float, now: pd.Timestamp, start: int = 1) -> Crossing | None:
    """When ``path`` first fails (from index ``start``), and the seconds from ``now`` to that minute."""
    index = first_failing(path, threshold, start)
    if index is None:
        return None
    at = times[index]
    return Crossing(at.to_pydatetime(), max(0.0, (at - now).total_seconds()))


def forecast_flags(forecast: Forecast, index: int, settings: Settings) -> dict[str, float]:
    """Each health input's flag at one forecast minute, scored from the P50 stream forecasts."""
    cuts = settings.cuts()
    p50 = {name: float(bands(forecast, name)[index, 1]) for name in STREAM_COLUMNS}
    found = {name: float(flag_of(value, cuts[name])) for name, value in flag_inputs(p50, settings.stream_set).items()}
    return {name: found.get(name) for name in FLAG_NAMES}


def observed_flags(row: Mapping[str, float]) -> dict[str, float | None]:
    """Each health input's mean flag over an observed minute (a minute-frame row)."""
    out: dict[str, float | None] = {}
    for name in FLAG_NAMES:
        value = row.get(f"flag_{name}")
        out[name] = None if value is None or not np.isfinite(value) else float(value)
    return out


@dataclass(frozen=True)
class Driver:
    """One health input's contribution at a minute (flag / 12) and its change since before."""

    stream: str
    flag_before: float | None
    flag_at: float | None
    contribution: float | None
    change: float | None


def drivers(
    before: Mapping[str, float | None], at: Mapping[str, float | None], max_flag_sum: int
) -> tuple[str | None, list[Driver]]:
    """Per-input contributions at a minute (flag / ``max_flag_sum``, the health it takes away) and their change
    since ``before``; the driving input first. Inputs the service does not have have no contribution."""
    rows = []
    for name in FLAG_NAMES:
        flag_at, flag_before = at.get(name), before.get(name)
        contribution = None if flag_at is None else flag_at / max_flag_sum
        change = None if flag_at is None or flag_before is None else (flag_at - flag_before) / max_flag_sum
        rows.append(Driver(name, flag_before, flag_at, contribution, change))
    rows.sort(key=lambda r: (r.change or 0.0, r.contribution or 0.0), reverse=True)
    top = rows[0]
    driver = top.stream if (top.change or 0.0) > 0 or (top.contribution or 0.0) > 0 else None
    return driver, rows


def exhaustion_crossings(times: pd.DatetimeIndex, trend: MemoryTrend, level: float, now: pd.Timestamp,
                         start: int = 1) -> tuple[Crossing | None, Crossing | None, Crossing | None]:
    """Expected, earliest and latest memory-exhaustion crossings on the forecast's minutes (from index ``start``):
    the first minute at or after the trend's crossing (the slope, +2 and -2 standard errors); None past the horizon."""
    out: list[Crossing | None] = []
    for slope in (trend.slope, trend.slope + 2 * trend.slope_se, trend.slope - 2 * trend.slope_se):
        minutes = minutes_to_level(trend, level, slope)
        if minutes is None:
            out.append(None)
            continue
        index = reach_index(times, now + pd.Timedelta(minutes=minutes), start)
        at = None if index is None else times[index]
        out.append(None if at is None else Crossing(at.to_pydatetime(), max(0.0, (at - now).total_seconds()), MEMORY_EXHAUSTION))
    expected, earliest, latest = out
    return expected, earliest, latest


def earliest_of(*crossings: Crossing | None) -> Crossing | None:
    """The soonest of the crossings (None: none); a tie goes to the first given."""
    found = [c for c in crossings if c is not None]
    return min(found, key=lambda c: c.at) if found else None


def combine(health: tuple[Crossing | None, ...], memory: tuple[Crossing | None, ...]) -> tuple[Crossing | None, ...]:
    """Bound by bound (expected, earliest, latest), the earliest of the health crossing and the memory one: a
    minute fails by either rule. Both keep earliest <= expected <= latest, so the combination does too."""
    return tuple(earliest_of(h, m) for h, m in zip(health, memory))


def band_exhaustion_crossings(times: pd.DatetimeIndex, memory_bands: np.ndarray, level: float, now: pd.Timestamp,
                              start: int = 1) -> tuple[Crossing | None, Crossing | None, Crossing | None]:
    """The other way, from the model's own memory bands ``[H, 3]`` (P10/P50/P90): expected where the P50 path first
    reaches ``level``, earliest the P90 path (for memory the pessimistic one is the high quantile), latest the P10.
    Measured beside the trend by the leak check (evaluation/leak_check.py); the status uses the trend."""
    out = []
    for column in (1, 2, 0):
        hits = np.flatnonzero(np.asarray(memory_bands[start:, column], dtype=float) >= level)
        at = times[start + int(hits[0])] if len(hits) else None
        out.append(None if at is None else Crossing(at.to_pydatetime(), max(0.0, (at - now).total_seconds()), MEMORY_EXHAUSTION))
    expected, earliest, latest = out
    return expected, earliest, latest
