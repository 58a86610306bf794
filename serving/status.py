"""The current status: health now, what the model expected for now, time to failure and its driver.

:func:`compute_status` is pure: the recent minute frame, the newest sample per stream, the
model and the clock in; a typed :class:`Status` (which :class:`serving.schemas.StatusSchema`
serialises) and the forecast behind it out. Caching and the background refresh are
:mod:`serving.status_service`'s. Semantics: docs/api.md.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import pandas as pd

from forecasting.forecaster import Forecast
from serving import eta
from serving.model_watcher import ModelState
from telemetry.catalogue import FLAG_NAMES, STREAMS_BY_COLLECTION
from telemetry.health import floor_step, health_rule, staleness
from telemetry.settings import Settings

log = logging.getLogger(__name__)

FAILURE_PREDICTED = "failure_predicted"
FAILING_NOW = "failing_now"
NO_FAILURE = "no_failure_within_horizon"
UNKNOWN = "unknown"
STATES = (FAILURE_PREDICTED, FAILING_NOW, NO_FAILURE, UNKNOWN)
UNKNOWN_REASONS = ("no_data", "insufficient_data", "stale_data", "no_model", "model_error")

Flags = dict[str, float | None]


@dataclass(frozen=True)
class CurrentHealth:
    minute: dt.datetime
    health: float | None = None
    coverage: float = 0.0
    flags: Flags = field(default_factory=lambda: dict.fromkeys(FLAG_NAMES))


@dataclass(frozen=True)
class PredictedCurrent:
    minute: dt.datetime
    p10: float | None
    p50: float | None
    p90: float | None


@dataclass(frozen=True)
class TimeToFailure:
    expected: eta.Crossing | None
    earliest: eta.Crossing | None
    latest: eta.Crossing | None


@dataclass(frozen=True)
class Horizon:
    minutes: int
    end: dt.datetime


@dataclass(frozen=True)
class DataFreshness:
    latest_sample: dt.datetime | None
    stale: bool
    stale_since: dt.datetime | None
    stale_streams: list[str]


@dataclass(frozen=True)
class TrainedOn:
    """The history a model was fitted on."""

    start: dt.datetime
    end: dt.datetime
    minutes: int


@dataclass(frozen=True)
class Quality:
    """How the model scored when its training run judged it (training/selection.py)."""

    horizon_minutes: int
    health_rmse: float | None
    coverage: float | None
    #: False: scored on the data it was fitted on (a first model of a short history).
    held_back: bool
    #: The health MAE its run judged it on (None: a model from before it was recorded).
    health_mae: float | None = None


@dataclass(frozen=True)
class ModelInfo:
    version: str | None
    wanted: str | None
    problem: str | None
    kind: str | None = None
    trained_on: TrainedOn | None = None
    quality: Quality | None = None
    #: True: the service's own model (a fleet run's assignment, models/services.json), not the fleet's current one.
    assigned: bool = False


def model_info(model: ModelState) -> ModelInfo:
    """What the status says about the serving model: its version, kind, the history it saw and its measured quality."""
    card = model.forecaster.card if model.forecaster is not None else None
    if card is None:
        return ModelInfo(model.version, model.wanted, model.problem)
    span = card.data_range or {}
    trained_on = None
    if span.get("start") and span.get("end"):
        start, end = dt.datetime.fromisoformat(span["start"]), dt.datetime.fromisoformat(span["end"])
        trained_on = TrainedOn(start, end, int(span.get("minutes") or (end - start).total_seconds() // 60))
    scores = card.metrics.get("scores") or {}
    quality = None
    if scores:
        quality = Quality(int(scores.get("horizon_minutes") or 0), _r(scores.get("health_rmse")), _r(scores.get("coverage")),
                          bool(scores.get("held_back", True)), _r(scores.get("health_mae")))
    kind = "base" if model.zero_shot else card.kind  # the base model zero-shot, while the registry is empty
    return ModelInfo(model.version, model.wanted, model.problem, kind, trained_on, quality, model.assigned)


@dataclass(frozen=True)
class HealthRule:
    """Which streams health is scored from, and the formula: its meaning changes with their number."""

    streams: list[str]
    formula: str
    step_minutes: int


@dataclass(frozen=True)
class Status:
    """What ``GET /api/v1/status`` returns (field by field: :class:`serving.schemas.StatusSchema`)."""

    state: str
    reason: str | None
    detail: str
    as_of: dt.datetime
    threshold: float
    current: CurrentHealth
    data: DataFreshness
    model: ModelInfo
    health: HealthRule
    predicted_current: PredictedCurrent | None = None
    time_to_failure: TimeToFailure | None = None
    horizon: Horizon | None = None
    driver: str | None = None
    driver_minute: dt.datetime | None = None
    drivers: list[eta.Driver] = field(default_factory=list)


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)



def _in(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours} h " if hours else "") + f"{minutes} min {secs} s"


def compute_status(
    frame: pd.DataFrame,
    latest: dict[str, dt.datetime | None],
    model: ModelState,
    now: dt.datetime,
    settings: Settings,
    step_minutes: int = 1,
    forecast_at: Callable[[pd.DataFrame, pd.Timestamp], Forecast] | None = None,
) -> tuple[Status, Forecast | None]:
    """The status and the forecast behind it.

    ``frame``: the recent frame (telemetry.frames, steps of ``step_minutes``) up to ``now``; ``latest``:
    newest sample of each configured stream at or before ``now``. ``forecast_at(frame, minute)``: the
    model's forecast from ``minute`` (default ``model.forecaster.forecast``; the fleet's batched round
    hands in forecasts it ran for many services at once, serving/batch.py).
    """
    threshold = settings.failure_threshold
    now_ts = pd.Timestamp(now)
    fresh = staleness(latest, now, settings, step_minutes)
    known_times = [t for t in latest.values() if t is not None]
    status = Status(
        state=UNKNOWN,
        reason=None,
        detail="",
        as_of=now,
        threshold=threshold,
        current=CurrentHealth(minute=floor_step(now, step_minutes)),
        data=DataFreshness(max(known_times) if known_times else None, fresh.stale, fresh.since, list(fresh.streams)),
        model=model_info(model),
        health=HealthRule([s.name for s in settings.stream_set], health_rule(settings), step_minutes),
    )

    if not known_times:
        hours = f"{settings.max_interval_hours:g}"
        return _unknown(status, "no_data", f"no samples of {', '.join(settings.streams)} in the database within the last "
                                           f"{hours} h (max_interval_hours)"), None
    if fresh.never:
        names = ", ".join(STREAMS_BY_COLLECTION[c].name for c in fresh.never)
        return _unknown(status, "no_data", f"no_data: {names}: configured (streams) but no sample has arrived within the "
                                           f"last {settings.max_interval_hours:g} h; health needs every configured stream"), None
    if fresh.stale:
        since = f" since {fresh.since.isoformat()}" if fresh.since else ""
        return _unknown(status, "stale_data", f"stale data: {', '.join(fresh.streams)} silent{since}; current health is unknown"), None

    observed = frame[(frame.index <= now_ts) & frame["health"].notna()]
    if observed.empty:
        detail = ("no minute could be scored recently: at every recent grid point some stream had no usable value"
                  " (no sample within the tolerance, NaN or not a number)")
        return _unknown(status, "no_data", detail), None
    minute = observed.index[-1]
    row = observed.iloc[-1]
    health = float(row["health"])
    flags_now = eta.observed_flags(row)
    status = replace(status, current=CurrentHealth(minute.to_pydatetime(), _r(health), _r(row["coverage"]), flags_now))

    forecaster = model.forecaster
    if forecaster is not None and model.zero_shot and int(frame["health"].notna().sum()) < settings.min_history_minutes:
        forecaster = None  # the base model zero-shot starts where a first trained model would: min_history_minutes
    forecast = None
    if forecaster is not None:
        try:
            forecast = (forecast_at or forecaster.forecast)(frame, minute)
        except Exception as exc:  # a model that fails at run time must not take the status down
            log.exception("forecast failed with model %s", forecaster.version)
            status = replace(status, model=replace(status.model, problem=f"forecast failed: {exc}"))
            if health > threshold:
                return _unknown(status, "model_error", f"the model failed to forecast: {exc}"), None
        if forecast is not None:
            health_bands = eta.bands(forecast, "health")
            p10, p50, p90 = (_r(v) for v in health_bands[0])
            status = replace(
                status,
                predicted_current=PredictedCurrent(minute.to_pydatetime(), p10, p50, p90),
                horizon=Horizon(forecaster.horizon_minutes, (forecast.times[-1] + pd.Timedelta(minutes=forecaster.step_minutes)).to_pydatetime()),
            )

    if health <= threshold:
        streak_start, before = _failing_streak(frame, minute, threshold)
        at = eta.Crossing(streak_start.to_pydatetime(), 0.0)
        status = replace(
            status, state=FAILING_NOW, time_to_failure=TimeToFailure(at, at, at),
            detail=f"failing now: health {health:.3f} <= {threshold} since {streak_start.isoformat()}",
        )
        return _with_drivers(status, before, flags_now, minute), forecast
    if forecast is None:
        if forecaster is None:
            history = int(frame["health"].notna().sum())
            if history < settings.min_history_minutes:
                return _unknown(status, "insufficient_data",
                                f"{history} minutes of scored history; a first model needs {settings.min_history_minutes} "
                                "(min_history_minutes): forecasts start once the trainer has fitted one"), None
        return _unknown(status, "no_model", "no model has been promoted yet (`pycemaker train --once`, or the scheduler's "
                                            "next run); current health is known, forecasts are not"), None

    times = forecast.times
    by_health = tuple(eta.crossing(times, health_bands[:, column], threshold, now_ts) for column in (1, 0, 2))
    trend = _memory_trend(frame, now_ts, settings, step_minutes)
    by_memory = (eta.exhaustion_crossings(times, trend, settings.memory_exhaustion, now_ts) if trend is not None
                 else (None, None, None))
    expected, earliest, latest_ = eta.combine(by_health, by_memory)
    status = replace(status, time_to_failure=TimeToFailure(expected, earliest, latest_))
    if expected is not None and expected.cause == eta.MEMORY_EXHAUSTION:
        index = times.get_loc(pd.Timestamp(expected.at))
        status = replace(status, state=FAILURE_PREDICTED,
                         detail=f"memory is expected to reach {settings.memory_exhaustion:g} of the heap (memory_exhaustion) at "
                                f"{expected.at.isoformat()} (in {_in(expected.seconds)}): the app runs out of heap; its floor "
                                f"rises {trend.slope * 60:.2f} of the heap an hour"
                                f"{' and accelerating' if trend.curvature > 0 else ''}, now {trend.floor_now:.2f}")
        status = _with_drivers(status, flags_now, eta.forecast_flags(forecast, index, settings), times[index])
        return _memory_driven(status), forecast
    if expected is not None:
        index = times.get_loc(pd.Timestamp(expected.at))
        status = replace(status, state=FAILURE_PREDICTED,
                         detail=f"health is expected to cross {threshold} at {expected.at.isoformat()} (in {_in(expected.seconds)})")
    else:
        index = int(np.argmin(health_bands[1:, 1])) + 1 if len(times) > 1 else 0
        detail = f"no failure expected within the {status.horizon.minutes}-minute horizon (to {status.horizon.end.isoformat()})"
        if earliest is not None and earliest.cause == eta.MEMORY_EXHAUSTION:
            detail += (f"; at its fastest, the memory floor's trend reaches {settings.memory_exhaustion:g} of the heap "
                       f"(memory_exhaustion) at {earliest.at.isoformat()}")
        elif earliest is not None:
            detail += f"; the pessimistic band crosses at {earliest.at.isoformat()}"
        status = replace(status, state=NO_FAILURE, detail=detail)
    return _with_drivers(status, flags_now, eta.forecast_flags(forecast, index, settings), times[index]), forecast


def _memory_trend(frame: pd.DataFrame, now: pd.Timestamp, settings: Settings, step_minutes: int) -> eta.MemoryTrend | None:
    """The memory floor's trend up to ``now`` (serving/eta.py), when memory exhaustion is on and memory is a stream."""
    if settings.memory_exhaustion is None or "memory" not in frame.columns:
        return None
    return eta.memory_trend(frame.loc[frame.index <= now, "memory"].to_numpy(), step_minutes=step_minutes)


