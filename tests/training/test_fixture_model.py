"""Registry format 1 stays readable: the committed fixture model loads and forecasts without torch."""

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting import registry
from telemetry import simulator
from forecasting.forecaster import OnnxForecaster, load_current
from telemetry.frames import minute_frame
from telemetry.settings import Settings
from forecasting.contract import FEATURES, TARGETS

UTC = dt.timezone.utc
V1 = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "v1"


@pytest.fixture(scope="module")
def recent_frame():
    start = dt.datetime(2026, 6, 1, tzinfo=UTC)
    end = start + dt.timedelta(hours=3)
    sim = simulator.simulate(start, end, seed=9, settings=Settings())
    return minute_frame(sim.samples, start, end, Settings())


def test_v1_registry_has_one_promoted_version_and_a_current_pointer():
    cards = registry.list_versions(V1)
    assert [c.version for c in cards] == [registry.current_version(V1)]
    card = cards[0]
    assert card.format_version == 1 and card.status == registry.STATUS_PROMOTED
    assert card.features == list(FEATURES) and card.targets == list(TARGETS)
    assert (card.input_minutes, card.horizon_minutes, card.quantiles) == (120, 180, [0.1, 0.5, 0.9])
    assert card.onnx["input"] == "window" and card.onnx["output"] == "quantiles" and card.onnx["opset"] >= 17
    assert registry.model_path(V1, card.version).stat().st_size < 200_000


def test_v1_model_forecasts_through_onnxruntime(recent_frame, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(V1, models)  # never write into the fixture
    forecaster = load_current(Settings(models_dir=models))
    assert isinstance(forecaster, OnnxForecaster)
    origin = recent_frame.index[-1] + pd.Timedelta(minutes=1)
    forecast = forecaster.forecast(recent_frame, origin)
    assert forecast.values.shape == (180, len(TARGETS), 3)
    assert forecast.times[0] == origin and len(forecast.times) == 180
    assert np.isfinite(forecast.values).all()
    assert (np.diff(forecast.values, axis=-1) >= 0).all()  # bands never cross
    health = forecast.target("health")
    assert ((health >= 0) & (health <= 1)).all()
    # A plausible forecast: the median health tracks the hourly load, not a constant.
    assert 0.2 < forecast.median("health").mean() < 0.9 and forecast.median("health").std() > 0.02
    # Batched and single-window inference agree (the batch axis is dynamic).
    x = np.repeat(np.zeros((1, 120, len(FEATURES)), np.float32), 3, axis=0)
    out = forecaster.predict_scaled(x)
    assert out.shape == (3, 180, len(TARGETS), 3)
    np.testing.assert_allclose(out[0], forecaster.predict_scaled(x[:1])[0], atol=1e-5)


def test_v1_forecast_rolls_forward_beyond_its_horizon(recent_frame, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(V1, models)
    forecaster = load_current(Settings(models_dir=models))
    origin = recent_frame.index[-1] + pd.Timedelta(minutes=1)
    forecast = forecaster.forecast(recent_frame, origin, steps=300)
    assert forecast.values.shape == (300, len(TARGETS), 3)
    assert np.isfinite(forecast.values).all()
