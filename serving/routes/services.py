"""``/api/v1/services``, ``/api/v1/fleet`` and one service's ``status``, ``health`` and ``forecast``.

Every service is served by the one served model. ``/api/v1/status``, ``/health`` and ``/forecast``
answer for the default service (setting ``default_service``), as
``/api/v1/services/{default}/...`` does.
"""

from __future__ import annotations

import datetime as dt

from flask_smorest import Blueprint, abort
from marshmallow import RAISE

from serving.errors import abort_field
from serving.fleet import fleet_order
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
from serving.status import UNKNOWN, Status
from serving.status_service import Snapshot, StatusService
from telemetry.services import NAME_PATTERN, valid_name

blp = Blueprint("services", __name__, url_prefix="/api/v1", description="Every service watched, ranked by time to failure.")

SERVICE = [{
    "in": "path", "name": "service", "required": True,
    "schema": {"type": "string", "pattern": NAME_PATTERN},
    "description": "Service name, as `GET /api/v1/services` lists it.",
}]
NOT_FOUND = "No service of that name has samples."
BAD_NAME = "Not a valid service name (letters, digits, `_`, `.`, `-`; at most 63, starting with a letter or digit)."


def service_status(name: str) -> StatusService:
    """The status service of ``name``: 422 for a malformed name, 404 for one without samples (the default always answers)."""
    if not valid_name(name):
        abort_field("service", BAD_NAME.rstrip("."), location="path")
    rt = runtime()
    if name != rt.settings.default_service and not rt.fleet.directory.knows(name):
        abort(404, message=f"no service named {name!r}: no samples carry it (GET /api/v1/services lists those that do)")
    return rt.fleet.status(name)


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
    snapshots = rt.fleet.snapshots(list(services))
    out = []
    for name, found in services.items():
        status = _status_of(snapshots[name])
        out.append({
            "name": name,
            "default": found.service.default,
            "streams": [{"stream": c, "first": r.first, "last": r.last} for c, r in sorted(found.streams.items())],
            "data": {"first": found.first, "last": found.last},
            "state": status.state if status else UNKNOWN,
            "reason": status.reason if status else None,
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
    entries = []
    for name, snap in rt.fleet.snapshots(names).items():
        status = _status_of(snap)
        if state is not None and (status.state if status else UNKNOWN) != state:
            continue
        entries.append((fleet_order(name, status), _entry(name, status, snap)))
    entries.sort(key=lambda item: item[0])
    return {
        "as_of": rt.now(),
        "threshold": rt.settings.failure_threshold,
        "count": len(entries),
        "services": [entry for _, entry in entries],
    }


def _status_of(snap: Snapshot | None) -> Status | None:
    return snap.status if snap is not None and snap.error is None else None


def _entry(name: str, status: Status | None, snap: Snapshot | None) -> dict:
    if status is None:
        detail = ("status not computed yet: the background refresher gets to it within a round" if snap is None
                  else f"status unavailable: {snap.error or 'not computed'}")
        return {"service": name, "state": UNKNOWN, "reason": None, "detail": detail,
                "health": None, "minute": None, "time_to_failure": None, "driver": None, "as_of": None}
    return {
        "service": name,
        "state": status.state,
        "reason": status.reason,
        "detail": status.detail,
        "health": status.current.health,
        "minute": status.current.minute,
        "time_to_failure": status.time_to_failure,
        "driver": status.driver,
        "as_of": status.as_of,
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
    return status_response(service_status(service))


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
