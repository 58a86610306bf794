"""``GET /api/v1/forecast``: health and every stream, with P10/P50/P90 bands."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from flask_smorest import Blueprint
from marshmallow import RAISE

from serving import eta
from serving.errors import abort_field, no_model, unavailable
from serving.routes.common import minute_ceil
from serving.runtime import runtime
from serving.schemas import ErrorSchema, ForecastQuerySchema, ForecastSchema
from telemetry.health import floor_minute
from telemetry.windows import MAX_FILL_MINUTES, TARGETS

blp = Blueprint("forecast", __name__, url_prefix="/api/v1", description="Quantile forecasts from the served ONNX model.")


@blp.route("/forecast")
@blp.arguments(ForecastQuerySchema, location="query", unknown=RAISE, as_kwargs=True)
@blp.response(200, ForecastSchema)
@blp.alt_response(422, schema=ErrorSchema, description="A malformed or inconsistent parameter, or no observed data before a past `start`.")
@blp.alt_response(503, schema=ErrorSchema, description="No model yet, no data yet, or the database is unreachable.")
def forecast(start: dt.datetime | None = None, end: dt.datetime | None = None, horizon: int | None = None):
    """Forecast of health and every stream

    From the current minute (default) or from a past `start`: then it is the forecast the model
    would have made at `start`, from the data before it, to lay over what happened
    (`GET /api/v1/health` over the same interval). Horizons beyond the model's own H (up to
    `max_horizon_hours`) are rolled forward by feeding the median back as input
    (`rolled_forward: true`; the bands of that part are narrower than the truth).
    """
    rt = runtime()
    now = rt.now()
    forecaster = rt.models.forecaster
    if forecaster is None:
        no_model(rt.models.state.problem)
    current = pd.Timestamp(floor_minute(now))
    first = pd.Timestamp(floor_minute(start)) if start else current
    origin = min(first, current)  # a future start is forecast from now
    if end is None:
        end = (first + pd.Timedelta(minutes=horizon or forecaster.horizon_minutes)).to_pydatetime()
    stop = pd.Timestamp(minute_ceil(end))
    total = int((stop - origin) / pd.Timedelta(minutes=1))
    if stop <= first:
        abort_field("end", f"must be after start ({first.isoformat()})")
    max_minutes = int(rt.settings.max_horizon_hours * 60)
    if total > max_minutes:
        field = "horizon" if horizon else "end"
        abort_field(field, f"at most {rt.settings.max_horizon_hours:g} hours ahead of the origin {origin.isoformat()} (max_horizon_hours)")

    snap = rt.status.snapshot() if origin == current else None
    result = None
    if snap is not None and snap.forecast is not None and snap.forecast.origin == origin and snap.forecast.model_version == forecaster.version:
        result = rt.status.forecast_from_current(snap, total)
        frame = snap.frame
    if result is None:
        lead = forecaster.input_minutes + MAX_FILL_MINUTES
        frame = rt.cache.frame((origin - pd.Timedelta(minutes=lead)).to_pydatetime(), origin.to_pydatetime(), now)
    window = frame[(frame.index >= origin - pd.Timedelta(minutes=forecaster.input_minutes)) & (frame.index < origin)]
    coverage = float(window["health"].notna().sum()) / forecaster.input_minutes
    if coverage == 0:
        if origin == current:
            unavailable("no observed data in the model's input window: nothing to forecast from yet", retry_after=60)
        abort_field("start", f"no observed data in the {forecaster.input_minutes} minutes before {origin.isoformat()}")
    if result is None:
        result = forecaster.forecast(frame, origin, total)

    band = {name: eta.bands(result, name) for name in TARGETS}
    keep = np.flatnonzero((result.times >= first) & (result.times < stop))
    points = []
    for i in keep:
        point = {"time": result.times[i].to_pydatetime()}
        for name in TARGETS:
            p10, p50, p90 = band[name][i]
            point[name] = {"p10": float(p10), "p50": float(p50), "p90": float(p90)}
        points.append(point)
    return {
        "model_version": result.model_version,
        "origin": origin.to_pydatetime(),
        "start": first.to_pydatetime(),
        "end": stop.to_pydatetime(),
        "horizon_minutes": total,
        "model_horizon_minutes": forecaster.horizon_minutes,
        "rolled_forward": total > forecaster.horizon_minutes,
        "quantiles": list(result.quantiles),
        "input_coverage": round(coverage, 4),
        "threshold": rt.settings.failure_threshold,
        "points": points,
    }
