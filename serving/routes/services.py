"""``/api/v1/services``, ``/api/v1/fleet`` and one service's ``status``, ``health`` and ``forecast``.

Every service is served by the one served model. ``/api/v1/status``, ``/health`` and ``/forecast``
answer for the default service (setting ``default_service``), as
``/api/v1/services/{default}/...`` does.
"""

from __future__ import annotations

import datetime as dt

from flask import Flask, Response, current_app
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
    FleetEntrySchema,
    FleetSchema,
    ForecastQuerySchema,
    ForecastSchema,
    HealthQuerySchema,
    HealthSeriesSchema,
    NoQuerySchema,
    ServiceListSchema,
    StatusSchema,
)
from serving.fleet import Listing, missing_entry
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
    listing = rt.fleet.listing()
    scans = rt.fleet.directory.scans  # before reading the ranges: a scan meanwhile renders again, never stale
    rendered = listing.services_body
    if rendered is None or rendered[0] != scans:
        # Rendered once per change of the rows' states or of the directory's scan, not per request.
        entries = {entry["service"]: entry for entry in listing.entries}
        body = services_body(rt.fleet.services(), entries)
        rendered = listing.services_body = (scans, current_app.json.response(body).get_data())
    return Response(rendered[1], mimetype=current_app.json.mimetype)


_SERVICES = ServiceListSchema()


def services_body(services: dict, entries: dict[str, dict]) -> dict:
    """``GET /api/v1/services``' document: each service's streams and data span, with the state and reason of its
    fleet entry (``entries``, by name)."""
    out = []
    for name, found in services.items():
        entry = entries.get(name) or missing_entry(name, "status not computed yet")
        out.append({
            "name": name,
            "default": found.service.default,
            "streams": [{"stream": c, "first": r.first, "last": r.last} for c, r in sorted(found.streams.items())],
            "data": {"first": found.first, "last": found.last},
            "state": entry["state"],
            "reason": entry["reason"],
        })
    return _SERVICES.dump({"count": len(out), "services": out})


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
    head, tail = fleet_body(rt.fleet.listing(), state, current_app, rt.settings.failure_threshold)
    # Only the time it was put together is of this request: the rest was rendered once per change of the rows.
    as_of = current_app.json.dumps(_AS_OF.serialize("as_of", {"as_of": rt.now()}))
    return Response(head + as_of.encode() + tail, mimetype=current_app.json.mimetype)


#: Stands for ``as_of`` in a rendered fleet body (a request puts its own time there).
_AS_OF_MARK = "\x00as_of\x00"
_AS_OF = FleetSchema().fields["as_of"]
_ENTRY = FleetEntrySchema()
_ENVELOPE = FleetSchema(exclude=("as_of", "services"))


def fleet_body(listing: Listing, state: str | None, app: Flask, threshold: float) -> tuple[bytes, bytes]:
    """The ``GET /api/v1/fleet`` body of ``listing`` for the ``state`` filter, as (before ``as_of``'s JSON, after it):
    exactly what ``FleetSchema`` and the app's JSON would make of it, rendered once per listing and filter."""
    found = listing.bodies.get(state)
    if found is not None:
        return found
    dumped = []
    for entry in listing.entries:
        if state is not None and entry["state"] != state:
            continue
        memo = listing.dumped.get(id(entry))
        if memo is None or memo[0] is not entry:
            memo = listing.dumped[id(entry)] = (entry, _ENTRY.dump(entry))
        dumped.append(memo[1])
    envelope = _ENVELOPE.dump({"threshold": threshold, "count": len(dumped)})
    # In FleetSchema's field order, as a dump of the whole document would be.
    doc = {"as_of": _AS_OF_MARK, **{key: envelope[key] for key in ("threshold", "count")}, "services": dumped}
    text = app.json.response(doc).get_data()
    mark = app.json.dumps(_AS_OF_MARK).encode()
    head, _, tail = text.partition(mark)
    listing.bodies[state] = (head, tail)
    if state is None:  # forget the dumps of rows no longer listed
        live = {id(entry) for entry in listing.entries}
        for key in [key for key in list(listing.dumped) if key not in live]:
            listing.dumped.pop(key, None)
    return head, tail


def prerender(listing: Listing, app: Flask, threshold: float) -> None:
    """Render every state filter's body of a new listing (the refresher's thread calls this, not a request)."""
    for state in (None, *sorted({entry["state"] for entry in listing.entries})):
        fleet_body(listing, state, app, threshold)


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
