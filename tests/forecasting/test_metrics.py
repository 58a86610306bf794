import numpy as np
import pytest

from forecasting import metrics

NAN = np.nan


def test_mae_and_rmse_by_hand():
    forecast = np.array([1.0, 2.0, 3.0, 4.0])
    actual = np.array([2.0, 2.0, 1.0, 8.0])  # errors -1, 0, 2, -4
    assert metrics.mae(forecast, actual) == pytest.approx(7 / 4)
    assert metrics.rmse(forecast, actual) == pytest.approx(np.sqrt((1 + 0 + 4 + 16) / 4))


def test_missing_points_are_left_out_never_scored_as_zero():
    forecast = np.array([1.0, NAN, 3.0, 4.0])
    actual = np.array([2.0, 5.0, NAN, 8.0])  # only points 0 and 3 are scored: errors 1 and 4
    assert metrics.mae(forecast, actual) == pytest.approx(2.5)
    assert metrics.rmse(forecast, actual) == pytest.approx(np.sqrt(17 / 2))
    assert np.isnan(metrics.mae(np.array([NAN]), np.array([1.0])))


def test_seasonal_scale_is_the_mean_absolute_seasonal_difference():
    y = np.array([1.0, 5.0, 2.0, 7.0, 2.0, 4.0])  # season 2: |2-1|, |7-5|, |2-2|, |4-7| = 1, 2, 0, 3
    assert metrics.seasonal_scale(y, 2) == pytest.approx(6 / 4)
    y_gap = np.array([1.0, 5.0, NAN, 7.0, 2.0, 4.0])  # pairs with the gap drop out: 2, 3
    assert metrics.seasonal_scale(y_gap, 2) == pytest.approx(2.5)
    assert np.isnan(metrics.seasonal_scale(np.array([1.0, 2.0]), 2))


def test_mase_pools_errors_over_scales():
    forecast = np.array([[1.0, 1.0], [0.0, 0.0]])
    actual = np.array([[2.0, 3.0], [1.0, NAN]])  # |e| = 1, 2 (scale 2); 1 (scale 0.5)
    scale = np.array([[2.0], [0.5]])
    assert metrics.mase(forecast, actual, scale) == pytest.approx((1 + 2 + 1) / (2 + 2 + 0.5))


def test_mase_of_the_in_sample_seasonal_naive_forecast_is_one():
    rng = np.random.default_rng(0)
    y = np.tile([0.2, 0.8, 0.5], 20) + rng.normal(0, 0.05, 60)
    scale = metrics.seasonal_scale(y, 3)
    assert metrics.mase(y[:-3], y[3:], scale) == pytest.approx(1.0)


def test_coverage_counts_the_band_inclusively():
    lower = np.array([0.0, 0.0, 0.0, 0.0, NAN])
    upper = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    actual = np.array([0.0, 0.5, 1.0, 1.5, 0.5])  # 3 of the 4 scorable points inside
    assert metrics.coverage(lower, upper, actual) == pytest.approx(0.75)


def test_pinball_loss_by_hand():
    # q=0.9: under-forecast by 1 costs 0.9, over-forecast by 1 costs 0.1
    assert metrics.pinball(np.array([0.0, 2.0]), np.array([1.0, 1.0]), 0.9) == pytest.approx(0.5)


def test_mae_scores_only_the_common_mask():
    actual = np.array([[1.0, 2.0, np.nan, 4.0]])
    a = np.array([[1.5, 2.0, 9.0, np.nan]])
    b = np.array([[1.0, 3.0, 9.0, 4.0]])
    mask = metrics.common_mask(actual, a, b)
    np.testing.assert_array_equal(mask, [[True, True, False, False]])
    assert metrics.mae(a, actual, mask) == pytest.approx(0.25)
    assert metrics.mae(b, actual, mask) == pytest.approx(0.5)
    assert np.isnan(metrics.mae(a, actual, np.zeros_like(mask)))
