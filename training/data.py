"""What a training run reads: the newest whole minutes of the store, as a per-minute frame, cut into windows."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from telemetry import frames, store
from telemetry.catalogue import STREAMS
from telemetry.health import floor_step
from telemetry.services import DEFAULT_SERVICE, Service, service_named
from telemetry.settings import Settings
from forecasting.windows import Scaling, Split, split_origins
from training.datamodule import FRACTIONS, NotEnoughData, WindowDataModule, minimum_minutes
from training.fit import FitConfig

log = logging.getLogger(__name__)


def newest_sample_time(db, settings: Settings | None = None) -> dt.datetime | None:
    """The newest sample of any of the service's streams (:func:`telemetry.store.newest_sample_times`: bounded queries)."""
    streams = settings.stream_set if settings is not None else STREAMS
    known = [t for t in store.newest_sample_times(db, streams=streams).values() if t is not None]
    return max(known) if known else None


def connect_store(settings: Settings):
    """The trainer's database handle: one read may take ``train_read_timeout_s`` (a week of samples)."""
    return store.connect(settings, socket_timeout_ms=int(settings.train_read_timeout_s * 1000))


def load_training_frame(
    db, settings: Settings, days: float, end: dt.datetime | None = None, service: Service = DEFAULT_SERVICE
) -> pd.DataFrame:
    """The last ``days`` of whole steps in the store (up to ``end`` when given), as a frame of the service's streams.

    The frame cadence follows the data (:func:`telemetry.frames.service_cadence`: a minute for streams
    scraped at least once a minute, the series' own step for coarser data), and is kept in the frame's
    ``attrs["cadence"]``. The newest step may still be filling, so it is left out; steps before the
    first scored one are trimmed.
    """
    newest = store.newest_sample_times(db, streams=settings.stream_set, service=service)  # once: past data makes this a scan
    known_newest = [t for t in newest.values() if t is not None]
    if not known_newest:
        raise NotEnoughData(f"no samples of {', '.join(settings.streams)} in the database: run `pycemaker simulate`, "
                            "`pycemaker collect` or `pycemaker import-csv` first")
    cadence = frames.service_cadence(db, settings, newest, service=service)
    step = cadence.step_minutes
    if end is None:
        end = max(known_newest)
    end = floor_step(end, step)
    start = end - dt.timedelta(days=days)
    log.info("reading %s .. %s from the store (%d-minute steps)", start.isoformat(), end.isoformat(), step)
    frame = frames.load_minute_frame(db, start, end, settings, cadence, service=service)
    known = frame.index[frame["health"].notna()]
    if len(known) == 0:
        raise NotEnoughData(f"no scorable step between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M}")
    # The first scored step may have begun mid-step: start at the next one.
    frame = frame.loc[known[0] + pd.Timedelta(minutes=step) :].copy()
    frame.attrs["cadence"] = cadence
    return frame


def training_services(db, settings: Settings) -> list[Service]:
    """The services a run reads (setting ``train_services``): every service with samples of the first stream
    (one scan of its collection), or the names listed; the default service first when it is among them."""
    if settings.train_services.strip() == "all":
        names = list(store.list_services(db, settings.stream_set[:1], default_name=settings.default_service))
    else:
        names = [n.strip() for n in settings.train_services.split(",") if n.strip()]
    names = sorted(set(names), key=lambda n: (n != settings.default_service, n))
    return [service_named(n, settings.default_service) for n in names]


def only_the_default(services: list[Service]) -> bool:
    """Whether a run reads the default service alone (the one-service run, unchanged since before fleets)."""
    return not services or (len(services) == 1 and services[0].default)


def load_fleet_frames(
    db, settings: Settings, days: float, services: list[Service], end: dt.datetime | None = None
) -> list[tuple[str, pd.DataFrame]]:
    """Each service's frame (:func:`load_training_frame`), the first (the primary: the default service when it has
    data) first; a service without enough data, or with another cadence than the primary's, is left out (logged)."""
    found: list[tuple[str, pd.DataFrame]] = []
    for service in services:
        try:
            frame = load_training_frame(db, settings, days, end, service=service)
        except NotEnoughData as exc:
            log.info("service %s left out of the run: %s", service.name, exc)
            continue
        if found and frame_step_minutes(frame) != frame_step_minutes(found[0][1]):
            log.info("service %s left out of the run: %d-minute steps, the run's are %d", service.name,
                     frame_step_minutes(frame), frame_step_minutes(found[0][1]))
            continue
        found.append((service.name, frame))
    if not found:
        raise NotEnoughData(f"no service of {', '.join(s.name for s in services)} has enough data to train on")
    return found


