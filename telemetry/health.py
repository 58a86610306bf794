"""Health scoring, the original definition (see docs/health.md).

1. The four streams are sampled independently (every ~5-6 s, not in lockstep), so they
   are first aligned on a common grid (``grid_seconds``): at each grid point a stream's
   value is its latest sample at or before that point, if no older than
   ``alignment_tolerance_s`` (an as-of join). Otherwise the stream is missing there.
2. At each grid point where all four streams are present, each health input gets a
   flag 0-3 (:func:`telemetry.catalogue.flag_of`) and health = 1 - sum(flags) / 12.
3. Per-minute health is the mean over the minute's scored grid points. A minute with
   none is unknown (NaN, reported as null), never healthy; ``coverage`` is the share
   of the minute's grid points that were scored.
4. A failure is a minute with health <= ``failure_threshold``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from telemetry.catalogue import FLAG_NAMES, STREAMS, flag_inputs, flag_of
from telemetry.settings import Settings

UTC = dt.timezone.utc
MAX_FLAG_SUM = 3 * len(FLAG_NAMES)


def floor_minute(t: dt.datetime) -> dt.datetime:
    return t.astimezone(UTC).replace(second=0, microsecond=0)


def grid(start: dt.datetime, end: dt.datetime, seconds: float) -> pd.DatetimeIndex:
    """Grid points ``start <= t < end``, starting at ``start``'s minute (so minutes share points)."""
    step = pd.Timedelta(seconds=seconds)
    first = pd.Timestamp(floor_minute(start))
    first += step * int(np.ceil((pd.Timestamp(start) - first) / step))
    return pd.date_range(first, pd.Timestamp(end) - pd.Timedelta(microseconds=1), freq=step, name="time")


def align(samples: Mapping[str, pd.DataFrame], points: pd.DatetimeIndex, tolerance_s: float) -> pd.DataFrame:
    """As-of join of every stream onto ``points``: one column per stream value, NaN where missing."""
    left = pd.DataFrame({"time": points})
    tolerance = pd.Timedelta(seconds=tolerance_s)
    out = pd.DataFrame(index=points)
    for stream in STREAMS:
        frame = samples.get(stream.collection)
        if frame is None or frame.empty:
            for column in stream.columns:
                out[column] = np.nan
            continue
        right = frame.dropna(how="all").reset_index().rename(columns={frame.index.name or "index": "time"})
        right["time"] = right["time"].astype(left["time"].dtype)
        merged = pd.merge_asof(left, right, on="time", direction="backward", tolerance=tolerance)
        for column in stream.columns:
            out[column] = merged[column].to_numpy()
    return out


def flags(aligned: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Flag 0-3 per health input and grid point (NaN where that input is missing)."""
    cuts = settings.cuts()
    out = pd.DataFrame(index=aligned.index)
    for name, value in flag_inputs(aligned).items():
        out[name] = flag_of(np.asarray(value, dtype=float), cuts[name])
    return out


def health_from_flags(flag_frame: pd.DataFrame) -> pd.Series:
    """1 - sum(flags)/12 where every input is present, else NaN."""
    total = flag_frame[list(FLAG_NAMES)].sum(axis=1, min_count=len(FLAG_NAMES))
    return 1.0 - total / MAX_FLAG_SUM


def minute_health(
    samples: Mapping[str, pd.DataFrame], start: dt.datetime, end: dt.datetime, settings: Settings
) -> pd.DataFrame:
    """Per-minute health over ``[floor(start), end)``.

    Columns: ``health`` (NaN when unknown), ``coverage`` (0..1), and the mean flag of
    each health input (``flag_cpu``, ``flag_memory``, ``flag_request_rate``, ``flag_response_time``).
    Index: every minute of the interval, tz-aware UTC, missing minutes included.
    """
    minutes = pd.date_range(
        floor_minute(start), pd.Timestamp(end) - pd.Timedelta(microseconds=1), freq="1min", name="time"
    )
    points = grid(minutes[0], end, settings.grid_seconds) if len(minutes) else pd.DatetimeIndex([], tz=UTC)
    aligned = align(samples, points, settings.alignment_tolerance_s)
    flag_frame = flags(aligned, settings)
    scored = flag_frame.assign(health=health_from_flags(flag_frame))
    bins = scored.index.floor("1min")
    per_minute = scored.groupby(bins).mean()
    counts = scored["health"].notna().groupby(bins).sum()
    expected = scored["health"].groupby(bins).size()
    result = pd.DataFrame(index=minutes)
    result["health"] = per_minute["health"].reindex(minutes)
    result["coverage"] = (counts / expected).reindex(minutes).fillna(0.0)
    for name in FLAG_NAMES:
        result[f"flag_{name}"] = per_minute[name].reindex(minutes)
    return result


def is_failure(health: pd.Series | np.ndarray | float, settings: Settings) -> np.ndarray:
    """True where health is known and at or below the failure threshold."""
    arr = np.asarray(health, dtype=float)
    return np.where(np.isnan(arr), False, arr <= settings.failure_threshold)


@dataclass(frozen=True)
class Staleness:
    """Whether current health can be trusted: every stream must have spoken recently."""

    stale: bool
    #: The last sample of the longest-silent stream (None when fresh, or when it never spoke).
    since: dt.datetime | None
    #: Streams that are silent beyond the limit (or empty).
    streams: tuple[str, ...]


def staleness(latest: Mapping[str, dt.datetime | None], now: dt.datetime, settings: Settings) -> Staleness:
    limit = dt.timedelta(seconds=settings.staleness_limit_s)
    silent = tuple(sorted(name for name, t in latest.items() if t is None or now - t > limit))
    silent_times = [latest[name] for name in silent if latest[name] is not None]
    since = min(silent_times) if silent_times else None
    return Staleness(stale=bool(silent), since=since, streams=silent)
