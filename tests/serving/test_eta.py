"""serving/eta.py's memory-exhaustion rule, value by value: the memory floor's trend, its crossing, the combination."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving import eta

NOW = pd.Timestamp("2026-03-01T12:00:00Z")
#: A forecast's minutes: index 0 is the current minute, then one a minute for three hours.
TIMES = pd.date_range(NOW, periods=181, freq="1min")


def test_a_steady_rise_of_the_floor_is_fitted_exactly():
    memory = 0.5 + 0.005 * np.arange(-59, 1)  # 0.005 of the heap a minute, 0.5 now
    trend = eta.memory_trend(memory)
    assert trend is not None
    # The floor of a steady rise is its value FLOOR_MINUTES - 1 = 9 minutes ago: 0.455 now.
    assert trend.slope == pytest.approx(0.005) and trend.floor_now == pytest.approx(0.455)
    assert trend.r2 == pytest.approx(1.0) and trend.slope_se == pytest.approx(0.0, abs=1e-9)
    # (0.95 - 0.455) / 0.005 = 99 minutes
    assert eta.minutes_to_level(trend, 0.95) == pytest.approx(99.0)
    expected, earliest, latest = eta.exhaustion_crossings(TIMES, trend, 0.95, NOW)
    assert expected.at == TIMES[99].to_pydatetime() and expected.seconds == 99 * 60.0
    assert expected.cause == eta.MEMORY_EXHAUSTION
    assert earliest.at == expected.at == latest.at  # a perfect line: no spread


def test_an_accelerating_leak_is_extrapolated_on_its_curve_not_its_chord():
    """A floor rising on a parabola (the simulator's leak curves accelerate): the line through the last half hour
    gives the level far too late; the parabola (its value, slope and curvature now) gives it where the curve is."""
    t = np.arange(-59, 1, dtype=float)
    memory = 0.6 + 0.006 * t + 0.00005 * t * t  # 0.6 now, rising 0.006 a minute now, and faster
    trend = eta.memory_trend(memory, floor_minutes=1)
    assert trend is not None
    assert trend.curvature == pytest.approx(0.00005) and trend.slope == pytest.approx(0.006)
    assert trend.floor_now == pytest.approx(0.6)
    truth = (-0.006 + np.sqrt(0.006**2 + 4 * 0.00005 * 0.35)) / (2 * 0.00005)  # 0.6 + 0.006 t + 5e-5 t^2 = 0.95
    assert eta.minutes_to_level(trend, 0.95) == pytest.approx(truth)
    assert truth < 0.35 / 0.006 - 15  # the slope now alone would be more than a quarter of an hour late
    expected, earliest, latest = eta.exhaustion_crossings(TIMES, trend, 0.95, NOW)
    assert expected.seconds / 60 == np.ceil(truth) and earliest.at == expected.at == latest.at  # exact: no spread


@pytest.mark.parametrize("shape", ["line", "slowing"])
def test_a_steady_or_slowing_rise_keeps_the_straight_line(shape):
    """Curvature counts only when the rise accelerates significantly: noise about a line, or a rise levelling off
    (negative curvature), keep the line (a parabola bending down would never reach the level)."""
    t = np.arange(-59, 1, dtype=float)
    rng = np.random.default_rng(3)
    memory = (0.6 + 0.006 * t + rng.normal(0, 0.004, len(t)) if shape == "line"
              else 0.6 + 0.006 * t - 0.00005 * t * t)
    trend = eta.memory_trend(memory, floor_minutes=1)
    assert trend is not None and trend.curvature == 0.0
    x = t[-eta.TREND_MINUTES:]
    assert trend.slope == pytest.approx(np.polyfit(x, memory[-eta.TREND_MINUTES:], 1)[0])


def test_minutes_to_level_solves_the_parabola_and_is_none_only_for_a_line_that_does_not_rise():
    curved = eta.MemoryTrend(floor_now=0.5, slope=-0.001, slope_se=0.0, r2=0.9, curvature=0.0001)
    # 0.5 - 0.001 t + 0.0001 t^2 = 0.95: t = (0.001 + sqrt(1e-6 + 1.8e-4)) / 2e-4
    assert eta.minutes_to_level(curved, 0.95) == pytest.approx((0.001 + np.sqrt(1e-6 + 1.8e-4)) / 2e-4)
    assert eta.minutes_to_level(curved, 0.4) == 0.0
    assert eta.minutes_to_level(eta.MemoryTrend(0.5, -0.001, 0.0, 0.9), 0.95) is None
    tiny = eta.MemoryTrend(0.5, 0.005, 0.0, 0.9, curvature=1e-18)  # no cancellation: the line's 90 minutes
    assert eta.minutes_to_level(tiny, 0.95) == pytest.approx(90.0)


def test_a_gc_sawtooth_on_a_flat_heap_is_no_trend():
    """A slow sawtooth (8 minutes up 0.3, then collected) rises fast inside each cycle; its floor does not."""
    minutes = np.arange(120)
    memory = 0.35 + 0.3 * (minutes % 8) / 8
    assert eta.memory_trend(memory) is None
    # Its raw values would pass the test of a line on the last 6 minutes, not its floor.
    assert eta.memory_floor(memory)[-1] == pytest.approx(0.35)


def test_a_leak_under_a_sawtooth_is_read_from_its_floor():
    minutes = np.arange(-59, 1)
    memory = 0.6 + 0.006 * minutes + 0.25 * ((minutes + 59) % 6) / 6  # floor 0.6 now, +0.006/min
    trend = eta.memory_trend(memory)
    assert trend is not None
    # The floor is the troughs': the slope is the leak's, the floor now at most the floor window behind.
    assert 0.0055 <= trend.slope <= 0.0065
    assert 0.6 - 0.006 * 9 - 0.01 <= trend.floor_now <= 0.6
    expected, earliest, latest = eta.exhaustion_crossings(TIMES, trend, 0.95, NOW)
    truth = (0.95 - 0.6) / 0.006  # the troughs reach the level in 58.3 min; the floor says within 10 min after
    assert truth <= expected.seconds / 60 <= truth + 10
    assert earliest.at <= expected.at <= latest.at


@pytest.mark.parametrize("rise, r2_ok", [(0.05, True), (0.2, False)])
def test_a_small_or_noisy_rise_is_not_a_trend(rise, r2_ok):
    rng = np.random.default_rng(0)
    memory = 0.4 + rise * np.linspace(0, 1, 60) + (0.0 if r2_ok else rng.normal(0, 0.2, 60))
    assert eta.memory_trend(memory) is None


def test_too_little_memory_or_missing_minutes_give_no_trend():
    assert eta.memory_trend(np.linspace(0.5, 0.9, 10)) is None
    memory = 0.5 + 0.003 * np.arange(2.0 * eta.TREND_MINUTES)
    assert eta.memory_trend(memory) is not None
    # The floor window covers some of the missing minutes, but the trend window keeps under two thirds of its values.
    memory[-(eta.TREND_MINUTES // 3 + eta.FLOOR_MINUTES + 1):] = np.nan
    assert eta.memory_trend(memory) is None


def test_a_floor_already_at_the_level_fails_at_the_first_forecast_minute_and_past_the_horizon_is_none():
    high = eta.MemoryTrend(floor_now=0.96, slope=0.001, slope_se=0.0, r2=0.9)
    expected, _, _ = eta.exhaustion_crossings(TIMES, high, 0.95, NOW)
    assert expected.at == TIMES[1].to_pydatetime() and expected.seconds == 60.0
    slow = eta.MemoryTrend(floor_now=0.5, slope=0.001, slope_se=0.0005, r2=0.9)  # 450 min away; +2 se: 225
    assert eta.exhaustion_crossings(TIMES, slow, 0.95, NOW) == (None, None, None)
    spread = eta.MemoryTrend(floor_now=0.5, slope=0.005, slope_se=0.001, r2=0.9)
    expected, earliest, latest = eta.exhaustion_crossings(TIMES, spread, 0.95, NOW)
    # 0.45 / 0.005 = 90; / 0.007 = 64.3 -> minute 65; / 0.003 = 150
    assert [c.seconds / 60 for c in (earliest, expected, latest)] == [65.0, 90.0, 150.0]


def test_the_earliest_of_health_and_memory_wins_bound_by_bound():
    def at(minute, cause=eta.HEALTH_CAUSE):
        return eta.Crossing(TIMES[minute].to_pydatetime(), minute * 60.0, cause)

    health = (at(40), at(30), None)
    memory = (at(35, eta.MEMORY_EXHAUSTION), at(32, eta.MEMORY_EXHAUSTION), at(50, eta.MEMORY_EXHAUSTION))
    expected, earliest, latest = eta.combine(health, memory)
    assert (expected.seconds, expected.cause) == (35 * 60.0, eta.MEMORY_EXHAUSTION)
    assert (earliest.seconds, earliest.cause) == (30 * 60.0, eta.HEALTH_CAUSE)
    assert (latest.seconds, latest.cause) == (50 * 60.0, eta.MEMORY_EXHAUSTION)
    assert eta.combine((None, None, None), (None, None, None)) == (None, None, None)


def test_the_model_s_memory_bands_read_the_high_quantile_as_the_pessimistic_one():
    rising = np.linspace(0.5, 1.0, 181)  # 0.95 at index 162.9 -> 163
    bands = np.stack([rising - 0.1, rising, np.minimum(rising + 0.1, 1.0)], axis=1)
    expected, earliest, latest = eta.band_exhaustion_crossings(TIMES, bands, 0.95, NOW)
    assert expected.seconds / 60 == float(np.flatnonzero(rising >= 0.95)[0])
    assert earliest.seconds / 60 == float(np.flatnonzero(rising + 0.1 >= 0.95)[0]) and latest is None
    assert earliest.at < expected.at
