"""What a training run reads: the newest whole minutes of the store, as a per-minute frame, cut into windows."""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd

from telemetry import frames, store
from telemetry.health import floor_minute
from telemetry.settings import Settings
from training.datamodule import NotEnoughData, WindowDataModule
from training.fit import FitConfig

log = logging.getLogger(__name__)


def newest_sample_time(db) -> dt.datetime | None:
    """The newest sample of any stream (:func:`telemetry.store.newest_sample_times`: bounded queries)."""
    known = [t for t in store.newest_sample_times(db).values() if t is not None]
    return max(known) if known else None


def connect_store(settings: Settings):
    """The trainer's database handle: one read may take ``train_read_timeout_s`` (a week of samples)."""
    return store.connect(settings, socket_timeout_ms=int(settings.train_read_timeout_s * 1000))


def load_training_frame(db, settings: Settings, days: float, end: dt.datetime | None = None) -> pd.DataFrame:
    """The last ``days`` of whole minutes in the store (up to ``end``, a whole minute, when given), as a
    per-minute frame.

    The newest minute may still be filling, so it is left out; minutes before the first
    scored one (the store holds less than ``days``) are trimmed.
    """
    if end is None:
        newest = newest_sample_time(db)
        if newest is None:
            raise NotEnoughData("no samples in the database: run `pycemaker simulate` or `pycemaker collect` first")
        end = floor_minute(newest)
    start = end - dt.timedelta(days=days)
    log.info("reading %s .. %s from the store", start.isoformat(), end.isoformat())
    frame = frames.load_minute_frame(db, start, end, settings)
    known = frame.index[frame["health"].notna()]
    if len(known) == 0:
        raise NotEnoughData(f"no scorable minute between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M}")
    # The first scored minute may have begun mid-minute: start at the next one.
    return frame.loc[known[0] + pd.Timedelta(minutes=1) :]


def window_data(frame: pd.DataFrame, settings: Settings, config: FitConfig) -> WindowDataModule:
    return WindowDataModule(
        frame, settings.input_minutes, settings.horizon_minutes,
        batch_size=config.batch_size, train_stride=config.train_stride, seed=config.seed,
    )
