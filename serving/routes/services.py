"""``/api/v1/services``, ``/api/v1/fleet`` and one service's ``status``, ``health`` and ``forecast``.

Every service is served by the one served model. ``/api/v1/status``, ``/health`` and ``/forecast``
answer for the default service (setting ``default_service``), as
``/api/v1/services/{default}/...`` does.
"""

from __future__ import annotations

import datetime as dt

from flask import Response
from flask_smorest import Blueprint, abort
from marshmallow import RAISE

from serving.errors import abort_field
from serving.routes.forecast import forecast_body
from serving.routes.health import health_series
from serving.routes.status import status_response
from serving.runtime import runtime
from serving.schemas import (
    STATUS_EXAMPLE,
    ErrorSchema,
    FleetQuerySchema,
    FleetSchema,
    ForecastQuerySchema,
    ForecastSchema,
    HealthQuerySchema,
    HealthSeriesSchema,
    NoQuerySchema,
    ServiceListSchema,
    StatusSchema,
)
from serving.status_service import StatusService
from telemetry.services import NAME_PATTERN, valid_name

blp = Blueprint("services", __name__, url_prefix="/api/v1", description="Every service watched, ranked by time to failure.")

SERVICE = [{
    "in": "path", "name": "service", "required": True,
    "schema": {"type": "string", "pattern": NAME_PATTERN},
    "description": "Service name, as `GET /api/v1/services` lists it.",
}]
NOT_FOUND = "No service of that name has samples."
BAD_NAME = "Not a valid service name (letters, digits, `_`, `.`, `-`; at most 63, starting with a letter or digit)."


def known_service(name: str) -> None:
    """422 for a malformed name, 404 for one without samples (the default always answers)."""
    if not valid_name(name):
        abort_field("service", BAD_NAME.rstrip("."), location="path")
    rt = runtime()
    if name != rt.settings.default_service and not rt.fleet.directory.knows(name):
        abort(404, message=f"no service named {name!r}: no samples carry it (GET /api/v1/services lists those that do)")


def service_status(name: str) -> StatusService:
    """The status service of ``name`` (created on first use), once :func:`known_service` accepts the name."""
    known_service(name)
    return runtime().fleet.status(name)


@blp.route("/services")
@blp.arguments(NoQuerySchema, location="query", unknown=RAISE)
@blp.response(200, ServiceListSchema)
@blp.alt_response(422, schema=ErrorSchema, description="A query parameter was given (this route takes none).")
@blp.alt_response(503, schema=ErrorSchema, description="The database is unreachable.")
def list_services(_query: dict):
    """Every service watched

    Each service with samples, by name: its streams with their data ranges, the span of its data and the
    state of its status. Samples without a `service` field belong to the default service (`default: true`).
    """
    rt = runtime()
    services = rt.fleet.services()
    rows = rt.fleet.rows(list(services))
    out = []
    for name, found in services.items():
        row = rows[name]
        out.append({
            "name": name,
            "default": found.service.default,
            "streams": [{"stream": c, "first": r.first, "last": r.last} for c, r in sorted(found.streams.items())],
            "data": {"first": found.first, "last": found.last},
            "state": row.state,
            "reason": row.reason,
        })
    return {"count": len(out), "services": out}


@blp.route("/fleet")
@blp.arguments(FleetQuerySchema, location="query", unknown=RAISE, as_kwargs=True)
@blp.response(200, FleetSchema)
@blp.alt_response(422, schema=ErrorSchema, description="An unknown parameter, or an unknown `state`.")
@blp.alt_response(503, schema=ErrorSchema, description="The database is unreachable.")
def fleet(state: str | None = None):
    """Every service, soonest failure first

    Each service's state, current health, time to failure (expected from the P50 path, a range from the
    P10 and P90 paths) and driver, as in its status. Order: failing now (by name), then failure predicted by
    expected seconds, then by earliest seconds, then no failure within the horizon by name, unknown last.
    `state` keeps only the services in that state. Statuses are recomputed in the background, not per request.
    """
    rt = runtime()
    names = list(rt.fleet.services())
    rows = [row for row in rt.fleet.rows(names).values() if state is None or row.state == state]
    rows.sort(key=lambda row: row.order)
    return {
        "as_of": rt.now(),
        "threshold": rt.settings.failure_threshold,
        "count": len(rows),
        "services": [row.entry for row in rows],
    }


@blp.route("/services/<service>/status", parameters=SERVICE)
@blp.arguments(NoQuerySchema, location="query", unknown=RAISE)
@blp.response(200, StatusSchema, example=STATUS_EXAMPLE)
@blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
@blp.alt_response(422, schema=ErrorSchema, description=BAD_NAME + " Or a query parameter was given.")
@blp.alt_response(503, schema=ErrorSchema, description="The database is unreachable.")
def service_status_route(_query: dict, service: str):
    """One service's status and time to failure

    As `GET /api/v1/status` (same schema), for `service`.
    """
    known_service(service)
    # A split fleet: another replica computes it (serving/replicas.py), so no status of it is kept here.
    stored = runtime().fleet.stored_body(service)
    if stored is not None:
        return Response(stored, mimetype="application/json")
    return status_response(runtime().fleet.status(service))


@blp.route("/services/<service>/health", parameters=SERVICE)
@blp.arguments(HealthQuerySchema, location="query", unknown=RAISE, as_kwargs=True)
@blp.response(200, HealthSeriesSchema)
@blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
@blp.alt_response(422, schema=ErrorSchema, description=BAD_NAME + " Or a malformed or inconsistent parameter (named in `errors`).")
@blp.alt_response(503, schema=ErrorSchema, description="The database is unreachable.")
def service_health(service: str, start: dt.datetime | None = None, end: dt.datetime | None = None, step: int = 1):
    """One service's observed health over an interval

    As `GET /api/v1/health` (same parameters and schema), for `service`.
    """
    return health_series(service_status(service).cache, start, end, step)


@blp.route("/services/<service>/forecast", parameters=SERVICE)
@blp.arguments(ForecastQuerySchema, location="query", unknown=RAISE, as_kwargs=True)
@blp.response(200, ForecastSchema)
@blp.alt_response(404, schema=ErrorSchema, description=NOT_FOUND)
@blp.alt_response(422, schema=ErrorSchema, description=BAD_NAME + " Or a malformed or inconsistent parameter, or no observed data before a past `start`.")
@blp.alt_response(503, schema=ErrorSchema, description="No model yet, no data yet, or the database is unreachable.")
def service_forecast(service: str, start: dt.datetime | None = None, end: dt.datetime | None = None, horizon: int | None = None):
    """One service's forecast of health and every stream

    As `GET /api/v1/forecast` (same parameters and schema), for `service`.
    """
    return forecast_body(service_status(service), start, end, horizon)
