"""What the calibration and the warning hold change: the same model with and without each, same origins, same minutes."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from evaluation import backtest, forecasters, pipeline, ttf
from forecasting import calibration, registry
from tests.evaluation.conftest import FIXTURE_MODELS


@pytest.fixture(scope="module")
def calibrated_settings(fixture_settings, tmp_path_factory):
    """The fixture model with a calibration in its card: the P50 moved down by 0.05 (more warnings), the band widened."""
    models = tmp_path_factory.mktemp("ablation") / "models"
    shutil.copytree(FIXTURE_MODELS, models)
    version = registry.current_version(models)
    path = models / version / registry.CARD
    card = json.loads(path.read_text())
    card["calibration"] = calibration.to_card(np.tile([-0.1, -0.05, 0.1], (card["horizon_minutes"], 1)), windows=100)
    path.write_text(json.dumps(card))
    return dataclasses.replace(fixture_settings, models_dir=models), version


def test_the_ablation_scores_both_variants_at_the_same_origins(two_days, calibrated_settings):
    settings, version = calibrated_settings
    methods = forecasters.build_methods(("seasonal_naive", "lstm"), settings, version)
    held = backtest.run_backtest(two_days, methods, origins=8, horizon_minutes=180, progress=False)
    warmup = backtest.default_warmup(two_days, methods)
    lstm_ttf = ttf.score_method(methods[1], two_days, ttf.TtfConfig.from_settings(settings), start_row=warmup)

    rows = pipeline.run_ablation(held, [lstm_ttf], settings, version)
    assert [(r["method"], r["hold_minutes"]) for r in rows] == [
        ("lstm", 1), ("lstm", 2), ("lstm", 3), ("lstm_uncalibrated", 1), ("lstm_uncalibrated", 2), ("lstm_uncalibrated", 3)
    ]
    by = {(r["method"], r["hold_minutes"]): r for r in rows}
    # The product's rule (hold 2, calibrated) is the main time-to-failure result, recomputed the same way.
    assert by[("lstm", 2)]["false_alarms"] == lstm_ttf.false_alarms
    assert by[("lstm", 2)]["precision"] == pytest.approx(lstm_ttf.precision, nan_ok=True)
    # The main backtest's figure for the calibrated LSTM, on the same origins.
    main = next(r for r in held.metric_rows((60,)) if r["method"] == "lstm" and r["channel"] == "health")
    assert by[("lstm", 1)]["rmse_60"] == pytest.approx(main["rmse"], rel=1e-6)
    # A wider band covers more; the shifted median scores differently.
    assert by[("lstm", 1)]["coverage_60"] > by[("lstm_uncalibrated", 1)]["coverage_60"]
    assert by[("lstm", 1)]["rmse_60"] != pytest.approx(by[("lstm_uncalibrated", 1)]["rmse_60"])
    # Holding a warning longer never adds a warning: false alarms and recall can only fall.
    for name in ("lstm", "lstm_uncalibrated"):
        assert by[(name, 1)]["false_alarms"] >= by[(name, 2)]["false_alarms"] >= by[(name, 3)]["false_alarms"]
        assert by[(name, 1)]["recall"] >= by[(name, 2)]["recall"] >= by[(name, 3)]["recall"]


def test_no_ablation_for_an_uncalibrated_model(two_days, fixture_settings):
    methods = forecasters.build_methods(("lstm",), fixture_settings)
    held = backtest.run_backtest(two_days, methods, origins=3, horizon_minutes=180, progress=False)
    lstm_ttf = ttf.score_method(methods[0], two_days, start_row=backtest.default_warmup(two_days, methods))
    assert pipeline.run_ablation(held, [lstm_ttf], fixture_settings, None) == []
