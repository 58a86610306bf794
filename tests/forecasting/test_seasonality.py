"""The season is found from the data: the period whose seasonal-naive forecast is most accurate (forecasting/seasonality.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np

from evaluation.nab import nab_path
from forecasting.seasonality import detect_season
from telemetry import simulator
from telemetry.frames import minute_frame
from telemetry.importer import read_csv
from telemetry.settings import Settings

UTC = dt.timezone.utc


def test_the_seed_s_load_repeats_every_hour():
    start = dt.datetime(2026, 5, 4, tzinfo=UTC)
    end = start + dt.timedelta(hours=12)
    frame = minute_frame(simulator.simulate(start, end, 3, Settings()).samples, start, end, Settings())
    found = detect_season(frame[["cpu", "memory", "req_success", "response_time", "health"]].to_numpy())
    assert found.minutes == 60 and found.steps(1) == 60


def test_on_real_5_minute_cloud_metrics_the_choice_is_the_most_accurate_period_or_none():
    """The NAB series' daily cycle is weak next to their bursts: the rule keeps whatever forecasts best."""
    for name in ("rds_cpu_utilization_cc0c53.csv", "elb_request_count_8c0756.csv"):
        values, _ = read_csv(nab_path(name), scale=0.01)
        found = detect_season(values.to_numpy()[:, None], cadence_minutes=5)
        assert {"none", "60", "1440"} <= set(found.evidence)  # a week does not fit twice in two weeks
        best = min(found.evidence, key=found.evidence.get)
        if found.minutes is None:
            assert best == "none" or found.evidence[best] >= 0.95 * found.evidence["none"]
        else:
            assert best == str(found.minutes) and found.evidence[best] < 0.95 * found.evidence["none"]
        assert found.steps(5) in (None, 12, 288)


def test_a_daily_cycle_every_5_minutes_is_found():
    rng = np.random.default_rng(1)
    t = np.arange(288 * 10)
    daily = np.sin(2 * np.pi * t / 288)[:, None] + rng.normal(0, 0.1, (len(t), 1))
    found = detect_season(daily, cadence_minutes=5, horizon_steps=12)
    assert found.minutes == 24 * 60 and found.steps(5) == 288


def test_noise_and_a_trend_have_no_season():
    rng = np.random.default_rng(0)
    assert detect_season(rng.normal(size=(3000, 2))).minutes is None
    assert detect_season(np.linspace(0, 1, 3000)[:, None]).minutes is None  # correlates at every lag, peaks at none
    assert detect_season(np.ones((50, 1))).minutes is None  # too short to tell
