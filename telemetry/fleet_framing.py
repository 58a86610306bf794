""":func:`telemetry.framing.minute_frame` of many services at once, for the collector's rollup pass.

Per service, ``minute_frame`` costs ~25-55 ms of pandas overhead on a 2-core box whatever the
number of samples (as-of joins, group-bys, frame building), so a minute of 1,000 services cost
the rollup pass ~60 s: more than the minute. Here every step is the same, done once over all
services' samples stacked with a service code: the as-of join is ``merge_asof(..., by=code)``,
the means ``groupby([code, step])``. Every value is the same to the last bit, service by service:
the joins pick the same samples, the flags and health are element- or row-wise, and each group's
mean adds the same values in the same order (pandas' grouped mean sums group by group). The
tests compare both paths (tests/telemetry/test_batched_ingest.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from telemetry import store
from telemetry.catalogue import FLAG_NAMES, STREAM_COLUMNS, STREAMS, Stream
from telemetry.framing import Cadence
from telemetry.health import flags, grid, health_from_flags, step_index
from telemetry.settings import Settings

UTC = dt.timezone.utc
CODE = "_service"


def minute_frames(
    samples: Sequence[Mapping[str, pd.DataFrame]], start: dt.datetime, end: dt.datetime, settings: Settings,
    cadence: Cadence,
) -> list[pd.DataFrame]:
    """``[minute_frame(s, start, end, settings, cadence) for s in samples]``, computed together."""
    configured = {s.collection for s in settings.stream_set}
    stacked = {collection: _stack(samples, collection) for collection in configured}
    return stacked_minute_frames(stacked, len(samples), start, end, settings, cadence)


def stacked_minute_frames(
    stacked: Mapping[str, pd.DataFrame | None], n: int, start: dt.datetime, end: dt.datetime, settings: Settings,
    cadence: Cadence,
) -> list[pd.DataFrame]:
    """:func:`minute_frames` of ``n`` services from their samples stacked per collection (:func:`stack_documents`):
    a UTC ``time`` index, the stream's columns and the service's position in ``_service``, each service's rows
    in time order without repeated times (None or absent: no service has samples of that collection)."""
    freq = f"{cadence.step_minutes}min"
    steps = step_index(start, end, cadence.step_minutes)
    if not n:
        return []
    if not len(steps):
        from telemetry.framing import minute_frame

        empty = minute_frame({}, start, end, settings, cadence)
        return [empty.copy() for _ in range(n)]
    points = grid(steps[0], end, settings.grid_seconds)
    configured = {s.collection for s in settings.stream_set}

    # Health: as-of join of every service's samples onto the grid, flags, health, means per step.
    codes = np.repeat(np.arange(n), len(points))
    times = pd.DatetimeIndex(np.tile(points.tz_convert("UTC").tz_localize(None).to_numpy(), n)).tz_localize("UTC")
    left = pd.DataFrame({"time": times, CODE: codes})
    order = np.argsort(left["time"].to_numpy(), kind="stable")
    left_sorted = left.iloc[order].reset_index(drop=True)
    tolerance = pd.Timedelta(seconds=cadence.tolerance_s)
    columns: dict[str, np.ndarray] = {}
    for stream in settings.stream_set:
        right = stacked.get(stream.collection)
        if right is None:
            for column in stream.columns:
                columns[column] = np.full(len(left), np.nan)
            continue
        right = right.dropna(how="all", subset=list(stream.columns)).reset_index()
        right["time"] = right["time"].astype(left["time"].dtype)
        right = right.sort_values("time", kind="stable")
        merged = pd.merge_asof(left_sorted, right, on="time", by=CODE, direction="backward", tolerance=tolerance)
        for column in stream.columns:
            values = np.empty(len(left))
            values[order] = merged[column].to_numpy(dtype=float)
            columns[column] = values
    index = pd.MultiIndex.from_arrays([codes, pd.DatetimeIndex(left["time"])], names=[CODE, "time"])
    aligned = pd.DataFrame(columns, index=index)
    flag_frame = flags(aligned, settings)
    scored = flag_frame.assign(health=health_from_flags(flag_frame))
    keys = [codes, pd.DatetimeIndex(left["time"]).floor(freq)]
    per_step = scored.groupby(keys).mean()
    counts = scored["health"].notna().groupby(keys).sum()
    expected = scored["health"].groupby(keys).size()
    full = pd.MultiIndex.from_product([np.arange(n), steps], names=[CODE, "time"])
    out: dict[str, np.ndarray] = {}
    for column in STREAM_COLUMNS:
        out[column] = np.full(n * len(steps), np.nan)
    for stream in STREAMS:
        data = stacked.get(stream.collection) if stream.collection in configured else None
        if data is None:
            continue
        bins = [data[CODE].to_numpy(), data.index.floor(freq)]
        for column in stream.columns:
            out[column] = data[column].groupby(bins).mean().reindex(full).to_numpy()
    out["health"] = per_step["health"].reindex(full).to_numpy()
    out["coverage"] = (counts / expected).reindex(full).fillna(0.0).to_numpy()
    for name in FLAG_NAMES:
        out[f"flag_{name}"] = per_step[name].reindex(full).to_numpy() if name in per_step else np.full(len(full), np.nan)
    width = len(steps)
    return [
        pd.DataFrame({c: v[i * width:(i + 1) * width] for c, v in out.items()}, index=steps)
        for i in range(n)
    ]


def stack_documents(stream: Stream, rows: Iterable[tuple[int, int, dict]]) -> pd.DataFrame | None:
    """Raw documents of ``stream`` as ``(service position, rank, document)`` -> their samples stacked for
    :func:`stacked_minute_frames` (None: none), each service's as :func:`telemetry.store.samples_frame` gives
    them from documents read in rank order then time order: of two at the same time, the lower rank's is kept."""
    rows = sorted(rows, key=lambda row: (row[0], row[1], row[2]["time_series"]))
    if not rows:
        return None
    codes = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    index = pd.DatetimeIndex([row[2]["time_series"] for row in rows], name="time")
    index = index.tz_localize(UTC) if index.tz is None else index.tz_convert(UTC)
    data = {
        column: np.array([store.number(row[2].get(field)) for row in rows], dtype=float)
        for field, column in stream.fields.items()
    }
    frame = pd.DataFrame(data, index=index)
    frame[CODE] = codes
    keys = pd.MultiIndex.from_arrays([codes, index])
    frame = frame[~keys.duplicated(keep="first")]
    order = np.lexsort((frame.index.asi8, frame[CODE].to_numpy()))
    return frame.iloc[order]


def _stack(samples: Sequence[Mapping[str, pd.DataFrame]], collection: str) -> pd.DataFrame | None:
    """Every service's samples of one collection, one frame with a service code column (None: none has any)."""
    parts = [(i, frame) for i, s in enumerate(samples) if (frame := s.get(collection)) is not None and not frame.empty]
    if not parts:
        return None
    stacked = pd.concat([frame for _, frame in parts])
    stacked[CODE] = np.repeat([i for i, _ in parts], [len(frame) for _, frame in parts])
    stacked.index.name = "time"
    return stacked


__all__ = ["minute_frames", "stack_documents", "stacked_minute_frames"]