def frame_step_minutes(frame: pd.DataFrame) -> int:
    """The step of a regular frame, in minutes (a minute for a frame too short to tell)."""
    return int((frame.index[1] - frame.index[0]) / pd.Timedelta(minutes=1)) if len(frame) > 1 else 1


def steps(minutes: int, step_minutes: int) -> int:
    """Whole steps in ``minutes`` (at least one)."""
    return max(1, minutes // step_minutes)


def window_data(frame: pd.DataFrame, settings: Settings, config: FitConfig, scaling: Scaling | None = None,
                plan: RunPlan | None = None) -> WindowDataModule:
    """The windows a network is fitted on: the fractions' split (the full plan), or on a short ``plan`` the
    fine-tuning's parts (:func:`short_finetune_parts`), which see nothing of the held-back block."""
    step = frame_step_minutes(frame)
    L, H = steps(settings.input_minutes, step), steps(settings.horizon_minutes, step)
    short = plan is not None and not plan.lstm
    return WindowDataModule(
        frame, L, H, batch_size=config.batch_size, train_stride=config.train_stride, seed=config.seed, scaling=scaling,
        max_train_windows=config.max_train_windows,
        parts=short_finetune_parts(plan, L, H, steps(settings.gate_horizon_minutes, step)) if short else None,
        visible_rows=plan.fit_end if short else None,
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


def plan_run(rows: int, settings: Settings, step_minutes: int = 1) -> RunPlan:
    """The plan for a frame of ``rows`` steps (see :class:`RunPlan`); NotEnoughData below ``min_history_minutes``."""
    L, H = steps(settings.input_minutes, step_minutes), steps(settings.horizon_minutes, step_minutes)
    if rows * step_minutes < settings.min_history_minutes:
        raise NotEnoughData(
            f"{rows * step_minutes} minutes of history; a first model needs at least {settings.min_history_minutes} "
            f"(min_history_minutes), and the LSTM {minimum_minutes(L, H) * step_minutes}"
        )
    if rows >= minimum_minutes(L, H):
        split = split_origins(rows, L, H, FRACTIONS)
        fit_end = int(round(FRACTIONS[0] * rows))
        return RunPlan(rows, fit_end, split.validation, split.test, lstm=True)
    gate = min(steps(settings.gate_horizon_minutes, step_minutes), H)
    test_start = max(int(0.7 * rows), L)
    if rows - gate >= test_start:
        return RunPlan(rows, test_start, np.empty(0, int), np.arange(test_start, rows - gate + 1), lstm=False)
    return RunPlan(rows, rows, np.empty(0, int), np.empty(0, int), lstm=False)


def refit_window_data(windows: WindowDataModule, config: FitConfig) -> WindowDataModule:
    """A refit's windows: every window whose horizon ``windows``' frame holds (its validation and held-back blocks
    included) trains, on ``windows``' scaling; its validation and test windows stay as they were."""
    windows.setup("fit")
    L, H = windows.input_minutes, windows.horizon_minutes
    split = Split(np.arange(L, len(windows.frame) - H + 1), windows.split.validation, windows.split.test)
    return WindowDataModule(windows.frame, L, H, batch_size=config.batch_size, train_stride=config.train_stride,
                            seed=config.seed, scaling=windows.scaling, max_train_windows=config.max_train_windows,
                            parts=split)


#: The share of a short plan's fit block whose windows validate a fine-tuning (early stopping, the health band).
SHORT_VALIDATION_SHARE = 0.25
#: The fewest training windows a fine-tuning on a short history starts with (about 13 hours of history at L=120, H=180).
MIN_SHORT_FINETUNE_WINDOWS = 120


def short_finetune_parts(plan: RunPlan, input_steps: int, horizon_steps: int, gate_steps: int) -> Split:
    """Fine-tuning's windows on a short plan (too little history for the LSTM's split): the fit block's first 75%
    trains (whole windows), windows from its last 25% validate (their targets cut at the fit block's end, at least
    ``gate_steps`` of them), and the plan's held-back windows test, as every candidate of the run.
    NotEnoughData when fewer than ``MIN_SHORT_FINETUNE_WINDOWS`` training windows fit, or nothing is held back."""
    validation_start = plan.fit_end - int(round(SHORT_VALIDATION_SHARE * plan.fit_end))
    train = np.arange(input_steps, validation_start - horizon_steps + 1)
    validation = np.arange(max(validation_start, input_steps), plan.fit_end - gate_steps + 1)
    if len(train) < MIN_SHORT_FINETUNE_WINDOWS or not len(validation) or not len(plan.test):
        raise NotEnoughData(
            f"{plan.rows} steps of history: fine-tuning on a short history needs {MIN_SHORT_FINETUNE_WINDOWS} training "
            f"windows of {input_steps + horizon_steps} steps in its fit block ({len(train)} fit) and a held-back block")
    return Split(train, validation, plan.test)
