"""What a backtest runs on: a regular time series of one or more channels, with its season.

One frame per service (telemetry.frames: the streams present, health from them, at their cadence), of
two kinds, decided by what the store holds (:func:`from_samples`):

- **minute frame** (``multivariate``): all four streams, sampled every few seconds as the
  collector and the simulator do. Per-minute frames (:mod:`telemetry.frames`) with the six
  targets of :data:`forecasting.windows.TARGETS` (health included). Season: 60 minutes (the
  test bed's load repeats hourly). Every method applies, the LSTM included.
- **fewer streams, or coarser** (not ``multivariate``): the streams present (an imported CSV such
  as the NAB series is one stream, 5-minute samples) framed at their cadence, with health scored
  from them (docs/health.md). The reference season: one day for coarse data (288 steps at 5
  minutes) unless told otherwise. The registry's models apply: they are trained on the same frames.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from telemetry import frames, store
from telemetry.catalogue import STREAMS
from telemetry.frames import cadence_for, minute_frame
from telemetry.settings import Settings
from forecasting.contract import TARGETS

UTC = dt.timezone.utc
HOURLY = 60
DAILY = 24 * 60
#: Streams sampled at most this far apart are turned into minute frames.
MINUTE_FRAME_MAX_SPACING_S = 60.0


@dataclass
class EvalSeries:
    """A regular series to backtest on."""

    name: str
    #: Regular UTC DatetimeIndex at ``cadence_minutes``; one column per channel (NaN where missing).
    #: A minute frame also carries the columns the LSTM's inputs need (the six targets).
    frame: pd.DataFrame
    channels: tuple[str, ...]
    cadence_minutes: int
    season_steps: int
    multivariate: bool
    #: A frame of a service's streams with health (telemetry.frames): the registry's models run on it. The
    #: frame holds every target column (those of absent streams are NaN); ``channels`` are the ones observed.
    frames: bool = True
    #: Ground-truth incidents overlapping the series (simulated data only).
    incidents: list[dict[str, Any]] = field(default_factory=list)
    #: Where the data came from, for the report.
    source: str = ""

    @property
    def season_minutes(self) -> int:
        return self.season_steps * self.cadence_minutes

    def steps(self, minutes: int) -> int:
        """Whole steps in ``minutes`` (at least one)."""
        return max(1, int(round(minutes / self.cadence_minutes)))

    def values(self, channels: tuple[str, ...] | None = None) -> np.ndarray:
        return self.frame[list(channels or self.channels)].to_numpy(dtype=float)


def default_season_minutes(cadence_minutes: int) -> int:
    """60 for minute data (the load repeats hourly), a day for coarser series (real services follow the day)."""
    return HOURLY if cadence_minutes <= 1 else DAILY


def from_minute_frame(frame: pd.DataFrame, name: str, incidents: list[dict] | None = None, source: str = "") -> EvalSeries:
    return EvalSeries(
        name=name,
        frame=frame,
        channels=TARGETS,
        cadence_minutes=1,
        season_steps=HOURLY,
        multivariate=True,
        incidents=list(incidents or []),
        source=source,
    )


def from_simulation(seed: int, start: dt.datetime, end: dt.datetime, settings: Settings, name: str | None = None) -> EvalSeries:
    """A simulated range held in memory (never written): minute frames and ground-truth incidents."""
    from telemetry import simulator

    sim = simulator.simulate(start, end, seed, settings)
    frame = minute_frame(sim.samples, start, end, settings)
    incidents = [i.document() for i in sim.incidents]
    label = name or f"simulated {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, seed {seed}"
    return from_minute_frame(frame, label, incidents, source=f"simulator seed {seed} (in memory)")


def from_samples(
    samples: Mapping[str, pd.DataFrame],
    start: dt.datetime,
    end: dt.datetime,
    settings: Settings,
    *,
    incidents: list[dict] | None = None,
    season_minutes: int | None = None,
    source: str = "",
) -> list[EvalSeries]:
    """The series a backtest runs on: the frame of the streams present, at their cadence (see the module doc)."""
    present = tuple(s for s in STREAMS if s.collection in samples and len(samples[s.collection].dropna(how="all")))
    if not present:
        return []
    service = dataclasses.replace(settings, streams=tuple(s.name for s in present))
    cadence = cadence_for(sample_spacing_s(samples, present), service)
    frame = minute_frame(samples, start, end, service, cadence)
    if len(present) == len(STREAMS) and cadence.step_minutes == 1:
        series = from_minute_frame(frame, "all four streams, per minute", incidents, source)
        if season_minutes:
            series.season_steps = int(season_minutes)
        return [series]
    columns = tuple(c for s in present for c in s.columns if frame[c].notna().any())
    step = cadence.step_minutes
    season = season_minutes or default_season_minutes(step)
    return [EvalSeries(
        name=", ".join(s.collection for s in present),
        frame=frame,
        channels=columns + ("health",),
        cadence_minutes=step,
        season_steps=max(1, int(round(season / step))),
        multivariate=False,
        incidents=list(incidents or []),
        source=source,
    )]


def sample_spacing_s(samples: Mapping[str, pd.DataFrame], streams) -> float | None:
    """The slowest stream's median spacing between samples, in seconds (None: too few samples)."""
    spacings = [_median_spacing_s(samples[s.collection]) for s in streams]
    finite = [s for s in spacings if np.isfinite(s)]
    return max(finite) if finite else None


