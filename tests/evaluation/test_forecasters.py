import warnings

import numpy as np
import pytest

from evaluation import forecasters
from evaluation.forecasters import HI, LO, MID


def test_simple_differencing_sarimax_matches_the_exact_model():
    """The NAB path (seasonal differencing, integrated back here) equals statsmodels' exact SARIMAX forecast."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    rng = np.random.default_rng(1)
    season, n = 12, 120
    y = np.tile(np.sin(np.arange(season) / season * 2 * np.pi), n // season) + rng.normal(0, 0.1, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simple = SARIMAX(y, order=(1, 0, 1), seasonal_order=(0, 1, 0, season), simple_differencing=True).fit(disp=False)
        mean, sd = forecasters._integrate_seasonal(y, simple, season, 30)
        exact = SARIMAX(y, order=(1, 0, 1), seasonal_order=(0, 1, 0, season)).filter(simple.params).get_forecast(30)
    # equal up to how the two likelihoods treat the first season (a fraction of a percent of the sd)
    np.testing.assert_allclose(mean, exact.predicted_mean, atol=0.01 * sd.min())
    np.testing.assert_allclose(sd, np.sqrt(exact.var_pred_mean), rtol=0.01)
    assert sd[-1] > 1.5 * sd[0]  # beyond a season, the errors of earlier seasons add up


def test_statistical_methods_forecast_health_with_a_band(two_days, fixture_settings):
    history = two_days.frame.iloc[:1600]
    h = two_days.channels.index("health")
    sarimax = forecasters.SarimaxMethod()
    assert sarimax.channels(two_days) == ("health",)
    out = sarimax.forecast(history, 60, two_days)
    assert out.shape == (60, len(two_days.channels), 3)
    assert np.isfinite(out[:, h]).all() and np.isnan(np.delete(out, h, axis=1)).all()
    assert (out[:, h, LO] <= out[:, h, MID]).all() and (out[:, h, MID] <= out[:, h, HI]).all()
    ets = forecasters.AutoEtsMethod().forecast(history, 60, two_days)
    assert np.isfinite(ets[..., MID]).all()
    # the MSTL season keeps the hourly shape: the forecast swings like the load
    assert np.ptp(ets[:, h, MID]) > 0.3


def test_registry_models_need_a_service_frame(two_days, fixture_settings):
    """A frame of a service's streams (any subset, with health) is what registry models read; a bare series is not."""
    lstm = forecasters.build_methods(("lstm",), fixture_settings)[0]
    assert lstm.channels(two_days) == two_days.channels
    one_stream = type(two_days)(name="x", frame=two_days.frame, channels=("cpu", "health"), cadence_minutes=1,
                                season_steps=60, multivariate=False)
    assert lstm.channels(one_stream) == ("cpu", "health")
    bare = type(two_days)(name="x", frame=two_days.frame[["cpu"]], channels=("cpu",), cadence_minutes=5,
                          season_steps=288, multivariate=False, frames=False)
    assert lstm.channels(bare) == ()


def test_unknown_method_is_a_clear_error(fixture_settings):
    with pytest.raises(ValueError, match="unknown method"):
        forecasters.build_methods(("prophet",), fixture_settings)


def test_registry_methods_name_every_kind_of_the_run_the_champion_included(tmp_path):
    """On an empty registry the run's own seasonal naive is promoted first and then defends as the champion:
    it still stands for its kind beside the run's ETS and LSTM."""
    from dataclasses import replace

    from forecasting import registry
    from telemetry.settings import Settings
    from tests.serving.onnx_models import persistence_model

    models = tmp_path / "models"
    persistence_model(models, "v-sn", kind="seasonal_naive")
    persistence_model(models, "v-old-ets", kind="ets", activate=False)  # an older run's: not this run's column
    persistence_model(models, "v-ets", kind="ets", activate=False)
    card = persistence_model(models, "v-lstm", kind="lstm")
    candidates = [{"kind": "seasonal_naive", "version": "v-sn", "champion": True},
                  {"kind": "ets", "version": "v-ets", "champion": False},
                  {"kind": "lstm", "version": "v-lstm", "champion": False}]
    registry.update_card(models, replace(card, selection={"candidates": candidates, "winner": "v-lstm"}))

    methods = forecasters.registry_methods(Settings(models_dir=models))
    assert sorted((m.name, m.version) for m in methods) == [
        ("ets_model", "v-ets"), ("lstm", "v-lstm"), ("seasonal_naive_model", "v-sn")]
