"""``/api/v1/models`` and ``POST /api/v1/train``: the registry, activation (rollback) and training requests."""

from __future__ import annotations

import re

from flask_smorest import Blueprint, abort

from serving.auth import SECURITY, require_token
from serving.model_watcher import load_forecaster
from serving.runtime import runtime
from serving.schemas import ErrorSchema, ModelCardSchema, ModelListSchema, TrainRequestSchema
from forecasting import registry, training_runs

blp = Blueprint("models", __name__, url_prefix="/api/v1", description="The model registry, activation and training requests.")
VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: The operations a model version leads to, for OpenAPI links (clients and schemathesis's stateful runs follow them).
MODEL_CARD = "#/paths/~1api~1v1~1models~1{version}/get"
ACTIVATE = "#/paths/~1api~1v1~1models~1{version}~1activate/post"


def version_links(status: int, expression: str, **targets: tuple[str, str]) -> dict:
    """``@blp.doc`` fragment: OpenAPI links from a response's version (``expression``) to ``targets``
    (link name -> (operationRef, description))."""
    links = {name: {"operationRef": ref, "parameters": {"version": expression}, "description": text}
             for name, (ref, text) in targets.items()}
    return {"responses": {status: {"links": links}}}


def _summary(card: registry.ModelCard, current: str | None, serving: str | None, full: bool = False) -> dict:
    out = {
        "version": card.version,
        "created_at": card.created_at,
        "status": card.status,
        "reason": card.reason,
        "current": card.version == current,
        "serving": card.version == serving,
        "input_minutes": card.input_minutes,
        "horizon_minutes": card.horizon_minutes,
        "quantiles": list(card.quantiles),
        "kind": card.kind,
        "health_source": card.health_source,
        "flag_spread": dict(card.flag_spread),
        "metrics": card.metrics,
        "run_id": (card.selection or {}).get("run_id"),
    }
    if full:
        out.update(
            features=list(card.features),
            targets=list(card.targets),
            scaling=card.scaling,
            data_range=card.data_range,
            training=card.training,
            calibration=card.calibration,
            selection=card.selection,
            format_version=card.format_version,
            onnx=card.onnx,
        )
    return out


def _card(version: str) -> registry.ModelCard:
    if not VERSION_NAME.match(version):
        abort(404, message=f"no model version {version!r}")
    try:
        return registry.read_card(runtime().settings.models_dir, version)
    except registry.RegistryError as exc:
        abort(404, message=str(exc))


@blp.route("/models")
@blp.response(200, ModelListSchema)
@blp.doc(**version_links(200, "$response.body#/current", currentModel=(MODEL_CARD, "The card of the version `current` points at."),
                         activateCurrent=(ACTIVATE, "Activate that version again (a no-op promotion).")))
def list_models():
    """Every model version in the registry, and every training run's candidates

    `models`: oldest first, with the registry's `current` pointer and the version this instance serves
    (they differ briefly after a promotion, or when the pointed model cannot be loaded: see `problem`).
    `runs`: for each training run whose versions are in the registry, newest first, every candidate it
    fitted (every kind), its scores on the run's held-back windows and why it won or lost.
    """
    rt = runtime()
    state = rt.models.state
    current = registry.current_version(rt.settings.models_dir)
    cards = registry.list_versions(rt.settings.models_dir)
    return {
        "current": current,
        "serving": state.version,
        "problem": state.problem,
        "models": [_summary(c, current, state.version) for c in cards],
        "runs": training_runs_in(cards),
        "assignments": _assignments(current),
    }


def _assignments(current: str | None) -> dict | None:
    """``services.json`` (forecasting/registry.py) with whether it holds, and what this instance serves each service with."""
    rt = runtime()
    found = registry.read_assignments(rt.settings.models_dir)
    if found is None:
        return None
    return {"champion": found.champion, "active": found.champion == current, "run_id": found.run_id, "decided_at": found.decided_at,
            "services": {name: {**entry, "serving": rt.models.for_service(name).version} for name, entry in found.services.items()}}


def training_runs_in(cards: list[registry.ModelCard]) -> list[dict]:
    """The training runs behind ``cards`` (each run's latest record of its selection), newest first."""
    runs: dict[str, dict] = {}
    for card in cards:  # oldest first: a run's last card written holds its final selection
        selection = card.selection or {}
        if selection.get("run_id"):
            runs[selection["run_id"]] = {"run_id": selection["run_id"], "created_at": card.created_at, **selection}
    return sorted(runs.values(), key=lambda r: r["created_at"], reverse=True)


@blp.route("/models/<version>")
@blp.response(200, ModelCardSchema)
@blp.alt_response(404, schema=ErrorSchema, description="No such version.")
@blp.doc(**version_links(200, "$response.body#/version", activate=(ACTIVATE, "Activate this version (promotion or rollback).")))
def get_model(version: str):
    """One model's card

    What the model is (input window, horizon, quantiles, channels, scaling), how it was trained and how it scored.
    """
    rt = runtime()
    card = _card(version)
    return _summary(card, registry.current_version(rt.settings.models_dir), rt.models.state.version, full=True)


@blp.route("/models/<version>/activate", methods=["POST"])
@blp.doc(security=SECURITY)
@blp.response(200, ModelCardSchema)
@blp.alt_response(401, schema=ErrorSchema, description="No bearer token.")
@blp.alt_response(403, schema=ErrorSchema, description="A wrong bearer token, or write routes are disabled (no `api_token` configured).")
@blp.alt_response(404, schema=ErrorSchema, description="No such version.")
@blp.alt_response(409, schema=ErrorSchema, description="The version cannot be loaded (missing or corrupt model file); nothing changed.")
@blp.doc(**version_links(200, "$response.body#/version", activatedModel=(MODEL_CARD, "The card of the version now active.")))
@require_token
def activate(version: str):
    """Point the registry's `current` at a version (promotion or rollback)

    The version is loaded and checked first; a model that cannot serve is refused. Every API
    worker picks the new model up within `model_poll_seconds`, without a restart.
    Needs `Authorization: Bearer <api_token>`.
    """
    rt = runtime()
    _card(version)
    try:
        load_forecaster(rt.settings.models_dir, version, rt.settings)
        card = registry.activate(rt.settings.models_dir, version, reason="activated through the API")
    except Exception as exc:
        abort(409, message=f"version {version} cannot be activated: {exc}")
    rt.models.poll()
    return _summary(card, version, rt.models.state.version, full=True)


@blp.route("/train", methods=["POST"])
@blp.doc(security=SECURITY)
@blp.response(202, TrainRequestSchema)
@blp.alt_response(401, schema=ErrorSchema, description="No bearer token.")
@blp.alt_response(403, schema=ErrorSchema, description="A wrong bearer token, or write routes are disabled (no `api_token` configured).")
@blp.alt_response(503, schema=ErrorSchema, description="The database is unreachable.")
@require_token
def train():
    """Ask for a training run

    Files a request in the `training_requests` collection; the training scheduler
    (`pycemaker train --schedule`, never the API) picks it up on its next poll. Needs
    `Authorization: Bearer <api_token>`.
    """
    request_id = training_runs.request_training(runtime().db, requested_by="api")
    return {"request_id": request_id, "message": "training requested: the scheduler picks it up on its next poll"}
