"""Per-service models (models/services.json, a fleet training run's assignments): each service's status and
forecast come from its assigned model; without assignments every service gets the one current model."""

from __future__ import annotations

from forecasting import registry
from serving.schemas import ForecastSchema, ModelListSchema, StatusSchema
from tests.serving.conftest import Clock
from tests.serving.fleet_data import NOW
from tests.serving.helpers import get_json as _get
from tests.serving.onnx_models import persistence_model

ASSIGNED = "svc-02"


def _assign(models_dir, champion: str, version: str) -> None:
    registry.write_assignments(models_dir, registry.Assignments(
        champion, {ASSIGNED: {"version": version, "kind": "seasonal_naive", "reason": "beats the champion on svc-02"}}, "run-1",
        "2026-03-02T00:00:00+00:00"))


def _models(client, names):
    return {name: _get(client, f"/api/v1/services/{name}/status", StatusSchema)["model"] for name in names}


def test_an_assigned_service_is_served_by_its_model_the_others_by_current(fleet_settings, make_app):
    models_dir = fleet_settings.models_dir
    persistence_model(models_dir, "v-naive-svc02", L=30, H=60, activate=False, kind="seasonal_naive")
    _assign(models_dir, "v-decline", "v-naive-svc02")
    client = make_app(fleet_settings, Clock(NOW)).test_client()
    model = _models(client, ["default", "svc-01", ASSIGNED, "svc-03"])
    assert model[ASSIGNED]["version"] == "v-naive-svc02" and model[ASSIGNED]["kind"] == "seasonal_naive"
    assert model[ASSIGNED]["assigned"] is True and model[ASSIGNED]["problem"] is None
    for name in ("default", "svc-01", "svc-03"):
        assert model[name]["version"] == "v-decline" and model[name]["assigned"] is False
    # The forecast of that service is its model's: persistence holds health flat where the champion declines.
    forecast = _get(client, f"/api/v1/services/{ASSIGNED}/forecast?horizon=30", ForecastSchema)
    assert forecast["model_version"] == "v-naive-svc02"
    p50 = [p["health"]["p50"] for p in forecast["points"]]
    assert max(p50) - min(p50) < 1e-6
    other = _get(client, "/api/v1/services/svc-01/forecast?horizon=30", ForecastSchema)
    assert other["model_version"] == "v-decline"
    listed = _get(client, "/api/v1/models", ModelListSchema)["assignments"]
    assert listed["active"] is True and listed["champion"] == "v-decline"
    assert listed["services"][ASSIGNED]["version"] == listed["services"][ASSIGNED]["serving"] == "v-naive-svc02"


def test_no_assignments_or_stale_ones_serve_current_everywhere(fleet_settings, make_app):
    models_dir = fleet_settings.models_dir
    persistence_model(models_dir, "v-naive-svc02", L=30, H=60, activate=False, kind="seasonal_naive")
    app = make_app(fleet_settings, Clock(NOW))
    client = app.test_client()
    assert all(m["version"] == "v-decline" and not m["assigned"] for m in _models(client, ["svc-01", ASSIGNED]).values())
    assert _get(client, "/api/v1/models", ModelListSchema)["assignments"] is None
    # Decided against another champion (a rollback since): ignored.
    _assign(models_dir, "v-older", "v-naive-svc02")
    app.extensions["pycemaker"].models.poll()
    assert _models(client, [ASSIGNED])[ASSIGNED]["version"] == "v-decline"
    assert _get(client, "/api/v1/models", ModelListSchema)["assignments"]["active"] is False
    # Written for the current champion: picked up on the next poll, without a restart.
    _assign(models_dir, "v-decline", "v-naive-svc02")
    app.extensions["pycemaker"].models.poll()
    assert _models(client, [ASSIGNED])[ASSIGNED]["version"] == "v-naive-svc02"


def test_an_assigned_model_that_does_not_load_leaves_the_service_on_current(fleet_settings, make_app):
    models_dir = fleet_settings.models_dir
    persistence_model(models_dir, "v-broken", L=30, H=60, activate=False, kind="ets")
    _assign(models_dir, "v-decline", "v-broken")
    (models_dir / "v-broken" / registry.MODEL).write_bytes(b"not onnx")
    client = make_app(fleet_settings, Clock(NOW)).test_client()
    model = _models(client, [ASSIGNED])[ASSIGNED]
    assert model["version"] == "v-decline" and model["assigned"] is False
    assert "v-broken" in model["problem"] and "cannot be loaded" in model["problem"]
