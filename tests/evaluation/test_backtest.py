import numpy as np
import pandas as pd
import pytest

from evaluation import backtest, forecasters
from evaluation.forecasters import MID


class Spy:
    """A method that records what it was shown and forecasts the last value it saw."""

    name = "spy"

    def __init__(self):
        self.seen: list[tuple[int, pd.Timestamp]] = []

    def channels(self, series):
        return series.channels

    def forecast(self, history, horizon, series):
        self.seen.append((len(history), history.index[-1]))
        return np.repeat(history[list(series.channels)].to_numpy()[-1][None, :, None], horizon, 0).repeat(3, 2)


def test_rolling_origins_are_evenly_spaced_within_the_data():
    origins = backtest.rolling_origins(1000, warmup=200, horizon=100, count=5)
    assert origins.tolist() == [200, 375, 550, 725, 900]
    assert backtest.rolling_origins(250, warmup=200, horizon=100, count=5).size == 0
    # 3 h apart would put every origin on the hour: the step is nudged to visit every minute of it
    hourly = backtest.rolling_origins(10080, warmup=1440, horizon=180, count=48, season=60)
    assert len(hourly) == 48 and hourly[-1] <= 10080 - 180
    assert len(set(hourly % 60)) > 40


def test_a_method_never_sees_past_its_origin(two_days):
    spy = Spy()
    result = backtest.run_backtest(two_days, [spy], origins=20, horizon_minutes=60, warmup=300, progress=False)
    assert len(spy.seen) == len(result.origins) >= 20
    for (rows, last), origin in zip(spy.seen, result.origins):
        assert rows == origin
        assert last < two_days.frame.index[origin]
    # The spy forecasts the last value it saw: a method shown the future would score perfectly here.
    o = result.origins[3]
    assert result.actuals[3, 0].tolist() == two_days.values()[o].tolist()
    h = two_days.channels.index("health")
    assert result.forecasts[0, 3, 5, h, MID] == pytest.approx(two_days.frame["health"].iloc[o - 1])


@pytest.mark.parametrize("name", ["persistence", "seasonal_naive", "lstm"])
def test_batched_forecasts_ignore_rows_after_the_origin(two_days, fixture_settings, name):
    """The batched path (time-to-failure scoring) is handed the whole frame: corrupting the future changes nothing."""
    method = forecasters.build_methods((name,), fixture_settings)[0]
    origins = np.array([1500, 1800, 2100])
    clean = method.forecast_batch(two_days.frame, origins, 180, two_days)
    for o, expected in zip(origins, clean):
        corrupted = two_days.frame.copy()
        corrupted.iloc[o:] = 99.0
        got = method.forecast_batch(corrupted, np.array([o]), 180, two_days)[0]
        np.testing.assert_allclose(got[..., MID], expected[..., MID])
        # and the batched forecast is the one the backtest gets from the truncated history
        single = method.forecast(two_days.frame.iloc[:o], 180, two_days)
        np.testing.assert_allclose(single[..., MID], expected[..., MID], rtol=1e-5, atol=1e-6)


def test_seasonal_naive_beats_persistence_on_the_hourly_load(two_days, fixture_settings):
    methods = forecasters.build_methods(("persistence", "seasonal_naive", "lstm"), fixture_settings)
    result = backtest.run_backtest(two_days, methods, origins=20, horizon_minutes=180, progress=False)
    assert len(result.origins) >= 20 and result.methods == ["persistence", "seasonal_naive", "lstm"]
    rows = result.metric_rows((15, 60, 180))
    for horizon in (60, 180):
        for metric in ("mae", "rmse", "mase"):
            ratio = backtest.relative(rows, "seasonal_naive", "persistence", "health", horizon, metric)
            assert ratio < 0.5, (horizon, metric)
    # every method is scored on the same points
    points = {r["method"]: r["points"] for r in rows if r["channel"] == "health" and r["horizon_minutes"] == 60}
    assert len(set(points.values())) == 1
    # the fixture model's bands are real quantiles: coverage is a share, not a constant
    cov = [r["coverage"] for r in rows if r["method"] == "lstm" and r["channel"] == "health"]
    assert all(0.3 < c <= 1.0 for c in cov)


def test_error_by_step_grows_for_persistence(two_days, fixture_settings):
    methods = forecasters.build_methods(("persistence",), fixture_settings)
    result = backtest.run_backtest(two_days, methods, origins=20, horizon_minutes=60, progress=False)
    err = result.error_by_step("persistence", "health")
    assert err.shape == (60,)
    assert err[:5].mean() < err[-5:].mean()


def test_refitting_methods_run_in_worker_processes_with_the_same_result(two_days, fixture_settings):
    # the simple-differencing SARIMAX path: the same code path as the exact one, a tenth of the cost
    methods = [forecasters.NaiveMethod("seasonal_naive"), forecasters.SarimaxMethod(exact_max_season=0)]
    here = backtest.run_backtest(two_days, methods, origins=4, horizon_minutes=60, progress=False)
    pooled = backtest.run_backtest(two_days, methods, origins=4, horizon_minutes=60, progress=False, workers=2)
    np.testing.assert_allclose(pooled.forecasts, here.forecasts, equal_nan=True)
    h = two_days.channels.index("health")
    assert np.isfinite(pooled.method_forecast("sarimax")[:, :, h, MID]).all()
