"""The original service's routes, same paths and shapes, so its dashboard keeps working.

Fixed on the way: remaining time is in total seconds (the original returned
``timedelta.seconds``, which wraps every 24 h and drops days), times are real UTC (no
hard-coded +3 h), an unknown minute is null (never scored as healthy), and current health is
the newest minute's, not one raw sample's. Kept for compatibility: ``0`` remaining seconds
means "no failure predicted" (within ``hours``); while failing, it is 1.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
from flask_smorest import Blueprint

from serving import eta
from serving.errors import no_model, unavailable
from serving.routes.common import iso_ms, nan_to_none, parse_hours
from serving.runtime import runtime
from serving.schemas import CompatCurrentHealthSchema, CompatHealthDataSchema, CompatPredictedDataSchema, ErrorSchema
from serving.status import FAILING_NOW, UNKNOWN
from serving.status_service import Snapshot

blp = Blueprint(
    "compatibility",
    __name__,
    description="The original service's routes (its dashboard's). New clients: use /api/v1.",
)
HOURS = [{"in": "path", "name": "hours", "required": True, "schema": {"type": "number", "exclusiveMinimum": True, "minimum": 0}}]


def _snapshot() -> Snapshot:
    snap = runtime().status.snapshot()
    if snap.error is not None:
        unavailable(f"database unavailable: {snap.error}")
    return snap


def remaining_seconds(snap: Snapshot, forecast) -> int:
    """Whole seconds to the P50 crossing within ``forecast``; 1 while failing; 0 = no failure predicted."""
    state = snap.status.state if snap.status else UNKNOWN
    if state == FAILING_NOW:
        return 1
    if state == UNKNOWN or forecast is None:
        return 0
    hit = eta.crossing(forecast.times, eta.bands(forecast, "health")[:, 1], runtime().settings.failure_threshold, pd.Timestamp(snap.now))
    return 0 if hit is None else max(1, math.ceil(hit.seconds))


@blp.route("/health_data/<hours>", parameters=[{**HOURS[0], "description": "How many hours back from now."}])
@blp.response(200, CompatHealthDataSchema)
@blp.alt_response(422, schema=ErrorSchema, description="`hours` is not a positive number, or exceeds `max_interval_hours`.")
def health_data(hours: str):
    """Health per minute over the last `hours` (original route)

    `{"data": [{"time_series", "health"}]}`, oldest first; `health` is null for an unknown minute.
    """
    rt = runtime()
    span = parse_hours(hours, rt.settings.max_interval_hours, "max_interval_hours")
    now = rt.now()
    frame = rt.cache.frame(now - dt.timedelta(hours=span), now, now)
    return {"data": [{"time_series": iso_ms(t), "health": h} for t, h in zip(frame.index, nan_to_none(frame["health"]))]}


@blp.route("/predicted_data/<hours>", parameters=[{**HOURS[0], "description": "How many hours ahead to forecast."}])
@blp.response(200, CompatPredictedDataSchema)
@blp.alt_response(422, schema=ErrorSchema, description="`hours` is not a positive number, or exceeds `max_horizon_hours`.")
@blp.alt_response(503, schema=ErrorSchema, description="No model yet, no forecast (stale data: the message says why), or the database is unreachable.")
def predicted_data(hours: str):
    """P50 health forecast for the next `hours` (original route)

    `{"remaining_time", "data": [{"index", "predicted_mean"}]}`: one row per minute from the
    current minute. `remaining_time`: whole seconds until the P50 path crosses the threshold
    (0 = no failure predicted within `hours`; 1 while failing).
    """
    rt = runtime()
    span = parse_hours(hours, rt.settings.max_horizon_hours, "max_horizon_hours")
    snap = _snapshot()
    forecast = rt.status.forecast_from_current(snap, max(1, int(round(span * 60 / rt.cache.step_minutes))))
    if forecast is None:
        if rt.status.models.forecaster is None:
            no_model(rt.status.models.state.problem)
        # A model is loaded but the status made no forecast (stale data, no scorable minute): say why.
        unavailable(f"no forecast: {(snap.status.detail if snap.status else '') or 'the current status has none'}", retry_after=30)
    p50 = eta.bands(forecast, "health")[:, 1]
    return {
        "remaining_time": remaining_seconds(snap, forecast),
        "data": [{"index": iso_ms(t), "predicted_mean": float(v)} for t, v in zip(forecast.times, p50)],
    }


@blp.route("/current_health/<hours>", parameters=[{**HOURS[0], "description": "How far ahead to look for a failure."}])
@blp.response(200, CompatCurrentHealthSchema)
@blp.alt_response(422, schema=ErrorSchema, description="`hours` is not a positive number, or exceeds `max_horizon_hours`.")
@blp.alt_response(503, schema=ErrorSchema, description="The database is unreachable.")
def current_health(hours: str):
    """Current health, its forecast and the time to failure (original route)

    `current_health` is the newest minute's (null when stale), `predicted_current_health` the
    P50 forecast for it (null without a model), `predicted_remaining_time` whole seconds until
    the P50 path crosses the threshold within `hours` (0 = no failure predicted; 1 while failing).
    """
    rt = runtime()
    span = parse_hours(hours, rt.settings.max_horizon_hours, "max_horizon_hours")
    snap = _snapshot()
    forecast = rt.status.forecast_from_current(snap, max(1, int(round(span * 60 / rt.cache.step_minutes))))
    status = snap.status
    return {
        "current_health": status.current.health,
        "predicted_current_health": status.predicted_current.p50 if status.predicted_current else None,
        "predicted_remaining_time": remaining_seconds(snap, forecast),
    }
