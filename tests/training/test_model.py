"""A tiny fit on a simulated day: beats seasonal naive, exports to ONNX with parity, and its card says so."""

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from forecasting import registry  # noqa: E402
from forecasting.forecaster import OnnxForecaster  # noqa: E402
from telemetry.settings import Settings  # noqa: E402
from forecasting.contract import FEATURES, TARGETS  # noqa: E402
from forecasting.windows import Scaling, target_values  # noqa: E402
from tests.training.conftest import TINY, tiny_fit_config  # noqa: E402
from training import scoring  # noqa: E402
from training.candidates import build_lstm, run_data  # noqa: E402
from training.export import PARITY_TOLERANCE, ExportError, check_onnx, parity  # noqa: E402

SETTINGS = dataclasses.replace(Settings(), **TINY)


@pytest.fixture(scope="module")
def candidate(two_days_frame, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("candidate")
    return build_lstm(run_data(two_days_frame, SETTINGS), SETTINGS, tiny_fit_config(), workdir, progress_bar=False)


def test_tiny_fit_beats_seasonal_naive_on_validation(candidate):
    mae = candidate.card.metrics["health_mae"]
    assert mae["model"] < mae["seasonal_naive"] < mae["persistence"]
    assert mae["model"] == min(mae["direct"], mae["mean"])
    assert candidate.card.health_source == ("direct" if mae["direct"] <= mae["mean"] else "mean")
    assert 0 < mae["model"] < 0.1
    # Training helped: the untrained network (the mean of the input hours) scores worse on the same windows.
    data = candidate.windows
    untrained = type(candidate.fit.model)(**candidate.fit.model.hparams).eval()
    with torch.no_grad():
        scaled = untrained(torch.from_numpy(data.validation.inputs)).numpy()
    before = scoring.validate(scaled, data.values, data.validation.origins, data.scaling, (0.1, 0.5, 0.9), 120, SETTINGS)
    assert mae["model"] < before.metrics["health_mae"]["model"]
    band = candidate.card.metrics["health_band"]
    assert band["nominal_coverage"] == pytest.approx(0.8) and 0.3 < band["coverage"] <= 1.0
    assert candidate.fit.epochs >= 1 and candidate.fit.mean_epoch_seconds > 0


def test_scaling_is_fitted_on_the_training_block_only(candidate, two_days_frame):
    data = candidate.windows
    first, last = data.split.train[0] - 120, data.split.train[-1] + 60
    assert data.scaling == Scaling.fit(target_values(two_days_frame)[first:last])
    assert data.scaling != Scaling.fit(target_values(two_days_frame))
    # validation and test windows lie wholly after the training block
    assert data.validation.origins[0] - 120 >= last and data.test.origins[0] - 120 >= data.validation.origins[-1] + 60


def test_card_describes_the_model(candidate, two_days_frame):
    card = candidate.card
    assert (card.input_minutes, card.horizon_minutes, card.quantiles) == (120, 60, [0.1, 0.5, 0.9])
    assert card.features == list(FEATURES) and card.targets == list(TARGETS)
    assert Scaling.from_dict(card.scaling) == candidate.windows.scaling
    assert card.data_range["start"] == two_days_frame.index[0].isoformat()
    assert card.kind == "lstm" and card.data_range["minutes"] == len(two_days_frame)
    assert card.data_range["test"]["windows"] == len(candidate.windows.test)
    assert card.onnx["opset"] >= 17 and card.onnx["input"] == "window" and card.onnx["output"] == "quantiles"
    assert card.onnx["parity_max_abs_diff"] <= PARITY_TOLERANCE
    training = card.training
    assert training["device"].startswith("cpu") and training["precision"] == "32-true"
    assert training["packages"]["torch"].startswith("2.") and training["git_commit"]
    assert training["config"]["hidden_size"] == 16 and training["seconds"] > 0
    for stream in ("cpu", "memory", "req_success", "req_fail", "response_time"):
        assert set(card.metrics["stream_mae"][stream]) == {"model", "seasonal_naive", "persistence"}


def test_onnx_matches_torch_on_held_back_windows(candidate):
    model, path, held_back = candidate.fit.model, candidate.onnx_path, candidate.windows.test.inputs
    assert parity(model, path, held_back) <= PARITY_TOLERANCE
    assert check_onnx(path, 120, len(FEATURES), 60, len(TARGETS), 3) >= 17


def test_registry_model_forecasts_what_the_validation_scored(candidate, tmp_path):
    """Run through OnnxForecaster (serving's path), the candidate gives the forecasts the gates scored."""
    registry.add_version(tmp_path, candidate.onnx_path, candidate.card)
    forecaster = OnnxForecaster(tmp_path, candidate.card.version, SETTINGS)
    x = candidate.windows.validation.inputs[:16]
    served = forecaster.to_original(forecaster.predict_scaled(x))
    scored = candidate.validation.values[:16]
    scored = scored.copy()
    scored[:, :, TARGETS.index("health"), :] = candidate.validation.health()[:16]
    np.testing.assert_allclose(served, scored, atol=1e-3)


def test_checker_refuses_a_model_that_breaks_the_contract(candidate, tmp_path):
    path = candidate.onnx_path
    with pytest.raises(ExportError, match="shape"):
        check_onnx(path, 120, len(FEATURES), 180, len(TARGETS), 3)  # a card promising H=180
    with pytest.raises(ExportError, match="shape"):
        check_onnx(path, 60, len(FEATURES), 60, len(TARGETS), 3)  # ... or L=60
    broken = tmp_path / "model.onnx"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ExportError, match="checker"):
        check_onnx(broken, 120, len(FEATURES), 60, len(TARGETS), 3)


