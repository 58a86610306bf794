"""Warnings and time-to-failure scoring (forecasting/warnings.py) on a hand-built scenario whose answers are known."""

import datetime as dt

import dataclasses

import numpy as np
import pandas as pd
import pytest

from forecasting import warnings as ttf
from telemetry.settings import Settings

UTC = dt.timezone.utc
T0 = pd.Timestamp("2026-07-01T00:00Z")
N = 600
TIMES = pd.date_range(T0, periods=N, freq="1min")
#: Every forecast minute counts (no hold): the scenarios below are about the scoring itself.
CONFIG = ttf.TtfConfig(threshold=0.3, lookahead_minutes=30, horizon_minutes=180, hold_minutes=1)


def minute(i: int) -> dt.datetime:
    return (T0 + pd.Timedelta(minutes=i)).to_pydatetime()


def scenario():
    """Healthy at 0.9; an incident (cause at 270, failure 300-320, a crash gap 310-315); a scheduled failure 450-460."""
    health = np.full(N, 0.9)
    health[300:320] = 0.2
    health[310:315] = np.nan  # the crash: no data, but failing
    health[450:460] = 0.25
    incidents = [
        {"type": "memory_leak", "start": minute(270), "failure_time": minute(300), "end": minute(320)},
        {"type": "cpu_saturation", "start": minute(452), "failure_time": minute(455), "end": minute(458)},
        {"type": "collector_outage", "start": minute(100), "failure_time": None, "end": minute(110)},
    ]
    health[100:110] = np.nan  # the outage: unknown, not failing
    return health, incidents


def oracle_paths(health, origins, shift=0, horizon=180):
    """The truth as a forecast (gaps read as failing, as scored), optionally ``shift`` minutes late."""
    truth = np.where(np.isnan(health), 0.2, health)
    truth[100:110] = 0.9
    padded = np.concatenate([np.full(shift, 0.9), truth, np.full(horizon, 0.9)])
    return np.stack([padded[o : o + horizon] for o in origins])


ORIGINS = np.arange(60, N - 30)


def test_failing_minutes_and_episodes():
    health, incidents = scenario()
    failing, known = ttf.failing_minutes(health, TIMES, incidents, 0.3)
    assert failing[310:315].all() and known[310:315].all()  # the crash counts as failing
    assert not failing[100:110].any() and not known[100:110].any()  # the outage is unknown
    assert ttf.episodes(failing, 2) == [(300, 320), (450, 460)]
    assert ttf.episodes(np.array([1, 1, 0, 0, 1, 0, 0, 0, 1], bool), 2) == [(0, 5), (8, 9)]


def test_a_perfect_forecaster():
    health, incidents = scenario()
    result = ttf.score("oracle", TIMES, health, incidents, ORIGINS, oracle_paths(health, ORIGINS), CONFIG)
    leak, cpu, outage = result.incidents
    assert leak.kind == "new failure" and leak.predictable
    # warnings start when the failure is 29 min away (a crossing *within* the next 30 min)
    assert leak.lead_minutes == 29 and leak.warned
    assert leak.crossing_error == {"60": 0.0, "30": 0.0, "10": 0.0}
    assert cpu.kind == "during a failure" and not cpu.predictable
    assert outage.kind == "no failure" and outage.lead_minutes is None
    assert result.episodes["scheduled"]["episodes"] == 0 and result.episodes["incident"]["episodes"] == 2
    assert result.precision == 1.0 and result.recall == 1.0 and result.recall_incidents == 1.0
    assert result.false_alarms == 0
    # healthy: the scored span [60, 569] less failing minutes, the 30 min before onsets and the incidents
    # (from 30 min before their start): [240, 320), [420, 460) and the outage's [70, 110); and the 5 min
    # after each failure: [320, 325), [460, 465)
    assert result.healthy_hours == pytest.approx((510 - 80 - 40 - 40 - 10) / 60)
    assert result.incident_summary()["warned_share_new_failure"] == 1.0


def test_a_late_forecaster_and_a_false_alarm():
    health, incidents = scenario()
    paths = oracle_paths(health, ORIGINS, shift=5)
    false_at = (ORIGINS >= 200) & (ORIGINS < 204)
    paths[false_at, 10] = 0.1  # a spurious dip forecast 10 min ahead, from 4 consecutive minutes
    paths[(ORIGINS >= 80) & (ORIGINS < 82), 20] = 0.1  # a dip forecast into the outage: nobody can tell
    result = ttf.score("late", TIMES, health, incidents, ORIGINS, paths, CONFIG)
    leak = result.incidents[0]
    assert leak.lead_minutes == 24  # 5 min late
    assert leak.crossing_error == {"60": 5.0, "30": 5.0, "10": 5.0}
    assert result.false_alarms == 1  # the spurious dip
    assert result.tail_alarms == 2  # each failure still forecast for 5 min after it ended (at 321 and 461)
    assert result.unverifiable_alarms == 1
    assert result.false_alarms_per_day == pytest.approx(1 / (result.healthy_hours / 24))
    assert result.precision < 1.0 and result.recall < 1.0


