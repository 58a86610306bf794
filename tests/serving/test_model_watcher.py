"""Models at run time: hot swap under concurrent requests, the last good model kept when the pointed one is bad."""

from __future__ import annotations

import dataclasses
import threading
import time

import requests

from serving.model_watcher import ModelWatcher
from forecasting import registry
from tests.serving.conftest import Clock, at
from tests.serving.helpers import serving
from tests.serving.onnx_models import build_onnx, declining_model, install, persistence_model


def _point(models_dir, version: str) -> None:
    """Move the ``current`` pointer the way the registry does (atomic rename), without its checks."""
    tmp = models_dir / ".current.tmp"
    tmp.write_text(version + "\n")
    tmp.replace(models_dir / registry.CURRENT)


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_promoted_model_is_picked_up_under_load_and_a_bad_one_never_replaces_the_good_one(scenario_settings, make_app):
    settings = dataclasses.replace(scenario_settings, model_poll_seconds=0.1)
    models = settings.models_dir
    persistence_model(models, "v1", L=30, H=15)
    app = make_app(settings, Clock(at("21:30:10")), background=True, status_ttl_s=0.2)

    with serving(app) as base:
        stop = threading.Event()
        results: list[tuple[int, str | None, str]] = []  # (status code, model version, route)
        failures: list[str] = []

        def client() -> None:
            with requests.Session() as http:
                while not stop.is_set():
                    for url in ("/api/v1/forecast?horizon=20", "/api/v1/status"):
                        try:
                            response = http.get(base + url, timeout=10)
                        except requests.RequestException as exc:
                            failures.append(repr(exc))
                            continue
                        body = response.json()
                        version = body.get("model_version") or (body.get("model") or {}).get("version")
                        results.append((response.status_code, version, url))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            def forecasts_by(version: str) -> bool:
                """The last two forecasts came from ``version``. Forecasts use the watcher's model at once; the
                status is a snapshot recomputed in the background, so under this load it names the model it
                was computed with for a second or more after a swap."""
                served = [v for _, v, url in results[-40:] if url.startswith("/api/v1/forecast")]
                return served[-2:] == [version, version]

            _wait(lambda: len(results) > 20)
            declining_model(models, "v2", L=30, H=30)  # promoted while requests are in flight
            _wait(lambda: forecasts_by("v2"))
            swapped_at = len(results)

            # A corrupt model: the pointer moves, the API keeps serving v2 and says so.
            install(models, "v3-corrupt", build_onnx(30, 15, (0.1, 0.5, 0.9)), input_minutes=30, horizon_minutes=15, activate=False)
            (models / "v3-corrupt" / registry.MODEL).write_bytes(b"\x08\x07garbage")
            _point(models, "v3-corrupt")
            _wait(lambda: (requests.get(base + "/readyz").json()["checks"]["model"]["problem"] or "").startswith("model v3-corrupt"))
            ready = requests.get(base + "/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["model"]["version"] == "v2"

            # A model whose outputs break the contract (its card promises another horizon).
            install(models, "v4-wrong-shape", build_onnx(30, 15, (0.1, 0.5, 0.9)), input_minutes=30, horizon_minutes=45, activate=False)
            _point(models, "v4-wrong-shape")
            _wait(lambda: "outputs (1, 15, 6, 3)" in (requests.get(base + "/readyz").json()["checks"]["model"]["problem"] or ""))

            # A pointer to nothing at all.
            _point(models, "ghost")
            _wait(lambda: "ghost" in (requests.get(base + "/api/v1/models").json()["problem"] or ""))
            listing = requests.get(base + "/api/v1/models").json()
            assert (listing["current"], listing["serving"]) == ("ghost", "v2")

            # Rollback to v1 through the registry: served again.
            registry.activate(models, "v1")
            _wait(lambda: forecasts_by("v1"))
            assert requests.get(base + "/readyz").json()["checks"]["model"]["problem"] is None
        finally:
            stop.set()
            for t in threads:
                t.join(10)

    assert not failures
    assert {code for code, _, _ in results} == {200}  # no request failed across four swaps
    assert {version for _, version, _ in results[swapped_at:]} <= {"v1", "v2"}
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'pycemaker_model_info{version="v1"} 1.0' in metrics and 'pycemaker_model_info{version="v2"} 0.0' in metrics


def test_the_watcher_retries_a_repaired_model_and_logs_a_problem_once(tmp_path, caplog):
    from telemetry.settings import Settings

    settings = Settings(models_dir=tmp_path / "models", base_models_dir=tmp_path / "no-base")  # no zero-shot fallback
    watcher = ModelWatcher(settings)
    assert watcher.poll() is False and watcher.state.version is None and watcher.state.problem is None

    card = persistence_model(settings.models_dir, "v1", L=30, H=15)
    good = (settings.models_dir / "v1" / registry.MODEL).read_bytes()
    (settings.models_dir / "v1" / registry.MODEL).write_bytes(b"broken")
    with caplog.at_level("WARNING"):
        for _ in range(3):
            assert watcher.poll() is False
    assert watcher.forecaster is None and watcher.state.wanted == "v1"
    assert sum("cannot be loaded" in r.message for r in caplog.records) == 1
    assert card.version == "v1"

    (settings.models_dir / "v1" / registry.MODEL).write_bytes(good)  # repaired in place
    assert watcher.poll() is True and watcher.state.version == "v1" and watcher.state.problem is None