def _memory_driven(status: Status) -> Status:
    """A memory-exhaustion failure is driven by memory: it is the driver, its row first."""
    rows = sorted(status.drivers, key=lambda row: row.stream != "memory")
    return replace(status, driver="memory", drivers=rows)


def _unknown(status: Status, reason: str, detail: str) -> Status:
    return replace(status, state=UNKNOWN, reason=reason, detail=detail)


def _with_drivers(status: Status, before: Flags, at: Flags, minute: pd.Timestamp) -> Status:
    driver, rows = eta.drivers(before, at, 3 * len(status.health.streams))
    rows = [replace(row, contribution=_r(row.contribution), change=_r(row.change)) for row in rows]
    return replace(status, driver=driver, drivers=rows, driver_minute=minute.to_pydatetime())


def _failing_streak(frame: pd.DataFrame, minute: pd.Timestamp, threshold: float) -> tuple[pd.Timestamp, Flags]:
    """Start of the run of failing minutes that ends at ``minute``, and the flags of the healthy minute before it."""
    known = frame[(frame.index <= minute) & frame["health"].notna()]
    healthy = known[known["health"] > threshold]
    if healthy.empty:
        return known.index[0], dict.fromkeys(FLAG_NAMES)
    last_ok = healthy.index[-1]
    after = known[known.index > last_ok]
    return after.index[0], eta.observed_flags(healthy.iloc[-1])


__all__ = ["Status", "HealthRule", "CurrentHealth", "PredictedCurrent", "TimeToFailure", "Horizon", "DataFreshness", "ModelInfo",
           "TrainedOn", "Quality", "model_info",
           "STATES", "UNKNOWN_REASONS", "compute_status"]
