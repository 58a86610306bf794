"""The Flask application factory: flask-smorest API, local Swagger UI, metrics, errors, runtime.

``create_app()`` is what each gunicorn worker (or the dev server) calls; it never imports
torch, Lightning or ``training/``. ``openapi_document()`` is the OpenAPI artifact
(``docs/openapi.json``, written by ``pycemaker openapi``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from typing import Callable

from flask import Flask, g, request
from flask_smorest import Api, abort
from pymongo.database import Database

from pycemaker import __version__
from serving import metrics
from serving.auth import SCHEME
from serving.errors import ensure_message, register_error_handlers
from serving.fleet import Fleet
from serving.minute_cache import MinuteCache
from serving.model_watcher import ModelState, ModelWatcher
from serving.replicas import Replicas
from serving.routes import BLUEPRINTS, PAGES
from serving.routes.services import prerender
from serving.schemas import ErrorSchema
from serving.runtime import Runtime, utc_now
from serving.service_directory import ServiceDirectory
from serving.status_service import StatusService
from telemetry import store
from telemetry.frames import Cadence, cadence_for, service_cadence
from telemetry.services import DEFAULT_SERVICE, Service, service_named
from telemetry.settings import Settings, get_settings
from forecasting.windows import lookback_minutes

log = logging.getLogger(__name__)

API_DESCRIPTION = """\
pycemaker scores a web application's health from four metric streams (CPU, JVM memory,
request rate, response time), forecasts it with an ONNX model, and says how long until it
fails.

- **Health** (0-1) is 1 - sum(flags) / 12, each stream flagged 0-3 against cut points, per
  minute. An unknown minute is `null`, never 1.0.
- **Failure**: a minute whose health is at or below the failure threshold (default 0.3).
- **Time to failure**: where the forecast health paths first reach the threshold: `expected`
  from the median (P50) path, a range from the P10 (earliest) and P90 (latest) paths.
- **Forecasts** carry P10/P50/P90 bands for health and every stream; horizons beyond the
  model's own are rolled forward.

