"""Per-minute frames (or per step, for data coarser than a minute): the streams' means beside health, on one UTC index.

The bins are the same as per-minute health's (:func:`telemetry.health.minute_health`), so a
model trained on these frames forecasts exactly what the API reports. A minute with no
sample of a stream is NaN for that stream (never 0); how the model sees gaps is decided in
:mod:`forecasting.windows`.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from pymongo.database import Database

from telemetry import rollups
from telemetry.framing import STEPS_WITHIN_AN_HOUR, Cadence, cadence_for, minute_frame, raw_minute_frame, service_cadence
from telemetry.services import DEFAULT_SERVICE, Service
from telemetry.settings import Settings
from telemetry.store import SampleWindow


def load_minute_frame(
    db: Database, start: dt.datetime, end: dt.datetime, settings: Settings, cadence: Cadence | None = None,
    service: Service = DEFAULT_SERVICE, window: SampleWindow | None = None,
) -> pd.DataFrame:
    """:func:`minute_frame` of ``service`` over ``[start, end)`` from the store (the configured streams only).

    With ``settings.rollups`` (the default): the stored per-step rows where they exist, the other steps from
    the samples (:func:`telemetry.rollups.read_frame`; the same frame). Otherwise: :func:`raw_minute_frame`.
    ``window``: samples of ``service`` already read (:class:`telemetry.store.SampleWindow`), used where they cover a read.
    """
    if settings.rollups:
        return rollups.read_frame(db, start, end, settings, cadence, service, window)
    return raw_minute_frame(db, start, end, settings, cadence, service, window)


__all__ = [
    "STEPS_WITHIN_AN_HOUR", "Cadence", "cadence_for", "service_cadence", "minute_frame", "load_minute_frame", "raw_minute_frame",
]
