"""What a training run reads: the newest whole minutes of the store, as a per-minute frame, cut into windows."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from telemetry import frames, store
from telemetry.health import floor_minute
from telemetry.settings import Settings
from forecasting.windows import split_origins
from training.datamodule import FRACTIONS, NotEnoughData, WindowDataModule, minimum_minutes
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


@dataclass(frozen=True)
class RunPlan:
    """How a run cuts its frame: the block the models are fitted on, and the windows that choose and judge them.

    - **full** (the LSTM's split fits, :func:`training.datamodule.minimum_minutes`): 70% / 15% / 15% in time
      order; every candidate is fitted on the first block, validated on the second, judged on the third.
    - **short** (a new service, hours of history): the baselines are fitted on the first ~70% and judged
      on windows from the rest, with horizons cut where the data ends (at least ``gate_horizon_minutes``).
    - **fit only** (too little for even that): fitted on everything, judged on nothing held back: on an
      empty registry the best is promoted anyway (a service that has data always has a model).
    """

    rows: int
    fit_end: int
    validation: np.ndarray
    test: np.ndarray
    #: Whether the LSTM can train (its windows fit in every block).
    lstm: bool

    @property
    def name(self) -> str:
        return "full" if self.lstm else "short" if len(self.test) else "fit only"


def plan_run(rows: int, settings: Settings) -> RunPlan:
    """The plan for a frame of ``rows`` minutes (see :class:`RunPlan`); NotEnoughData below ``min_history_minutes``."""
    L, H = settings.input_minutes, settings.horizon_minutes
    if rows < settings.min_history_minutes:
        raise NotEnoughData(
            f"{rows} minutes of history; a first model needs at least {settings.min_history_minutes} "
            f"(min_history_minutes), and the LSTM {minimum_minutes(L, H)}"
        )
    if rows >= minimum_minutes(L, H):
        split = split_origins(rows, L, H, FRACTIONS)
        fit_end = int(round(FRACTIONS[0] * rows))
        return RunPlan(rows, fit_end, split.validation, split.test, lstm=True)
    gate = min(settings.gate_horizon_minutes, H)
    test_start = max(int(0.7 * rows), L)
    if rows - gate >= test_start:
        return RunPlan(rows, test_start, np.empty(0, int), np.arange(test_start, rows - gate + 1), lstm=False)
    return RunPlan(rows, rows, np.empty(0, int), np.empty(0, int), lstm=False)