Times are ISO-8601 with a UTC offset (`Z` or `+00:00`; in a URL encode `+` as `%2B`).
Errors are JSON `{code, status, message, errors}`; validation errors name the field.
See docs/api.md.
"""


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], dt.datetime] | None = None,
    background: bool = True,
    status_ttl_s: float = 1.0,
    db: Database | None = None,
) -> Flask:
    """The API. ``background``: poll the registry and refresh the status in threads (production);
    without, both happen on demand (tests). ``clock``: what "now" is (tests replay the past)."""
    settings = settings or get_settings()
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config.update(
        API_TITLE="pycemaker API",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        # Local assets (serving/static/swagger-ui, see fetch_swagger_ui.sh): production networks are often closed.
        OPENAPI_SWAGGER_UI_URL="/static/swagger-ui/",
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None, "displayRequestDuration": True, "deepLinking": True},
        API_SPEC_OPTIONS={"info": {"description": API_DESCRIPTION, "license": {"name": "MIT"}}},
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    api = _Api(app)
    api.spec.components.security_scheme("bearerAuth", SCHEME)
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    for page in PAGES:
        app.register_blueprint(page)
    register_error_handlers(app)

    clock = clock or utc_now
    db = db if db is not None else store.connect(settings, autostart=False, check=False)
    default_service = service_named(settings.default_service, settings.default_service)
    cache = MinuteCache(db, settings, recent_minutes=180, overlap_minutes=2, cadence=cadence_for(None, settings), service=default_service)
    fleets: list[Fleet] = []  # the fleet, once made (a model swap before that has no fleet to tell)

    def on_swap(state: ModelState) -> None:
        metrics.MODEL_SWAPS.inc()
        served = models.for_service(settings.default_service)
        metrics.observe_model(served.version, served.problem)
        if state.forecaster is not None:  # frames of the cadence the model was made for
            card = state.forecaster.card
            cache.set_cadence(Cadence(card.step_minutes, card.tolerance_s))
            for fleet in fleets:
                fleet.set_cadence(Cadence(card.step_minutes, card.tolerance_s))

    models = ModelWatcher(settings, on_swap=on_swap, step_minutes=settings.frame_minutes or None)
    cache.ensure_recent(lookback_minutes(settings.input_minutes))

    def on_update(snap) -> None:
        # The model gauges name the model serving now, not the one this snapshot was computed with (a snapshot
        # finishing just after a swap would otherwise put the old version back).
        served = models.for_service(settings.default_service)
        metrics.observe_status(snap.status if snap.error is None else None, served.version, served.problem, snap.now)

    status = StatusService(settings, cache, models.view(settings.default_service), clock, ttl_s=status_ttl_s, on_update=on_update)
    models.poll()  # the first model is loaded before the first request
    if models.forecaster is None and not isinstance(db, _NoDatabase):
        cache.set_cadence(_detected_cadence(db, settings, default_service))

    def fleet_cadence(service: Service) -> Cadence:
        forecaster = models.forecaster
        if forecaster is not None:
            return Cadence(forecaster.card.step_minutes, forecaster.card.tolerance_s)
        return _detected_cadence(db, settings, service)

    directory = ServiceDirectory(db, settings, clock)
    fleet = Fleet(db, settings, models, clock, directory, status, cadence=fleet_cadence,
                  recent_minutes=lambda: cache.recent_minutes, ttl_s=max(status_ttl_s, 1.0) if background else status_ttl_s,
                  on_round=lambda ranked: metrics.observe_fleet(ranked, settings.metrics_services),
                  replicas=Replicas(db, settings) if settings.replica_split else None)
    fleet.on_listing = lambda listing: prerender(listing, app, settings.failure_threshold)
    fleets.append(fleet)
    rt = Runtime(settings, db, cache, models, status, clock, background, fleet)
    app.extensions["pycemaker"] = rt
    app.extensions["pycemaker.api"] = api
    _install_request_hooks(app, rt)
    rt.ensure_background()
    return app


class _Api(Api):
    ERROR_SCHEMA = ErrorSchema  # one error schema in the document, with examples

    def handle_http_exception(self, error):
        ensure_message(error)
        return super().handle_http_exception(error)


#: No route takes a request body: anything larger than this is refused (413) before it is read.
MAX_REQUEST_BYTES = 64 * 1024
#: Sent with every response (a route that sets its own Content-Security-Policy keeps it).
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
#: For everything but HTML pages (JSON, metrics, assets): nothing may load, nothing may frame it.
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"


def _install_request_hooks(app: Flask, rt: Runtime) -> None:
    origins = tuple(rt.settings.cors_origins)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    @app.before_request
    def _started() -> None:
        g.started = time.perf_counter()
        if rt.background and rt.pid != os.getpid():
            rt.ensure_background()
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            abort(413, message=f"request body larger than {MAX_REQUEST_BYTES} bytes (no route takes a body)")

    @app.after_request
    def _finished(response):
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        started = g.get("started")
        if started is not None:
            metrics.REQUEST_SECONDS.labels(request.method, rule, str(response.status_code)).observe(time.perf_counter() - started)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if "Content-Security-Policy" not in response.headers:
            # Swagger UI (/docs) runs an inline script: HTML pages set their own policy, or none.
            if response.mimetype != "text/html":
                response.headers["Content-Security-Policy"] = API_CONTENT_SECURITY_POLICY
            response.headers.setdefault("X-Frame-Options", "DENY")
        if origins:
            origin = request.headers.get("Origin")
            if origin and ("*" in origins or origin in origins):
                response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
                response.headers.add("Vary", "Origin")
                if request.method == "OPTIONS":
                    response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
                    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
                    response.headers["Access-Control-Max-Age"] = "600"
        return response


def openapi_document(settings: Settings | None = None) -> dict:
    """The OpenAPI document, as served at ``/openapi.json`` (deterministic: no settings values in it)."""
    settings = settings or Settings()
    app = create_app(settings, background=False, db=_NoDatabase())
    with app.app_context():
        return app.extensions["pycemaker.api"].spec.to_dict()


def _detected_cadence(db: Database, settings: Settings, service: Service = DEFAULT_SERVICE) -> Cadence:
    """The cadence of a service's data, while no model says it (the settings' when the database cannot tell yet)."""
    try:
        return service_cadence(db, settings, service=service)
    except store.DatabaseUnavailable as exc:
        log.warning("cadence not detected (%s): the settings' until a model is loaded", exc)
        return cadence_for(None, settings)


class _NoDatabase:
    """Stands in for the database when only the document is wanted (nothing is read)."""

    def __getitem__(self, name):
        raise RuntimeError("no database in openapi_document()")
