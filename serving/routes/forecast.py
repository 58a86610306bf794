"""``GET /api/v1/forecast``: health and every stream, with P10/P50/P90 bands."""

from __future__ import annotations

import datetime as dt

import numpy as np
from flask_smorest import Blueprint
from marshmallow import RAISE

from forecasting.contract import TARGETS
from serving import eta
from serving.errors import abort_field, no_model, unavailable
from serving.forecasts import BadInterval, NoInput, NoModel, forecast_interval
from serving.runtime import runtime
from serving.status_service import StatusService
from serving.schemas import ErrorSchema, ForecastQuerySchema, ForecastSchema

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
    return forecast_body(runtime().status, start, end, horizon)


def forecast_body(status: StatusService, start: dt.datetime | None, end: dt.datetime | None, horizon: int | None) -> dict:
    """The body of ``GET /api/v1/forecast`` for the service ``status`` is the status of."""
    rt = runtime()
    try:
        result = forecast_interval(rt, start, end, horizon, status)
    except NoModel as exc:
        no_model(str(exc) or None)
    except BadInterval as exc:
        abort_field(exc.field, str(exc))
    except NoInput as exc:
        if exc.at_current_minute:
            unavailable(str(exc), retry_after=60)
        abort_field("start", str(exc))
    forecast = result.forecast
    band = {name: eta.bands(forecast, name) for name in TARGETS}
    keep = np.flatnonzero((forecast.times >= result.first) & (forecast.times < result.stop))
    points = []
    for i in keep:
        point = {"time": forecast.times[i].to_pydatetime()}
        for name in TARGETS:
            p10, p50, p90 = band[name][i]
            point[name] = {"p10": float(p10), "p50": float(p50), "p90": float(p90)}
        points.append(point)
    return {
        "model_version": forecast.model_version,
        "origin": forecast.origin.to_pydatetime(),
        "start": result.first.to_pydatetime(),
        "end": result.stop.to_pydatetime(),
        "horizon_minutes": result.total_minutes,
        "model_horizon_minutes": result.model_horizon_minutes,
        "rolled_forward": result.total_minutes > result.model_horizon_minutes,
        "quantiles": list(forecast.quantiles),
        "input_coverage": round(result.input_coverage, 4),
        "threshold": rt.settings.failure_threshold,
        "points": points,
    }
