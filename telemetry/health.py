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
from typing import Any, Mapping, Sequence

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
    return pd.DataFrame(_aligned(samples, nanoseconds(points, points.tz), points.tz, tolerance_s, streams), index=points)


def _aligned(
    samples: Mapping[str, pd.DataFrame], point_ns: np.ndarray, tz: dt.tzinfo | None, tolerance_s: float,
    streams: Sequence[Stream],
) -> dict[str, np.ndarray]:
    """:func:`align`'s columns, for points given as int64 nanoseconds since the epoch (in ``tz``)."""
    tolerance = pd.Timedelta(seconds=tolerance_s).value
    columns: dict[str, np.ndarray] = {}
    for stream in streams:
        frame = samples.get(stream.collection)
        if frame is None or frame.empty:
            for column in stream.columns:
                columns[column] = np.full(len(point_ns), np.nan)
            continue
        present = _any_value(frame)  # the rows ``frame.dropna(how="all")`` keeps
        times = nanoseconds(frame.index, tz)[present]
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
            columns[column] = np.where(found, values[take], np.nan) if len(values) else np.full(len(point_ns), np.nan)
    return columns


def _any_value(frame: pd.DataFrame) -> np.ndarray:
    """Per row, whether any of its values is present (not NaN / None)."""
    if all(dtype.kind == "f" for dtype in frame.dtypes):
        return ~np.isnan(frame.to_numpy()).all(axis=1)
    return frame.notna().to_numpy().any(axis=1)


def nanoseconds(index: pd.Index, tz: dt.tzinfo | None = UTC) -> np.ndarray:
    """``index`` as int64 nanoseconds since the epoch, in ``tz`` (a naive index stays naive, as the points' dtype)."""
    times = pd.DatetimeIndex(index)
    if tz is not None:
        times = times.tz_convert(tz)
    return times.as_unit("ns").asi8


def flags(aligned: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Flag 0-3 per configured health input and grid point (NaN where that input is missing)."""
    return pd.DataFrame(flag_values(aligned, settings), index=aligned.index)


def flag_values(aligned: Mapping[str, Any], settings: Settings) -> dict[str, np.ndarray]:
    """:func:`flags`' columns, from aligned stream columns (a frame, or arrays by column name), as arrays."""
    cuts = settings.cuts()
    return {name: flag_of(np.asarray(value, dtype=float), cuts[name])
            for name, value in flag_inputs(aligned, settings.stream_set).items()}


def health_from_flags(flag_frame: pd.DataFrame) -> pd.Series:
    """1 - sum(flags) / (3 x inputs) where every input of the frame is present, else NaN."""
    return pd.Series(health_of(flag_frame.to_numpy(dtype=float).T), index=flag_frame.index)


def health_of(flag_rows: np.ndarray) -> np.ndarray:
    """:func:`health_from_flags` of flags given one row per input (inputs x points): NaN wherever an input is."""
    return 1.0 - flag_rows.sum(axis=0) / (3 * flag_rows.shape[0])


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
    included. ``tolerance_s``: the as-of joins' tolerance (default ``alignment_tolerance_s``).

    Computed on arrays (:func:`step_means`), not with pandas' group-bys, whose fixed costs were most of a short
    frame's (a fleet's status round computes one per service every 5 s): the same values, to the last bit.
    """
    steps = step_index(start, end, step_minutes)
    return pd.DataFrame(step_health(samples, steps, end, settings, step_minutes, tolerance_s), index=steps)


def step_index(start: dt.datetime, end: dt.datetime, step_minutes: int = 1) -> pd.DatetimeIndex:
    """The steps ``floor(start) <= t < end`` of ``step_minutes`` (UTC, named ``time``)."""
    return pd.date_range(
        floor_step(start, step_minutes), pd.Timestamp(end) - pd.Timedelta(microseconds=1), freq=f"{step_minutes}min", name="time"
    )


def step_codes(times_ns: np.ndarray, steps: pd.DatetimeIndex, step_minutes: int) -> np.ndarray:
    """The position in ``steps`` of the step holding each time (int64 ns since the epoch); outside: -1 or past the end."""
    if not len(steps):
        return np.full(len(times_ns), -1, dtype=np.int64)
    return np.floor_divide(times_ns - steps[0].value, pd.Timedelta(minutes=step_minutes).value)


def step_health(
    samples: Mapping[str, pd.DataFrame], steps: pd.DatetimeIndex, end: dt.datetime, settings: Settings,
    step_minutes: int, tolerance_s: float | None,
) -> dict[str, np.ndarray]:
    """:func:`minute_health`'s columns over ``steps`` (:func:`step_index` of the interval ending at ``end``), as arrays."""
    tolerance = settings.alignment_tolerance_s if tolerance_s is None else tolerance_s
    point_ns = nanoseconds(grid(steps[0], end, settings.grid_seconds), UTC) if len(steps) else np.zeros(0, dtype=np.int64)
    aligned = _aligned(samples, point_ns, UTC, tolerance, settings.stream_set)
    flagged = flag_values(aligned, settings)
    health = health_of(np.stack(list(flagged.values())) if flagged else np.zeros((0, len(point_ns))))
    codes = step_codes(point_ns, steps, step_minutes)
    expected = np.bincount(codes, minlength=len(steps))
    scored = np.bincount(codes, weights=~np.isnan(health), minlength=len(steps))
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = np.where(expected > 0, scored / np.maximum(expected, 1), 0.0)
    columns = {"health": step_means(codes, health, len(steps)), "coverage": coverage}
    for name in FLAG_NAMES:
        columns[f"flag_{name}"] = step_means(codes, flagged[name], len(steps)) if name in flagged else np.full(len(steps), np.nan)
    return columns


def step_means(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """The mean of ``values`` per code ``0..n-1`` (NaN and codes outside skipped; NaN for a code with none).

    Each code's values are added in their order with compensated (Kahan) summation, as pandas' grouped mean
    adds them, so each mean equals ``Series(values).groupby(codes).mean()``'s to the last bit. Vectorised
    across codes: the k-th values of every code are added together, one pass per value of the fullest code.
    """
    values = np.asarray(values, dtype=float)
    keep = ~np.isnan(values) & (codes >= 0) & (codes < n)
    codes, values = codes[keep], values[keep]
    total, compensation = np.zeros(n), np.zeros(n)
    counts = np.bincount(codes, minlength=n)
    if len(codes):
        if len(codes) > 1 and not (codes[1:] >= codes[:-1]).all():
            order = np.argsort(codes, kind="stable")
            codes, values = codes[order], values[order]
        rank = np.arange(len(codes)) - np.searchsorted(codes, codes, side="left")
        with np.errstate(invalid="ignore"):  # inf - inf, below, is NaN: no compensation then (as pandas')
            for k in range(int(rank.max()) + 1):
                at = rank == k
                code = codes[at]
                y = values[at] - compensation[code]
                t = total[code] + y
                lost = t - total[code] - y
                compensation[code] = np.where(lost == lost, lost, 0.0)
                total[code] = t
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)


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
