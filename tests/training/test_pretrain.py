"""Pretraining on the app family: a tiny run end to end, the artifact it leaves, and zero-shot forecasts from it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pytest

from forecasting import registry
from forecasting.contract import TARGETS
from forecasting.forecaster import OnnxForecaster
from telemetry.app_family import HELD_OUT_SEEDS, in_held_out_corner, is_held_out, sample_profile
from telemetry.settings import Settings
from tests.training.conftest import tiny_fit_config

torch = pytest.importorskip("torch")

from training.base_network import MIN_SCALE, BaseLSTM, window_scale  # noqa: E402
from training.pretrain import PretrainConfig, app_frame, load_base, pretrain  # noqa: E402

UTC = dt.timezone.utc
SETTINGS = Settings(input_minutes=60, horizon_minutes=30)
TINY_FAMILY = PretrainConfig(apps=3, validation_apps=1, held_out_apps=2, days=0.25, stride=15, min_scale=0.25)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    results = root / "pretrain.json"
    model = pretrain(SETTINGS, TINY_FAMILY, tiny_fit_config(max_epochs=2), root, results, progress_bar=False)
    return model, root, results


def test_pretraining_leaves_a_registry_model_its_weights_and_its_figures(base):
    model, root, results = base
    assert model.directory.parent == root / "base"
    assert {p.name for p in model.directory.iterdir()} == {"model.onnx", "card.json", "weights.pt"}
    assert registry.current_version(root / "base") == model.card.version
    card = model.card
    assert card.training["base"] and card.training["epochs"] == 2 and card.onnx["parity_max_abs_diff"] < 1e-4
    seen = card.data_range["family"]["seeds"] + card.data_range["family"]["validation_seeds"]
    assert len(seen) == 4 and not any(is_held_out(sample_profile(s)) for s in seen)
    held = card.metrics["held_out_zero_shot"]["apps"]
    assert len(held) == 2 and all(np.isfinite(a["health_mae"]) for a in held)
    run = json.loads(results.read_text())["runs"]["cpu"]
    assert run["version"] == card.version and run["seconds"]["total"] > 0 and run["device"].startswith("cpu")
    assert len(run["loss"]["history"]) == 2


def test_load_base_gives_the_network_the_onnx_file_runs(base):
    model, root, _ = base
    loaded = load_base(root)
    assert loaded is not None and loaded.card.version == model.card.version
    network = loaded.network()
    assert isinstance(network, BaseLSTM)
    # The spread floor is the network's hyperparameter, in its card; a card from before it has the old floor.
    assert network.min_scale == loaded.card.training["network"]["min_scale"] == TINY_FAMILY.min_scale == 0.25
    older = {k: v for k, v in loaded.card.training["network"].items() if k != "min_scale"}
    assert BaseLSTM(**older).min_scale == MIN_SCALE == 0.5
    window = np.random.default_rng(0).normal(size=(3, 60, network.hparams.n_features)).astype(np.float32)
    window[:, :, len(TARGETS) : 2 * len(TARGETS)] = 1.0
    forecaster = OnnxForecaster(root / "base", loaded.card.version, SETTINGS)
    with torch.no_grad():
        expected = network(torch.from_numpy(window)).numpy()
    np.testing.assert_allclose(forecaster.predict_scaled(window), expected, atol=1e-4)
    assert load_base(root / "nowhere") is None


@pytest.mark.parametrize("streams", [("cpu", "requests", "response_time"), ("requests",)])
def test_a_service_with_fewer_streams_gets_a_zero_shot_forecast(base, streams):
    model, root, _ = base
    profile = dataclasses.replace(sample_profile(min(HELD_OUT_SEEDS)), streams=streams)
    app = app_frame(profile, 0.1, SETTINGS, run_seed=3)
    forecaster = OnnxForecaster(root / "base", model.card.version, app.settings)
    forecast = forecaster.forecast(app.frame, app.frame.index[-1])
    health = forecast.median("health")
    assert len(health) == 30 and np.isfinite(health).all() and ((0 <= health) & (health <= 1)).all()


def test_window_scaling_ignores_missing_minutes_and_has_a_floor():
    T = len(TARGETS)
    window = torch.zeros(1, 4, 2 * T + 2)
    window[0, :, 0] = torch.tensor([1.0, 3.0, 100.0, 100.0])
    window[0, :2, T] = 1.0  # only the first two minutes of channel 0 were observed
    mean, scale = window_scale(window, T)
    assert mean[0, 0] == pytest.approx(2.0) and scale[0, 0] == pytest.approx((1.0 + 0.25) ** 0.5)
    assert mean[0, 1] == 0 and scale[0, 1] == pytest.approx(0.5)
    _, scale = window_scale(window, T, min_scale=0.1)
    assert scale[0, 0] == pytest.approx((1.0 + 0.01) ** 0.5) and scale[0, 1] == pytest.approx(0.1)


def test_the_held_out_corner_is_not_in_the_pretraining_sample(base):
    model, _, _ = base
    for seed in model.card.data_range["family"]["seeds"]:
        assert not in_held_out_corner(sample_profile(seed)) and seed not in HELD_OUT_SEEDS


def test_pretrain_command_writes_the_base_model(tmp_path):
    from pycemaker.cli import main

    config = tmp_path / "pycemaker.toml"
    config.write_text(f'models_dir = "{tmp_path / "models"}"\ninput_minutes = 60\nhorizon_minutes = 30\n')
    results = tmp_path / "pretrain.json"
    args = ["--config", str(config), "pretrain", "--apps", "2", "--validation-apps", "1", "--held-out-apps", "1",
            "--days", "0.2", "--stride", "20", "--epochs", "1", "--hidden-size", "8", "--results", str(results), "--no-progress"]
    assert main(args) == 0
    model = load_base(tmp_path / "models")
    assert model is not None and model.card.training["pretrain"]["apps"] == 2
    assert json.loads(results.read_text())["runs"]["cpu"]["version"] == model.card.version
    assert main([*args[:3], "--apps", "0"]) == 2


def test_the_shipped_base_model_loads_and_forecasts_an_unseen_app():
    from tests.conftest import REPO

    shipped = load_base(REPO / "models")
    assert shipped is not None, "models/base/ is shipped in the repo: run `pycemaker pretrain`"
    card = shipped.card
    assert card.training["base"] and card.input_minutes == Settings().input_minutes
    profile = sample_profile(max(HELD_OUT_SEEDS))
    app = app_frame(profile, 0.3, Settings(), run_seed=5)
    forecaster = OnnxForecaster(REPO / "models" / "base", card.version, app.settings)
    health = forecaster.forecast(app.frame, app.frame.index[-1]).median("health")
    assert len(health) == card.horizon_minutes and np.isfinite(health).all()
    window = forecaster.predict_scaled(np.zeros((1, card.input_minutes, len(card.features)), np.float32))
    with torch.no_grad():
        expected = shipped.network()(torch.zeros(1, card.input_minutes, len(card.features))).numpy()
    np.testing.assert_allclose(window, expected, atol=1e-4)
