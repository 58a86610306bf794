"""``/livez``, ``/readyz`` and ``/metrics``: for the orchestrator and Prometheus."""

from __future__ import annotations

from flask import Response
from flask_smorest import Blueprint

from serving.metrics import exposition
from serving.runtime import runtime
from serving.schemas import LivezSchema, ReadyzSchema
from telemetry import store
from telemetry.store import DatabaseUnavailable

blp = Blueprint("operations", __name__, description="Liveness, readiness and Prometheus metrics.")


@blp.route("/livez")
@blp.response(200, LivezSchema)
def livez():
    """Liveness: the process answers (no dependency is checked)"""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.response(200, ReadyzSchema)
@blp.alt_response(503, schema=ReadyzSchema, description="Not ready: the database is unreachable or no model is loaded.")
def readyz():
    """Readiness: the database answers and a model is loaded

    A pointed model that is missing or corrupt is reported under `checks.model.problem`
    while the last good one keeps serving (still ready).
    """
    rt = runtime()
    try:
        store.ping(rt.db)
        database = {"ok": True, "detail": "database answers"}
    except DatabaseUnavailable as exc:
        database = {"ok": False, "detail": str(exc)}
    state = rt.models.state
    if state.forecaster is not None:
        detail = f"serving {state.version}" + (f"; {state.problem}" if state.problem else "")
    else:
        detail = state.problem or "no model has been promoted yet"
    model = {"ok": state.forecaster is not None, "detail": detail, "version": state.version, "wanted": state.wanted, "problem": state.problem}
    ready = database["ok"] and model["ok"]
    return {"ready": ready, "checks": {"database": database, "model": model}}, (200 if ready else 503)


@blp.route("/metrics")
@blp.response(200, description="Prometheus text exposition format.", content_type="text/plain")
def metrics():
    """Prometheus metrics

    `pycemaker_health`, `pycemaker_predicted_health`, `pycemaker_time_to_failure_seconds{bound}`,
    `pycemaker_status_state{state}`, `pycemaker_model_info{version}`, `pycemaker_model_problem`,
    `pycemaker_data_age_seconds` and `pycemaker_http_request_duration_seconds` (histogram by route): the default service's.
    Per service: `pycemaker_services{state}` (how many in each state), and for the `metrics_services` (100) services
    soonest to fail, `pycemaker_service_health{service}` and `pycemaker_service_time_to_failure_seconds{service,bound}`.
    """
    data, content_type = exposition()
    return Response(data, content_type=content_type)
