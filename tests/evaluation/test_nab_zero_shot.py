"""The shipped base model zero-shot on a NAB series (5-minute steps): resampled to its minutes, in the NAB table.

A real NAB file imported with ``pycemaker import-csv``'s code into the real server, framed from the store as
``make evaluate`` does (evaluation/pipeline.py, ``run_nab``); the shipped base model (``models/base``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from evaluation import backtest, document, forecasters, report, series as series_mod
from evaluation.nab import NAB_DIR, NAB_FILES
from evaluation.pipeline import NAB_METHODS, NAB_TRAIN_SHARE
from forecasting.contract import HEALTH
from telemetry.catalogue import STREAMS_BY_COLLECTION
from telemetry.importer import import_csv

NAME = "rds_cpu_utilization_cc0c53.csv"


@pytest.fixture
def nab(settings, db):
    spec = NAB_FILES[NAME]
    service = dataclasses.replace(settings, streams=(STREAMS_BY_COLLECTION[spec.stream].name,))
    import_csv(db, NAB_DIR / NAME, spec.stream, service, scale=spec.scale)
    (series,) = series_mod.from_store(db, service)
    series.name = NAME.removesuffix(".csv")
    return series, service


def test_the_nab_backtests_include_the_base_model_zero_shot():
    assert "base_zero_shot" in NAB_METHODS and "base_zero_shot" in forecasters.METHOD_NAMES


def test_the_base_model_forecasts_every_5_minute_step_to_its_180_minute_horizon_without_look_ahead(nab):
    series, service = nab
    assert series.cadence_minutes == 5 and series.channels[0] == "cpu"
    method = forecasters.build_methods(("base_zero_shot",), service)[0]
    assert method.runner.step_minutes == 1 and method.runner.horizon_steps == 180
    origin = int(0.8 * len(series.frame))
    history = series.frame.iloc[:origin]
    out = method.forecast(history, 40, series)  # [H, C, 3]
    cpu = series.channels.index("cpu")
    assert np.isfinite(out[:36, cpu]).all() and np.isnan(out[36:]).all()  # 36 x 5 min = 180 min, then nothing
    assert (out[:36, cpu, 0] <= out[:36, cpu, 1]).all() and (out[:36, cpu, 1] <= out[:36, cpu, 2]).all()
    # Step k is the model's minute 5k from the origin, on the minutes held from the 5-minute samples.
    minutes = history.iloc[-30:].reindex(pd.date_range(history.index[-30], history.index[-1] + pd.Timedelta(minutes=4),
                                                       freq="1min")).ffill(limit=4)
    direct = method.runner.forecast(minutes, history.index[-1] + pd.Timedelta(minutes=5))
    median = method.runner.quantiles.index(0.5)
    np.testing.assert_allclose(out[:36, cpu, 1], direct.values[::5, 0, median][:36], rtol=1e-5)
    if "health" in series.channels:
        np.testing.assert_allclose(out[:36, series.channels.index("health"), 1], direct.values[::5, HEALTH, median][:36], rtol=1e-5)
    # Rows after the origin change nothing.
    poisoned = series.frame.copy()
    poisoned.iloc[origin:] = 0.99
    np.testing.assert_array_equal(method.forecast(poisoned.iloc[:origin], 40, series), out)


def test_the_nab_table_has_the_zero_shot_column(nab):
    series, service = nab
    methods = forecasters.build_methods(("base_zero_shot", "seasonal_naive", "persistence"), service)
    result = backtest.run_backtest(series, methods, origins=4, warmup=int(NAB_TRAIN_SHARE * len(series.frame)),
                                   horizon_minutes=180, progress=False, workers=1)
    mase = {r["method"]: r["mase"] for r in result.metric_rows((60,)) if r["channel"] == "cpu"}
    assert np.isfinite(mase["base_zero_shot"]) and mase["base_zero_shot"] > 0
    text = document._nab([(series.name, result)], {})
    table = text.split("### 60 min ahead")[1].split("###")[0]
    header = next(line for line in table.splitlines() if line.startswith("| series"))
    assert report.label("base_zero_shot") == "base model (zero-shot)" and "base model (zero-shot)" in header
    row = next(line for line in table.splitlines() if series.name in line)
    column = header.split("|").index(" base model (zero-shot) ")
    assert row.split("|")[column].strip().startswith(report.fmt(mase["base_zero_shot"], 2)[:3]), row
    assert "resampled to the minute" in text
