"""Health scoring, the original definition, from the streams a service has (see docs/health.md).

1. The streams are sampled independently (every ~5-6 s on the seed's app, not in lockstep), so
   they are first aligned on a common grid (``grid_seconds``): at each grid point a stream's
   value is its latest sample at or before that point, if no older than the alignment tolerance
   (``alignment_tolerance_s``; for a service scraped less often, 1.5 scrape intervals:
   :class:`telemetry.frames.Cadence`). Otherwise the stream is missing there.
2. At each grid point where every configured stream (``settings.streams``) is present, each of
   their health inputs gets a flag 0-3 (:func:`telemetry.catalogue.flag_of`) and
   health = 1 - sum(flags) / (3 x the number of configured streams): with all four, the
   original's 1 - sum / 12. With fewer, the same health value means something else (one stream
   at flag 3 costs a quarter of the health with four streams, all of it with one): the status
   states the rule in use (``health.streams``).
3. Health per frame step (a minute, or the series' own step for coarser data: ``step_minutes``)
   is the mean over the step's scored grid points. A step with none is unknown (NaN, reported as
   null), never healthy; ``coverage`` is the share of the step's grid points that were scored.
4. A failure is a step with health <= ``failure_threshold``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from telemetry.catalogue import FLAG_NAMES, Stream, flag_inputs, flag_of
from telemetry.settings import Settings

UTC = dt.timezone.utc


def floor_minute(t: dt.datetime) -> dt.datetime:
    return t.astimezone(UTC).replace(second=0, microsecond=0)


def floor_step(t: dt.datetime, step_minutes: int = 1) -> dt.datetime:
    """The start of the ``step_minutes`` bin holding ``t`` (bins aligned on the epoch, so on the hour for divisors of 60)."""
    return pd.Timestamp(t).tz_convert(UTC).floor(f"{step_minutes}min").to_pydatetime()


def grid(start: dt.datetime, end: dt.datetime, seconds: float) -> pd.DatetimeIndex:
    """Grid points ``start <= t < end``, starting at ``start``'s minute (so minutes share points)."""
    step = pd.Timedelta(seconds=seconds)
    first = pd.Timestamp(floor_minute(start))
    first += step * int(np.ceil((pd.Timestamp(start) - first) / step))
    return pd.date_range(first, pd.Timestamp(end) - pd.Timedelta(microseconds=1), freq=step, name="time")


def align(
    samples: Mapping[str, pd.DataFrame], points: pd.DatetimeIndex, tolerance_s: float, streams: Sequence[Stream]
) -> pd.DataFrame:
    """As-of join of ``streams`` onto ``points``: one column per stream value, NaN where missing.

    At each point, a stream's newest sample (row not all NaN) at or before it, if at most ``tolerance_s``
    older; of samples at the same time, the last. The join of ``pd.merge_asof(direction="backward",
    tolerance=...)``, done with one ``searchsorted`` per stream: the values are selected, never computed,
    so they are the same, without a merge's fixed cost (most of a one-minute frame's).
    """
    tolerance = pd.Timedelta(seconds=tolerance_s).value
    point_ns = _nanoseconds(points, points.tz)
    columns: dict[str, np.ndarray] = {}  # one frame built at the end: a column insert per stream costs more than the join
    for stream in streams:
        frame = samples.get(stream.collection)
        if frame is None or frame.empty:
            for column in stream.columns:
                columns[column] = np.full(len(points), np.nan)
            continue
        present = _any_value(frame)  # the rows ``frame.dropna(how="all")`` keeps
        times = _nanoseconds(frame.index, points.tz)[present]
        order = None
        if len(times) > 1 and not (times[1:] >= times[:-1]).all():
            order = np.argsort(times, kind="stable")
            times = times[order]
        at = np.searchsorted(times, point_ns, side="right") - 1
        found = at >= 0
        found[found] = point_ns[found] - times[at[found]] <= tolerance
        take = np.where(found, at, 0)
        for column in stream.columns:
            values = np.asarray(frame[column].to_numpy(), dtype=float)[present]
            if order is not None:
                values = values[order]
            columns[column] = np.where(found, values[take], np.nan) if len(values) else np.full(len(points), np.nan)
    return pd.DataFrame(columns, index=points)


def _any_value(frame: pd.DataFrame) -> np.ndarray:
    """Per row, whether any of its values is present (not NaN / None)."""
    if all(dtype.kind == "f" for dtype in frame.dtypes):
        return ~np.isnan(frame.to_numpy()).all(axis=1)
    return frame.notna().to_numpy().any(axis=1)


def _nanoseconds(index: pd.Index, tz: dt.tzinfo | None) -> np.ndarray:
    """``index`` as int64 nanoseconds since the epoch, in ``tz`` (a naive index stays naive, as the points' dtype)."""
    times = pd.DatetimeIndex(index)
    if tz is not None:
        times = times.tz_convert(tz)
    return times.as_unit("ns").asi8