def from_store(
    db, settings: Settings, start: dt.datetime | None = None, end: dt.datetime | None = None, season_minutes: int | None = None
) -> list[EvalSeries]:
    """The series over ``[start, end)`` (default: everything stored), with the incidents recorded there."""
    span = store.data_range(db)
    if span is None:
        return []
    start = start or span[0]
    end = end or span[1] + dt.timedelta(minutes=1)
    incidents = store.read_incidents(db, start, end)
    source = f"database {db.name}, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    fast = _from_rollups(db, settings, start, end, incidents, season_minutes, source)
    if fast is not None:
        return fast
    lead = dt.timedelta(minutes=10)  # enough for any scrape interval's as-of tolerance
    samples = store.read_samples(db, start - lead, end)
    return from_samples(samples, start, end, settings, incidents=incidents, season_minutes=season_minutes, source=source)


def _from_rollups(
    db, settings: Settings, start: dt.datetime, end: dt.datetime, incidents: list[dict], season_minutes: int | None, source: str,
) -> list[EvalSeries] | None:
    """The minute frame of all four streams read through the rollups (telemetry/rollups.py), without reading the
    samples, when the store holds that kind (every stream, sampled at most a minute apart); None otherwise."""
    if not settings.rollups or tuple(s.name for s in settings.stream_set) != tuple(s.name for s in STREAMS):
        return None
    newest = store.newest_sample_times(db, streams=STREAMS)
    if any(t is None for t in newest.values()):
        return None
    cadence = frames.service_cadence(db, settings, newest)
    if cadence.step_minutes != 1:
        return None
    series = from_minute_frame(frames.load_minute_frame(db, start, end, settings, cadence), "all four streams, per minute", incidents, source)
    if season_minutes:
        series.season_steps = int(season_minutes)
    return [series]


def resample(data: pd.DataFrame, start: dt.datetime, end: dt.datetime, cadence_minutes: int) -> pd.DataFrame:
    """Mean per ``cadence_minutes`` bin (bins aligned on the epoch), every bin of ``[start, end)`` present."""
    freq = f"{cadence_minutes}min"
    first = pd.Timestamp(start).floor(freq)
    index = pd.date_range(first, pd.Timestamp(end) - pd.Timedelta(microseconds=1), freq=freq, name="time")
    binned = data.groupby(data.index.floor(freq)).mean()
    return binned.reindex(index)


def _median_spacing_s(frame: pd.DataFrame) -> float:
    times = frame.dropna(how="all").index.asi8
    if len(times) < 2:
        return float("inf")
    return float(np.median(np.diff(times)) / 1e9)


__all__ = ["EvalSeries", "HOURLY", "DAILY", "default_season_minutes", "from_minute_frame", "from_simulation",
           "from_samples", "from_store", "resample"]