def test_an_early_warning_of_a_real_incident_is_not_a_false_alarm():
    """A warning inside an incident (from the lookahead before its start to its end) that no failure follows within
    the lookahead is an incident alarm, counted apart: its minutes are no healthy hours, so it is no false alarm
    either. The same warning outside any incident is one."""
    health, incidents = scenario()
    paths = np.full((len(ORIGINS), 180), 0.9)
    early = (ORIGINS >= 245) & (ORIGINS < 248)  # the leak starts at 270 and fails at 300: 55 min later
    paths[early, 10] = 0.1
    result = ttf.score("early", TIMES, health, incidents, ORIGINS, paths, CONFIG)
    assert result.false_alarms == 0 and result.incident_alarms == 1
    assert result.to_dict()["incident_alarms"] == 1
    paths[early, 10] = 0.9
    paths[(ORIGINS >= 195) & (ORIGINS < 198), 10] = 0.1  # 15 min before the leak's window: healthy minutes
    outside = ttf.score("outside", TIMES, health, incidents, ORIGINS, paths, CONFIG)
    assert outside.false_alarms == 1 and outside.incident_alarms == 0
    assert outside.healthy_hours == result.healthy_hours


def test_a_forecaster_that_never_warns():
    health, incidents = scenario()
    result = ttf.score("flat", TIMES, health, incidents, ORIGINS, np.full((len(ORIGINS), 180), 0.9), CONFIG)
    leak = result.incidents[0]
    assert leak.lead_minutes == 0 and not leak.warned
    assert leak.crossing_error == {"60": float("inf"), "30": float("inf"), "10": float("inf")}
    assert result.recall == 0.0 and result.false_alarms == 0
    assert result.episodes["incident"]["crossing_error"]["30"]["no_crossing_forecast"] == 2


def test_crossings():
    paths = np.array([[0.9, 0.5, 0.3, 0.1], [0.9, 0.9, 0.9, 0.9], [0.2, 0.9, 0.9, 0.9]])
    np.testing.assert_array_equal(ttf.crossings(paths, 0.3), [2.0, np.nan, 0.0])


def test_a_forecast_of_the_previous_failure_is_not_credited_to_the_next():
    """Two failures 20 min apart; a forecaster that only ever sees the first one misses the second."""
    health = np.full(N, 0.9)
    health[300:320] = 0.2
    health[340:350] = 0.2
    knows_first = health.copy()
    knows_first[340:350] = 0.9
    paths = oracle_paths(knows_first, ORIGINS)
    result = ttf.score("first only", TIMES, health, [], ORIGINS, paths, CONFIG)
    errors = result.episodes["scheduled"]["crossing_error"]
    # 30 min before the second onset the forecast shows the first failure (step 0): not this one's onset
    assert errors["30"]["no_crossing_forecast"] == 1 and errors["30"]["scored"] == 2
    assert errors["60"]["mean_abs_error_minutes"] == 0.0  # the first failure, forecast on time


def test_the_warning_rule_comes_from_settings():
    config = ttf.TtfConfig.from_settings(Settings(failure_threshold=0.25, warning_minutes=20, warning_hold_minutes=3))
    assert (config.threshold, config.lookahead_minutes, config.hold_minutes) == (0.25, 20, 3)
    default = ttf.TtfConfig.from_settings(Settings())
    assert (default.lookahead_minutes, default.hold_minutes) == (30, 2) == (ttf.TtfConfig().lookahead_minutes, ttf.TtfConfig().hold_minutes)


def test_held_needs_consecutive_scoring_minutes():
    condition = np.array([1, 1, 0, 1, 1, 1, 1], bool)
    np.testing.assert_array_equal(ttf.held(condition, np.arange(7), 2), [0, 1, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(ttf.held(condition, np.arange(7), 3), [0, 0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(ttf.held(condition, np.arange(7), 1), condition)
    # A stride of 5 minutes: consecutive scoring minutes are 5 apart; a gap breaks the hold.
    np.testing.assert_array_equal(ttf.held(condition, np.array([0, 5, 10, 15, 20, 30, 35]), 2), [0, 1, 0, 0, 1, 0, 1])


def test_a_held_warning_ignores_a_one_minute_blip_and_starts_a_minute_later():
    """The product's rule (hold 2): a dip forecast from one minute only is no warning, from two it is."""
    health, incidents = scenario()
    held_config = dataclasses.replace(CONFIG, hold_minutes=2)
    paths = oracle_paths(health, ORIGINS)
    paths[ORIGINS == 150, 10] = 0.1  # a spurious dip from one minute's forecast
    paths[(ORIGINS >= 200) & (ORIGINS < 202), 10] = 0.1  # and from two consecutive minutes'
    once = ttf.score("every minute", TIMES, health, incidents, ORIGINS, paths, CONFIG)
    held = ttf.score("held", TIMES, health, incidents, ORIGINS, paths, held_config)
    assert once.false_alarms == 2 and held.false_alarms == 1
    assert held.false_alarm_details[0]["start"] == TIMES[201].isoformat() and held.false_alarm_details[0]["minutes"] == 1
    assert once.incidents[0].lead_minutes == 29 and held.incidents[0].lead_minutes == 28
    # The result says where a warning stood (what the report plots).
    assert once.warnings[ORIGINS == 150].all() and not held.warnings[ORIGINS == 150].any()
    assert held.warnings[ORIGINS == 201].all() and not held.warnings[ORIGINS == 200].any()
