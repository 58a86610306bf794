"""Split-conformal calibration of the health quantiles: the offsets, their use, and the card."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from forecasting import calibration, registry
from forecasting.forecaster import OnnxForecaster
from telemetry.settings import Settings
from forecasting.contract import FEATURES, HEALTH

Q = (0.1, 0.5, 0.9)
V1 = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "v1"


def biased_forecasts(n: int, leads: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Observations ~ N(0.5, 0.05); a forecast whose median is 0.04 low and whose band is half as wide as it should be."""
    rng = np.random.default_rng(seed)
    actual = rng.normal(0.5, 0.05, (n, leads))
    z = 1.2816  # the standard normal's 90th percentile
    forecast = np.stack([np.full((n, leads), 0.46 - 0.5 * z * 0.05), np.full((n, leads), 0.46),
                         np.full((n, leads), 0.46 + 0.5 * z * 0.05)], axis=-1)
    return forecast, actual


def test_offsets_make_each_band_quantile_hold_its_level_on_new_data():
    forecast, actual = biased_forecasts(2000, 4, seed=1)
    offsets = calibration.conformal_offsets(forecast, actual, Q)
    assert offsets.shape == (4, 3)
    assert (offsets[:, 1] == 0).all()  # the median is left as trained
    fresh_forecast, fresh_actual = biased_forecasts(20000, 4, seed=2)
    before = (fresh_actual[..., None] <= fresh_forecast).mean(axis=(0, 1))
    after = (fresh_actual[..., None] <= calibration.apply(fresh_forecast, offsets)).mean(axis=(0, 1))
    assert abs(before[0] - 0.1) > 0.02 and before[2] < 0.6  # uncalibrated: off 0.1 and far from 0.9
    np.testing.assert_allclose(after[[0, 2]], [0.1, 0.9], atol=0.02)
    inside = lambda f: ((fresh_actual >= f[..., 0]) & (fresh_actual <= f[..., 2])).mean()  # noqa: E731
    assert inside(fresh_forecast) < 0.6 and inside(calibration.apply(fresh_forecast, offsets)) == pytest.approx(0.8, abs=0.02)


def test_the_offset_is_the_finite_sample_conformal_rank():
    """n = 39 residuals 1..39 at one lead: the ceil((n + 1) q)-th smallest, i.e. 4 and 36 (the median: none)."""
    actual = np.arange(1, 40, dtype=float)[:, None]
    forecast = np.zeros((39, 1, 3))
    np.testing.assert_array_equal(calibration.conformal_offsets(forecast, actual, Q), [[4.0, 0.0, 36.0]])


def test_leads_with_too_few_observations_are_left_alone():
    forecast, actual = biased_forecasts(calibration.MIN_WINDOWS + 5, 2, seed=3)
    actual[10:, 1] = np.nan  # lead 1: only 10 observed
    offsets = calibration.conformal_offsets(forecast, actual, Q)
    assert (offsets[0, [0, 2]] != 0).all() and (offsets[1] == 0).all()


def test_apply_bounds_sorts_and_extends_the_last_lead():
    values = np.array([[[0.05, 0.5, 0.98], [0.2, 0.3, 0.4], [0.2, 0.3, 0.4]]])  # [1, 3 leads, 3]
    offsets = np.array([[-0.1, 0.0, 0.1], [0.3, 0.0, -0.2]])  # two leads: the third reuses the second's
    out = calibration.apply(values, offsets)
    np.testing.assert_allclose(out[0, 0], [0.0, 0.5, 1.0])  # clipped to [0, 1]
    np.testing.assert_allclose(out[0, 1], [0.2, 0.3, 0.5])  # 0.5, 0.3, 0.2 sorted: quantiles never cross
    np.testing.assert_allclose(out[0, 2], out[0, 1])
    assert calibration.apply(values, None) is values


def test_the_card_round_trip_and_an_uncalibrated_card():
    offsets = np.array([[-0.01, 0.002, 0.03]] * 3)
    entry = calibration.to_card(offsets, windows=900)
    assert json.loads(json.dumps(entry))["health"]["validation_windows"] == 900
    np.testing.assert_allclose(calibration.from_card(entry), offsets)
    assert calibration.from_card({}) is None and calibration.from_card(None) is None


def test_the_forecaster_serves_the_cards_calibration(tmp_path):
    """A card with offsets shifts the served health quantiles by exactly those offsets (where not clipped)."""
    models = tmp_path / "models"
    shutil.copytree(V1, models)
    version = registry.current_version(models)
    settings = Settings(models_dir=models)
    plain = OnnxForecaster(models, version, settings)
    window = np.zeros((2, plain.input_minutes, len(FEATURES)), np.float32)
    before = plain.to_original(plain.predict_scaled(window))

    card_path = models / version / registry.CARD
    card = json.loads(card_path.read_text())
    offsets = np.tile([-0.02, 0.01, 0.03], (plain.horizon_minutes, 1))
    card.update(calibration=calibration.to_card(offsets, windows=500))
    card_path.write_text(json.dumps(card))
    calibrated = OnnxForecaster(models, version, settings)
    after = calibrated.to_original(calibrated.predict_scaled(window))

    inside = (before[:, :, HEALTH, :] > 0.05) & (before[:, :, HEALTH, :] < 0.95)
    assert inside.mean() > 0.5
    shift = (after - before)[:, :, HEALTH, :]
    np.testing.assert_allclose(shift[inside], np.broadcast_to(offsets, shift.shape)[inside], atol=1e-6)
    np.testing.assert_array_equal(np.delete(after, HEALTH, axis=2), np.delete(before, HEALTH, axis=2))  # streams untouched
