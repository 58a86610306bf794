"""Seasonal naive and persistence: the references every model is judged against (torch-free)."""

import numpy as np
import pytest

from forecasting import baselines


def ramp(n_minutes: int, channels: int = 2) -> np.ndarray:
    """Value = minute index (channel 0) and 1000 + minute index (channel 1): easy to trace."""
    t = np.arange(n_minutes, dtype=float)
    return np.stack([t + 1000 * c for c in range(channels)], axis=1)


def test_seasonal_naive_repeats_the_last_hour_of_input():
    values = ramp(400)
    origins = np.array([120, 200])
    out = baselines.seasonal_naive(values, origins, input_minutes=120, horizon_minutes=180)
    assert out.shape == (2, 180, 2)
    # Minute o + h is forecast by minute o - 60 + (h mod 60): the same minute of the hour.
    for i, o in enumerate(origins):
        for h in (0, 1, 59, 60, 61, 119, 179):
            assert out[i, h, 0] == o - 60 + h % 60
            assert out[i, h, 1] == 1000 + o - 60 + h % 60
    # It never reads the horizon: every source minute is before the origin.
    assert (out[:, :, 0] < origins[:, None]).all()


def test_seasonal_naive_falls_back_an_hour_then_to_persistence():
    values = ramp(400)
    values[140, 0] = np.nan  # origin 200, h = 0: minute 140 missing -> minute 80, an hour earlier
    values[141, 0] = np.nan  # h = 1: minutes 141 and 81 both missing
    values[81, 0] = np.nan
    out = baselines.seasonal_naive(values, np.array([200]), input_minutes=120, horizon_minutes=3)
    assert out[0, 0, 0] == 80
    # h = 1: minutes 141 and 81 missing, 21 is before the input -> persistence: the last observed, 199.
    assert out[0, 1, 0] == 199
    assert out[0, 2, 0] == 142


def test_persistence_is_the_last_observed_input_minute():
    values = ramp(300)
    values[195:200, 1] = np.nan
    out = baselines.persistence(values, np.array([200]), input_minutes=120, horizon_minutes=4)
    assert out.shape == (1, 4, 2)
    np.testing.assert_array_equal(out[0, :, 0], [199] * 4)
    np.testing.assert_array_equal(out[0, :, 1], [1194] * 4)


def test_a_channel_missing_for_the_whole_input_has_no_forecast():
    values = ramp(300)
    values[:200, 1] = np.nan
    naive = baselines.seasonal_naive(values, np.array([200]), 120, 10)
    persist = baselines.persistence(values, np.array([200]), 120, 10)
    assert np.isnan(naive[0, :, 1]).all() and np.isnan(persist[0, :, 1]).all()
    assert np.isfinite(naive[0, :, 0]).all()


def test_persistence_does_not_reach_before_the_input_window():
    values = ramp(300)
    values[79:200, 0] = np.nan  # last observed is minute 78, before the input [80, 200)
    assert np.isnan(baselines.persistence(values, np.array([200]), 120, 5)[0, :, 0]).all()


def test_seasonal_naive_needs_one_season_of_input():
    with pytest.raises(ValueError, match="at least one season"):
        baselines.seasonal_naive(ramp(200), np.array([50]), input_minutes=30, horizon_minutes=10)


def test_empty_origins_give_empty_forecasts():
    assert baselines.seasonal_naive(ramp(200), np.array([], dtype=int), 120, 30).shape == (0, 30, 2)
    assert baselines.persistence(ramp(200), np.array([], dtype=int), 120, 30).shape == (0, 30, 2)

