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

from training.base_network import MIN_SCALE, BaseEnsemble, BaseLSTM, window_scale  # noqa: E402
from training.network import pinball_loss as pinball  # noqa: E402
from training.pretrain import PretrainConfig, app_frame, load_base, pretrain  # noqa: E402

UTC = dt.timezone.utc
SETTINGS = Settings(input_minutes=60, horizon_minutes=30)
TINY_FAMILY = PretrainConfig(apps=3, validation_apps=1, held_out_apps=2, days=0.25, stride=15, min_scale=0.25, members=2)


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
    assert card.training["base"] and card.training["epochs"] == 4 and card.onnx["parity_max_abs_diff"] < 1e-4
    # Two networks, one per seed, each with its own figures.
    assert [m["seed"] for m in card.training["members"]] == [7, 8] and card.training["network"]["members"] == 2
    seen = card.data_range["family"]["seeds"] + card.data_range["family"]["validation_seeds"]
    assert len(seen) == 4 and not any(is_held_out(sample_profile(s)) for s in seen)
    held = card.metrics["held_out_zero_shot"]["apps"]
    assert len(held) == 2 and all(np.isfinite(a["health_mae"]) for a in held)
    run = json.loads(results.read_text())["runs"]["cpu"]
    assert run["version"] == card.version and run["seconds"]["total"] > 0 and run["device"].startswith("cpu")
    assert [len(m["loss"]["history"]) for m in run["members"]] == [2, 2] and np.isfinite(run["loss"]["val_pinball"])


def test_load_base_gives_the_network_the_onnx_file_runs(base):
    model, root, _ = base
    loaded = load_base(root)
    assert loaded is not None and loaded.card.version == model.card.version
    network = loaded.network()
    assert isinstance(network, BaseEnsemble) and len(network.members) == 2
    # The spread floor is the network's hyperparameter, in its card; a card from before it has the old floor.
    assert {m.min_scale for m in network.members} == {loaded.card.training["network"]["min_scale"]} == {TINY_FAMILY.min_scale}
    older = {k: v for k, v in loaded.card.training["network"].items() if k not in ("min_scale", "members")}
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


def test_an_ensemble_forecasts_the_mean_of_its_members_and_trains_each_on_its_own_loss():
    kwargs = dict(n_features=14, n_targets=len(TARGETS), input_minutes=60, horizon_minutes=30, quantiles=(0.1, 0.5, 0.9),
                  hidden_size=8, level_sources=True)
    networks = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        network = BaseLSTM(**kwargs)
        torch.nn.init.normal_(network.head[-1].weight, std=0.1)  # an untrained head is zero: make the members differ
        networks.append(network.eval())
    ensemble = BaseEnsemble.of(networks)
    window = torch.randn(3, 60, 14)
    window[:, :, len(TARGETS) : 2 * len(TARGETS)] = 1.0
    with torch.no_grad():
        one, two, both = networks[0](window), networks[1](window), ensemble(window)
        assert (one - two).abs().max() > 1e-3
        torch.testing.assert_close(both, (one + two) / 2)
        target = torch.randn(3, 30, len(TARGETS))
        losses = [pinball(network(window), target, ensemble.quantiles, ensemble.target_weights) for network in networks]
        assert ensemble._loss((window, target)) == pytest.approx(float(sum(losses) / 2), rel=1e-6)
    with pytest.raises(ValueError, match="share"):
        BaseEnsemble.of([networks[0], BaseLSTM(**{**kwargs, "hidden_size": 4})])


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
    assert main([*args, "--members", "1", "--seed", "3"]) == 0
    first = load_base(tmp_path / "models")
    assert first is not None and first.card.training["pretrain"]["apps"] == 2 and isinstance(first.network(), BaseLSTM)
    assert json.loads(results.read_text())["runs"]["cpu"]["version"] == first.card.version
    assert main([*args, "--members", "1", "--seed", "4"]) == 0
    second = load_base(tmp_path / "models")
    assert second.card.training["members"][0]["seed"] == 4
    # Members pretrained apart (two processes, two machines) combine into one base model: the mean of their forecasts.
    assert main([*args, "--combine", f"{first.card.version},{second.card.version}"]) == 0
    combined = load_base(tmp_path / "models")
    assert combined.card.training["combined"] == [first.card.version, second.card.version]
    assert [m["seed"] for m in combined.card.training["members"]] == [3, 4] and combined.card.training["pretrain"]["members"] == 2
    window = torch.zeros(1, 60, len(combined.card.features))
    with torch.no_grad():
        expected = (first.network()(window) + second.network()(window)) / 2
    forecaster = OnnxForecaster(tmp_path / "models" / "base", combined.card.version, SETTINGS)
    np.testing.assert_allclose(forecaster.predict_scaled(window.numpy()), expected.numpy(), atol=1e-4)
    # Not one recipe (another stride): refused, nothing written.
    assert main([*("30" if a == "20" else a for a in args), "--combine", first.card.version]) == 2
    assert main([*args, "--combine", "20990101T000000Z-base-lstm-000000"]) == 2
    assert load_base(tmp_path / "models").card.version == combined.card.version
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
