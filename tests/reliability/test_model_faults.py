"""A model file truncated or corrupted after promotion: the last good model keeps serving, /readyz says why.

Already proven elsewhere: a promoted version whose file is garbage, whose outputs break the
contract, or a pointer to nothing, under concurrent requests
(tests/serving/test_model_watcher.py::test_a_promoted_model_is_picked_up_under_load_and_a_bad_one_never_replaces_the_good_one),
and a repaired file being retried (::test_the_watcher_retries_a_repaired_model_and_logs_a_problem_once).
Here: truncation at any point (a copy cut short by a full disk), and the file of the model being
served damaged in place.
"""

from __future__ import annotations

import dataclasses

import pytest

from forecasting import registry
from tests.serving.conftest import Clock, at
from tests.serving.onnx_models import persistence_model


def _ready(client) -> tuple[int, dict]:
    response = client.get("/readyz")
    return response.status_code, response.get_json()


@pytest.mark.parametrize("keep", [0.0, 0.02, 0.5, 0.98])
def test_a_promoted_model_cut_short_never_replaces_the_served_one(scenario_settings, make_app, keep):
    models = scenario_settings.models_dir
    persistence_model(models, "v1", L=30, H=15)
    client = make_app(scenario_settings, Clock(at("21:30"))).test_client()
    assert client.get("/api/v1/status").get_json()["model"]["version"] == "v1"

    persistence_model(models, "v2", L=30, H=20)  # promoted: `current` -> v2 ...
    path = models / "v2" / registry.MODEL
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])  # ... and its file is cut short
    app = client.application
    app.extensions["pycemaker"].models.poll()

    code, body = _ready(client)
    model = body["checks"]["model"]
    assert code == 200 and body["ready"] is True
    assert (model["version"], model["wanted"]) == ("v1", "v2")
    assert model["problem"].startswith("model v2 cannot be loaded") and "still serving v1" in model["problem"]
    status = client.get("/api/v1/status").get_json()
    served = {key: status["model"][key] for key in ("version", "wanted", "problem", "kind")}
    assert served == {"version": "v1", "wanted": "v2", "problem": model["problem"], "kind": "lstm"}
    assert status["state"] != "unknown" and client.get("/api/v1/forecast").status_code == 200
    assert "pycemaker_model_problem 1.0" in client.get("/metrics").get_data(as_text=True)


def test_the_served_model_damaged_in_place_keeps_serving_and_is_reported(scenario_settings, make_app):
    """Its session is in memory: requests keep being answered; the damage is reported before a restart needs the file."""
    settings = dataclasses.replace(scenario_settings, model_poll_seconds=0.1)
    models = settings.models_dir
    persistence_model(models, "v1", L=30, H=15)
    client = make_app(settings, Clock(at("21:30"))).test_client()
    watcher = client.application.extensions["pycemaker"].models
    assert _ready(client)[1]["checks"]["model"]["problem"] is None

    path = models / "v1" / registry.MODEL
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    watcher.poll()
    code, body = _ready(client)
    model = body["checks"]["model"]
    assert code == 200 and model["version"] == "v1" and model["wanted"] == "v1"
    assert "v1" in model["problem"] and "changed on disk" in model["problem"]
    assert client.get("/api/v1/forecast").status_code == 200

    # A worker starting now (gunicorn replaced one) cannot load it: not ready, with the reason.
    fresh = make_app(settings, Clock(at("21:30"))).test_client()
    code, body = _ready(fresh)
    assert code == 503 and body["checks"]["model"]["ok"] is False
    assert body["checks"]["model"]["problem"].startswith("model v1 cannot be loaded")
    assert fresh.get("/api/v1/forecast").status_code == 503

    path.write_bytes(good)  # repaired (or rolled back by the operator): the problem clears by itself
    watcher.poll()
    assert _ready(client)[1]["checks"]["model"]["problem"] is None
    fresh.application.extensions["pycemaker"].models.poll()
    assert _ready(fresh)[0] == 200