def flags(aligned: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Flag 0-3 per configured health input and grid point (NaN where that input is missing)."""
    cuts = settings.cuts()
    return pd.DataFrame({name: flag_of(np.asarray(value, dtype=float), cuts[name])
                         for name, value in flag_inputs(aligned, settings.stream_set).items()}, index=aligned.index)


def health_from_flags(flag_frame: pd.DataFrame) -> pd.Series:
    """1 - sum(flags) / (3 x inputs) where every input of the frame is present, else NaN."""
    total = flag_frame.sum(axis=1, min_count=flag_frame.shape[1])
    return 1.0 - total / (3 * flag_frame.shape[1])


def minute_health(
    samples: Mapping[str, pd.DataFrame],
    start: dt.datetime,
    end: dt.datetime,
    settings: Settings,
    step_minutes: int = 1,
    tolerance_s: float | None = None,
) -> pd.DataFrame:
    """Health per step over ``[floor(start), end)`` (per minute by default).

    Columns: ``health`` (NaN when unknown), ``coverage`` (0..1), and the mean flag of each health
    input (``flag_cpu``, ``flag_memory``, ``flag_request_rate``, ``flag_response_time``; NaN for an
    input the service does not have). Index: every step of the interval, tz-aware UTC, missing ones
    included. ``tolerance_s``: the as-of tolerance (default ``alignment_tolerance_s``).
    """
    freq = f"{step_minutes}min"
    steps = pd.date_range(
        floor_step(start, step_minutes), pd.Timestamp(end) - pd.Timedelta(microseconds=1), freq=freq, name="time"
    )
    tolerance = settings.alignment_tolerance_s if tolerance_s is None else tolerance_s
    points = grid(steps[0], end, settings.grid_seconds) if len(steps) else pd.DatetimeIndex([], tz=UTC)
    aligned = align(samples, points, tolerance, settings.stream_set)
    flag_frame = flags(aligned, settings)
    scored = flag_frame.assign(health=health_from_flags(flag_frame))
    bins = scored.index.floor(freq)
    per_step = scored.groupby(bins).mean()
    # Coverage: scored grid points / grid points, per step (0 for a step with none); counted, so exact either way.
    codes = steps.get_indexer(bins)
    expected = np.bincount(codes, minlength=len(steps))
    counts = np.bincount(codes, weights=scored["health"].notna().to_numpy(), minlength=len(steps))
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = np.where(expected > 0, counts / np.maximum(expected, 1), 0.0)
    columns = {"health": per_step["health"].reindex(steps).to_numpy(), "coverage": coverage}
    for name in FLAG_NAMES:
        columns[f"flag_{name}"] = per_step[name].reindex(steps).to_numpy() if name in per_step else np.full(len(steps), np.nan)
    return pd.DataFrame(columns, index=steps)


def is_failure(health: pd.Series | np.ndarray | float, settings: Settings) -> np.ndarray:
    """True where health is known and at or below the failure threshold."""
    arr = np.asarray(health, dtype=float)
    return np.where(np.isnan(arr), False, arr <= settings.failure_threshold)


def health_rule(settings: Settings) -> str:
    """The formula in use, for people: ``1 - (cpu + memory + request_rate + response_time flags) / 12``."""
    names = " + ".join(s.flag for s in settings.stream_set)
    return f"1 - ({names} flags) / {settings.max_flag_sum}"


@dataclass(frozen=True)
class Staleness:
    """Whether current health can be trusted: every configured stream must have spoken recently."""

    stale: bool
    #: The last sample of the longest-silent stream (None when fresh, or when it never spoke).
    since: dt.datetime | None
    #: Streams that are silent beyond the limit (or never spoke), by collection.
    streams: tuple[str, ...]
    #: Of those, the streams that never spoke at all.
    never: tuple[str, ...] = ()


def staleness(latest: Mapping[str, dt.datetime | None], now: dt.datetime, settings: Settings, step_minutes: int = 1) -> Staleness:
    """Silent streams: no sample for ``staleness_limit_s`` (or two frame steps, for coarse data), or none ever."""
    limit_s = settings.staleness_limit_s if step_minutes == 1 else max(settings.staleness_limit_s, 2 * 60 * step_minutes)
    limit = dt.timedelta(seconds=limit_s)
    silent = tuple(sorted(name for name, t in latest.items() if t is None or now - t > limit))
    never = tuple(name for name in silent if latest[name] is None)
    silent_times = [latest[name] for name in silent if latest[name] is not None]
    since = min(silent_times) if silent_times else None
    return Staleness(stale=bool(silent), since=since, streams=silent, never=never)
