"""Forecasts over an interval (``GET /api/v1/forecast``): which origin, which input, reuse of the status's forecast.

- The origin is the current minute, or a past ``start`` (then the forecast is the one the model
  would have made at ``start``, from the data before it); a future ``start`` is forecast from now.
- From the current minute the status's own forecast is reused (rolled forward when longer), so
  the route and the status never disagree; otherwise the input window is read from the minute cache.
- A forecast needs observed minutes in its input window: :class:`NoInput` says so.

The route (serving/routes/forecast.py) turns the exceptions into HTTP errors.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from forecasting.forecaster import Forecast
from serving.runtime import Runtime
from serving.status_service import StatusService
from telemetry.health import floor_step



class NoModel(Exception):
    """No model is loaded (the message is the watcher's problem, if any)."""


class BadInterval(ValueError):
    """The interval asked for cannot be forecast; ``field`` names the parameter at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class NoInput(Exception):
    """The model's input window before the origin holds no observed minute."""

    def __init__(self, message: str, at_current_minute: bool):
        super().__init__(message)
        self.at_current_minute = at_current_minute


@dataclass(frozen=True)
class IntervalForecast:
    forecast: Forecast
    #: The first minute asked for (the origin, or a later ``start``) and the end (exclusive).
    first: pd.Timestamp
    stop: pd.Timestamp
    #: Minutes forecast from the origin (whole frame steps), and the model's own horizon.
    total_minutes: int
    model_horizon_minutes: int
    #: Share of the input window's minutes with an observed health.
    input_coverage: float


def step_ceil(t: dt.datetime, step_minutes: int = 1) -> dt.datetime:
    floor = floor_step(t, step_minutes)
    return floor if floor == t else floor + dt.timedelta(minutes=step_minutes)


def forecast_interval(
    rt: Runtime, start: dt.datetime | None = None, end: dt.datetime | None = None, horizon: int | None = None,
    status: StatusService | None = None,
) -> IntervalForecast:
    """The forecast over ``[start, end)`` (or ``horizon`` minutes from ``start``) of the service whose status is
    ``status`` (default: the default service's); see the module doc."""
    status = status or rt.status
    now = rt.now()
    forecaster = status.models.forecaster  # the service's own model (serving/model_watcher.py: ServiceModel)
    if forecaster is None:
        raise NoModel(status.models.state.problem or "")
    minutes = forecaster.step_minutes
    step = pd.Timedelta(minutes=minutes)
    current = pd.Timestamp(floor_step(now, minutes))
    first = pd.Timestamp(floor_step(start, minutes)) if start else current
    origin = min(first, current)  # a future start is forecast from now
    if end is None:
        end = (first + pd.Timedelta(minutes=horizon or forecaster.horizon_minutes)).to_pydatetime()
    stop = pd.Timestamp(step_ceil(end, minutes))
    if stop <= first:
        raise BadInterval("end", f"must be after start ({first.isoformat()})")
    total = int((stop - origin) / step)
    if total * minutes > int(rt.settings.max_horizon_hours * 60):
        raise BadInterval("horizon" if horizon else "end", f"at most {rt.settings.max_horizon_hours:g} hours ahead of the "
                          f"origin {origin.isoformat()} (max_horizon_hours)")

    result, frame = None, None
    if origin == current:
        snap = status.snapshot()
        if snap.forecast is not None and snap.forecast.origin == origin and snap.forecast.model_version == forecaster.version:
            result, frame = status.forecast_from_current(snap, total), snap.frame
    if frame is None:
        frame = status.cache.frame((origin - pd.Timedelta(minutes=forecaster.lookback_minutes)).to_pydatetime(), origin.to_pydatetime(), now)
    window = frame[(frame.index >= origin - forecaster.input_steps * step) & (frame.index < origin)]
    coverage = float(window["health"].notna().sum()) / forecaster.input_steps
    if coverage == 0:
        if origin == current:
            raise NoInput("no observed data in the model's input window: nothing to forecast from yet", True)
        raise NoInput(f"no observed data in the {forecaster.input_minutes} minutes before {origin.isoformat()}", False)
    if result is None:
        result = forecaster.forecast(frame, origin, total)
    return IntervalForecast(result, first, stop, total * minutes, forecaster.horizon_minutes, coverage)


__all__ = ["IntervalForecast", "NoModel", "BadInterval", "NoInput", "forecast_interval", "step_ceil"]