def test_parity_catches_a_model_that_differs(candidate):
    other = type(candidate.fit.model)(**candidate.fit.model.hparams)
    torch.nn.init.normal_(other.head[-1].weight)  # a different network than the exported one
    assert parity(other, candidate.onnx_path, candidate.windows.test.inputs) > PARITY_TOLERANCE
    assert parity(candidate.fit.model, candidate.onnx_path, candidate.windows.test.inputs[:1]) <= PARITY_TOLERANCE


def test_exported_batch_axis_is_dynamic(candidate):
    import onnxruntime as ort

    session = ort.InferenceSession(str(candidate.onnx_path), providers=["CPUExecutionProvider"])
    for batch in (1, 7, 300):
        x = np.zeros((batch, 120, len(FEATURES)), np.float32)
        assert session.run(None, {"window": x})[0].shape == (batch, 60, len(TARGETS), 3)
    assert parity(candidate.fit.model, candidate.onnx_path, candidate.windows.validation.inputs) <= PARITY_TOLERANCE


def test_the_served_model_is_the_judged_one_calibration_included(candidate, tmp_path):
    """onnxruntime with the card (scaling, health source, calibration) gives the health quantiles the gates judged."""
    card = candidate.card
    offsets = np.asarray(card.calibration["health"]["offsets"])
    assert offsets.shape == (card.horizon_minutes, 3) and np.abs(offsets).max() > 0
    # Calibrated on validation: in-sample the band holds about its nominal 80% (conformal ranks round up).
    assert 0.75 <= card.metrics["health_band"]["coverage"] <= 0.9
    models = tmp_path / "models"
    registry.add_version(models, candidate.onnx_path, card)
    served = OnnxForecaster(models, card.version, SETTINGS)
    health = served.to_original(served.predict_scaled(candidate.windows.test.inputs))[:, :, TARGETS.index("health"), :]
    np.testing.assert_allclose(health, candidate.test.health(), atol=1e-4)


def test_a_fit_keeps_its_starting_weights_when_no_epoch_betters_them(candidate):
    """Fine-tuning that finds nothing to learn (here: a learning rate of 0) hands back the weights it started from, and
    says so (best epoch -1); one that improves keeps its best epoch."""
    from training.fit import fit

    start = {k: v.clone() for k, v in candidate.fit.model.state_dict().items()}
    still = fit(candidate.windows, (0.1, 0.5, 0.9), tiny_fit_config(learning_rate=0.0, weight_decay=0.0, max_epochs=2),
                progress_bar=False, initial_state=start)
    assert still.best_epoch == -1 and still.epochs == 2
    assert all(torch.equal(v, start[k]) for k, v in still.model.state_dict().items())
    assert still.best_val_health_mae == pytest.approx(candidate.fit.best_val_health_mae, rel=1e-4)
    untrained = type(candidate.fit.model)(**candidate.fit.model.hparams).state_dict()
    learned = fit(candidate.windows, (0.1, 0.5, 0.9), tiny_fit_config(max_epochs=2), progress_bar=False,
                  initial_state=untrained)
    assert learned.best_epoch >= 0


def test_a_refit_trains_the_epochs_it_is_given_and_keeps_the_last(candidate):
    """A refit (the served fine-tuning on every window, training/candidates.py) runs the epochs its selected fit kept,
    with nothing to choose among them: the last epoch's weights come back."""
    from training.fit import fit

    start = {k: v.clone() for k, v in candidate.fit.model.state_dict().items()}
    refit = fit(candidate.windows, (0.1, 0.5, 0.9), tiny_fit_config(max_epochs=10), progress_bar=False,
                initial_state=start, epochs=2)
    assert refit.epochs == 2 and refit.best_epoch == 1 and refit.stopped_by == "max_epochs"
    assert any(not torch.equal(v, start[k]) for k, v in refit.model.state_dict().items())
