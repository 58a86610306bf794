"""The baselines as linear window models (forecasting/linear.py): weights, fitting and bands, on known series."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting import baselines, linear

Q = (0.1, 0.5, 0.9)


def test_seasonal_naive_repeats_the_last_season_and_matches_the_reference():
    L, H, season = 120, 150, 60
    rng = np.random.default_rng(0)
    series = np.sin(np.arange(400) * 2 * np.pi / season)[:, None] + rng.normal(0, 0.1, (400, 1))
    w = linear.seasonal_naive_weights(L, H, season)
    origins = np.array([150, 200, 250])
    windows = series[origins[:, None] + np.arange(-L, 0)]  # [N, L, 1]
    point = np.einsum("nl,lh->nh", windows[:, :, 0], w)
    reference = baselines.seasonal_naive(series, origins, L, H)[:, :, 0]
    np.testing.assert_allclose(point, reference)
    # Without a season: the last value, at every step.
    np.testing.assert_allclose(np.einsum("nl,lh->nh", windows[:, :, 0], linear.seasonal_naive_weights(L, 5, None)),
                               np.repeat(windows[:, -1, :], 5, axis=1))


def test_damped_ets_follows_a_trend_and_keeps_the_seasonal_profile():
    L, H, season = 120, 60, 60
    t = np.arange(L + H, dtype=float)
    profile = 0.3 * np.sin(2 * np.pi * t / season)
    series = 0.01 * t + profile
    w = linear.damped_ets_weights(L, H, season, alpha=0.5, beta=0.3, phi=0.999)
    forecast = series[:L] @ w
    # A linear trend plus a fixed season is forecast almost exactly; seasonal naive lags by the trend.
    assert np.abs(forecast - series[L:]).max() < 0.05
    naive = series[:L] @ linear.seasonal_naive_weights(L, H, season)
    assert np.abs(naive - series[L:]).mean() > 5 * np.abs(forecast - series[L:]).mean()


def test_the_weights_are_exactly_the_recursion_s_linear_map():
    """Holt's damped trend run directly on one window equals the window times the weights."""
    L, H, alpha, beta, phi = 30, 7, 0.3, 0.1, 0.9
    y = np.random.default_rng(3).normal(size=L)
    level, trend = y[0], 0.0
    for value in y[1:]:
        new = alpha * value + (1 - alpha) * (level + phi * trend)
        trend = beta * (new - level) + (1 - beta) * phi * trend
        level = new
    direct = [level + sum(phi ** k for k in range(1, h + 2)) * trend for h in range(H)]
    np.testing.assert_allclose(y @ linear.damped_ets_weights(L, H, None, alpha, beta, phi), direct, atol=1e-12)


def test_bands_are_conformal_quantiles_of_the_residuals_and_cover_new_data():
    rng = np.random.default_rng(5)
    n, L, H = 3000, 60, 30
    series = rng.normal(0, 1, (n, 1))  # white noise: persistence's error at any lead is the difference of two draws
    features = series.astype(np.float32)
    model = linear.fit_linear(linear.SEASONAL_NAIVE, features, series, 2000, L, H, None, Q)
    origins = np.arange(2000 + L, n - H)
    windows = features[origins[:, None] + np.arange(-L, 0)]
    bands = model.predict_scaled(windows)[:, :, 0, :]
    actual = series[origins[:, None] + np.arange(H), 0]
    coverage = np.mean((actual >= bands[..., 0]) & (actual <= bands[..., 2]))
    assert coverage == pytest.approx(0.8, abs=0.03)
    assert np.all(model.offsets[:, 0, 1] == 0)  # the median is the point forecast


def test_a_short_history_extends_the_measured_leads_and_falls_back_to_one_step_changes():
    rng = np.random.default_rng(2)
    series = np.cumsum(rng.normal(0, 0.1, (200, 1)), axis=0)
    model = linear.fit_linear(linear.SEASONAL_NAIVE, series.astype(np.float32), series, 200, 120, 180, None, Q)
    spread = model.offsets[:, 0, 2] - model.offsets[:, 0, 0]
    assert np.all(spread > 0) and spread[-1] > spread[60]  # wider further ahead, even where nothing was measured
    assert model.params["band_windows"] == 80
    nothing = linear.fit_linear(linear.SEASONAL_NAIVE, series[:120].astype(np.float32), series[:120], 120, 120, 30, None, Q)
    step = np.nanstd(np.diff(series[:120, 0]))
    assert nothing.offsets[0, 0, 2] == pytest.approx(1.2816 * step, rel=1e-3)  # z(0.9) x one-step spread
    assert nothing.offsets[3, 0, 2] == pytest.approx(2 * nothing.offsets[0, 0, 2], rel=1e-6)  # x sqrt(lead)


def test_ets_parameters_are_chosen_per_target():
    rng = np.random.default_rng(4)
    n = 1500
    trend = (0.002 * np.arange(n))[:, None] + rng.normal(0, 0.01, (n, 1))
    noise = rng.normal(0, 1, (n, 1))
    series = np.hstack([trend, noise])
    model = linear.fit_linear(linear.ETS, series.astype(np.float32), series, n, 120, 60, None, Q)
    (a_trend, b_trend, _), (a_noise, _, _) = model.params["alpha_beta_phi"]
    assert b_trend > 0 and a_noise <= 0.05  # the trend is followed; pure noise is averaged
