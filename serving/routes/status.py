"""``GET /api/v1/status``: the cached status document (serving/status.py computes it)."""

from __future__ import annotations

from flask import Response
from flask_smorest import Blueprint
from marshmallow import RAISE

from serving.errors import unavailable
from serving.routes.models import MODEL_CARD, version_links
from serving.runtime import runtime
from serving.status_service import StatusService
from serving.schemas import STATUS_EXAMPLE, ErrorSchema, NoQuerySchema, StatusSchema

blp = Blueprint("status", __name__, url_prefix="/api/v1", description="Current health, predicted health and time to failure.")


@blp.route("/status")
@blp.arguments(NoQuerySchema, location="query", unknown=RAISE)
@blp.response(200, StatusSchema, example=STATUS_EXAMPLE)
@blp.alt_response(422, schema=ErrorSchema, description="A query parameter was given (this route takes none).")
@blp.alt_response(503, schema=ErrorSchema, description="The database is unreachable.")
@blp.doc(**version_links(200, "$response.body#/model/version", servedModel=(MODEL_CARD, "The card of the model that computed this status.")))
def status(_query: dict):
    """Current status and time to failure

    - `current`: observed health of the newest scored minute (null when the data is stale).
    - `predicted_current`: what the model forecast for that minute from the input window before it.
    - `time_to_failure`: when health is forecast to reach the failure threshold (health <=
      `threshold`): `expected` where the P50 path first crosses, and a range from the band
      paths: `earliest` (P10 path) and `latest` (P90 path; null = not within the horizon).
      Seconds are counted from `as_of`; `at` is the first failing minute.
    - `state`: `failure_predicted`, `failing_now` (seconds 0, `at` = start of the failing
      streak), `no_failure_within_horizon` (see `horizon`), or `unknown` (`reason`: `no_data`,
      `insufficient_data` (too little history for a first model), `stale_data` with `data.stale_since`,
      `no_model`, `model_error`).
    - `model`: the serving model's version, `kind` (`lstm`, `finetuned`, `blend`, `base`, `seasonal_naive`, `ets`: the
      winner of its training run; `base` with no `wanted`: the registry is empty and the pretrained base
      model serves zero-shot), the history it was fitted on and how it scored there.
    - `driver`: the health input whose flag contribution rises most by `driver_minute`.

    Computed when new samples arrive (about every 5 s) or the model changes, not per request.
    """
    return status_response(runtime().status)


def status_response(service: StatusService) -> Response:
    """The cached status document of ``service``'s status, as the response (503 while the database is down)."""
    snap = service.snapshot()
    if snap.error is not None:
        unavailable(f"database unavailable: {snap.error}")
    return Response(snap.body, mimetype="application/json")
