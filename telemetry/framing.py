"""How samples become frames: the cadence of a service and :func:`minute_frame`, computed from the samples.

:mod:`telemetry.frames` is the entry point (it re-exports these and reads frames through the rollups,
:mod:`telemetry.rollups`); this module is what both build on, so neither imports the other's reader.

The bins are the same as per-minute health's (:func:`telemetry.health.minute_health`), so a
model trained on these frames forecasts exactly what the API reports. A minute with no
sample of a stream is NaN for that stream (never 0); how the model sees gaps is decided in
:mod:`forecasting.windows`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
from pymongo.database import Database

from telemetry import store
from telemetry.catalogue import STREAM_COLUMNS, STREAMS
from telemetry.health import nanoseconds, step_codes, step_health, step_index, step_means
from telemetry.services import DEFAULT_SERVICE, Service
from telemetry.settings import Settings


@dataclass(frozen=True)
class Cadence:
    """How a service's samples become frames: the step of a frame row, and how old an as-of sample may be.

    A service scraped every few seconds: one-minute steps, the original's 15-second tolerance. Scraped
    less often (every 15-60 s): one-minute steps, a tolerance of 1.5 scrape intervals (so that the
    streams, scraped out of step, still meet at the grid points). Coarser than a minute (a 5-minute
    CloudWatch export): steps of the data's own spacing. Found once per service (:func:`service_cadence`)
    and recorded in the model card, so that serving frames the data as training did.
    """

    step_minutes: int = 1
    tolerance_s: float = 15.0

    def to_dict(self) -> dict:
        return {"step_minutes": self.step_minutes, "tolerance_s": self.tolerance_s}


def cadence_for(spacing_s: float | None, settings: Settings) -> Cadence:
    """The cadence of samples ``spacing_s`` apart (settings ``frame_minutes`` / ``scrape_interval_s`` win when set)."""
    spacing = settings.scrape_interval_s or spacing_s
    tolerance = max(settings.alignment_tolerance_s, 1.5 * spacing) if spacing else settings.alignment_tolerance_s
    if settings.frame_minutes:
        step = settings.frame_minutes
    elif spacing is None or spacing <= 60 * 1.5:
        step = 1
    elif spacing >= 3600:
        step = int(round(spacing / 3600)) * 60
    else:
        step = min(STEPS_WITHIN_AN_HOUR, key=lambda s: abs(s - spacing / 60))  # steps tile the hour
    return Cadence(step, round(tolerance, 3))


def service_cadence(
    db: Database, settings: Settings, newest_times: Mapping[str, dt.datetime | None] | None = None,
    service: Service = DEFAULT_SERVICE,
) -> Cadence:
    """The cadence of ``service`` (default: the default one), from its newest samples (or the settings).

    ``newest_times``: each stream's newest sample by collection, when the caller knows them already.
    """
    if settings.scrape_interval_s:
        return cadence_for(None, settings)
    return cadence_for(store.recent_spacing_s(db, settings.stream_set, newest_times=newest_times, service=service), settings)


def minute_frame(
    samples: Mapping[str, pd.DataFrame], start: dt.datetime, end: dt.datetime, settings: Settings,
    cadence: Cadence | None = None,
) -> pd.DataFrame:
    """Columns: every stream column (mean over the step; NaN for a stream the service does not have),
    ``health``, ``coverage`` and ``flag_*``, per step of the cadence (a minute by default)."""
    cadence = cadence or Cadence(1, settings.alignment_tolerance_s)
    step_minutes = cadence.step_minutes
    steps = step_index(start, end, step_minutes)
    configured = {s.collection for s in settings.stream_set}
    columns: dict[str, np.ndarray] = {}
    for stream in STREAMS:
        data = samples.get(stream.collection) if stream.collection in configured else None
        if data is None or data.empty:
            for column in stream.columns:
                columns[column] = np.full(len(steps), np.nan)
            continue
        codes = step_codes(nanoseconds(data.index), steps, step_minutes)
        for column in stream.columns:
            columns[column] = step_means(codes, data[column].to_numpy(dtype=float), len(steps))
    health = step_health(samples, steps, end, settings, step_minutes, cadence.tolerance_s)
    return pd.DataFrame({**{column: columns[column] for column in STREAM_COLUMNS}, **health}, index=steps)


#: Frame steps shorter than an hour divide it, so every step lies within one hour.
STEPS_WITHIN_AN_HOUR = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)


def raw_minute_frame(
    db: Database, start: dt.datetime, end: dt.datetime, settings: Settings, cadence: Cadence | None = None,
    service: Service = DEFAULT_SERVICE, window: store.SampleWindow | None = None,
) -> pd.DataFrame:
    """:func:`minute_frame` of ``service`` over ``[start, end)`` computed from the raw samples (those ``window``
    holds, already read, if it holds them all).

    Reads from the tolerance before ``start`` so the first step's grid points have their as-of samples.
    """
    cadence = cadence or Cadence(1, settings.alignment_tolerance_s)
    samples = store.read_samples(db, start - dt.timedelta(seconds=cadence.tolerance_s), end, settings.stream_set, service, window)
    return minute_frame(samples, start, end, settings, cadence)
