"""Per-minute frames: the streams' minute means beside per-minute health, on one UTC minute index.

The bins are the same as per-minute health's (:func:`telemetry.health.minute_health`), so a
model trained on these frames forecasts exactly what the API reports. A minute with no
sample of a stream is NaN for that stream (never 0); how the model sees gaps is decided in
:mod:`forecasting.windows`.
"""

from __future__ import annotations

import datetime as dt
from typing import Mapping

import pandas as pd
from pymongo.database import Database

from telemetry import store
from telemetry.catalogue import STREAM_COLUMNS, STREAMS
from telemetry.health import minute_health
from telemetry.settings import Settings


def minute_frame(
    samples: Mapping[str, pd.DataFrame], start: dt.datetime, end: dt.datetime, settings: Settings
) -> pd.DataFrame:
    """Columns: every stream column (minute mean), ``health``, ``coverage`` and ``flag_*``."""
    health = minute_health(samples, start, end, settings)
    frame = pd.DataFrame(index=health.index)
    for stream in STREAMS:
        data = samples.get(stream.collection)
        for column in stream.columns:
            if data is None or data.empty:
                frame[column] = float("nan")
            else:
                frame[column] = data[column].groupby(data.index.floor("1min")).mean().reindex(frame.index)
    return pd.concat([frame[list(STREAM_COLUMNS)], health], axis=1)


def load_minute_frame(db: Database, start: dt.datetime, end: dt.datetime, settings: Settings) -> pd.DataFrame:
    """:func:`minute_frame` over ``[start, end)`` read from the store.

    Reads from ``alignment_tolerance_s`` before ``start`` so the first minute's grid points
    have their as-of samples.
    """
    lead = dt.timedelta(seconds=settings.alignment_tolerance_s)
    samples = store.read_samples(db, start - lead, end)
    return minute_frame(samples, start, end, settings)
