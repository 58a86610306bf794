import datetime as dt

import numpy as np
import pandas as pd
import pytest

from telemetry.catalogue import CPU, MEMORY, REQUESTS, RESPONSE_TIME
from telemetry.framing import minute_frame
from telemetry.health import align, grid, is_failure, minute_health, staleness, step_means
from telemetry.settings import Settings

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
S = Settings()


def stream(start_s: float, period_s: float, n: int, **columns) -> pd.DataFrame:
    times = pd.DatetimeIndex([pd.Timestamp(T0) + pd.Timedelta(seconds=start_s + period_s * i) for i in range(n)], name="time")
    return pd.DataFrame({k: np.full(n, v, dtype=float) if np.isscalar(v) else v for k, v in columns.items()}, index=times)


def steady(minutes: int = 2, cpu=0.1, memory=0.1, success=10.0, fail=0.0, rt=0.1, offsets=(0, -1.3, -2.7, -4.1)):
    n = minutes * 12 + 2
    return {
        CPU.collection: stream(offsets[0], 5, n, cpu=cpu),
        MEMORY.collection: stream(offsets[1], 5.5, n, memory=memory),
        REQUESTS.collection: stream(offsets[2], 5.2, n, req_success=success, req_fail=fail),
        RESPONSE_TIME.collection: stream(offsets[3], 5.7, n, response_time=rt),
    }


@pytest.mark.parametrize(
    "cpu, memory, req, rt, expected",
    [
        (0.1, 0.1, 10.0, 0.1, 1.0),
        (0.25, 0.25, 15.0, 0.3, 1.0),  # every value exactly on its first cut: still flag 0
        (0.26, 0.1, 10.0, 0.1, 1 - 1 / 12),
        (0.1, 0.5, 30.0, 0.6, 1 - 3 / 12),  # on the second cuts: flag 1 each
        (0.75, 0.75, 60.0, 1.0, 1 - 8 / 12),  # on the third cuts: flag 2 each
        (0.9, 0.9, 61.0, 1.5, 0.0),
    ],
)
def test_health_at_every_cut_point(cpu, memory, req, rt, expected):
    samples = steady(1, cpu=cpu, memory=memory, success=req, rt=rt)
    table = minute_health(samples, T0 + dt.timedelta(seconds=30), T0 + dt.timedelta(minutes=1), S)
    assert table["health"].iloc[0] == pytest.approx(expected)


def test_request_flag_uses_success_plus_fail():
    samples = steady(1, success=10.0, fail=10.0)  # 20 req/s in total: flag 1
    table = minute_health(samples, T0, T0 + dt.timedelta(minutes=1), S)
    assert table["flag_request_rate"].iloc[1:].dropna().eq(1.0).all()


def test_per_minute_mean_and_missing_minutes_are_null():
    samples = steady(5)
    # No samples from 1:40 to 3:20 in any stream: minute 2 is unknown, never healthy (the
    # 15 s as-of tolerance still covers the start of the gap, so 1:40 leaves minute 2 empty).
    for name, frame in samples.items():
        gap = (frame.index >= T0 + dt.timedelta(minutes=1, seconds=40)) & (frame.index < T0 + dt.timedelta(minutes=3, seconds=20))
        samples[name] = frame[~gap]
    table = minute_health(samples, T0, T0 + dt.timedelta(minutes=5), S)
    assert len(table) == 5 and str(table.index.tz) == "UTC"
    assert np.isnan(table["health"].iloc[2]) and table["coverage"].iloc[2] == 0.0
    assert table["health"].iloc[4] == pytest.approx(1.0) and table["coverage"].iloc[4] == 1.0
    # Minute 3 is partly covered (samples resume at +20 s): known, with partial coverage.
    assert 0 < table["coverage"].iloc[3] < 1 and table["health"].iloc[3] == pytest.approx(1.0)


def test_per_minute_health_is_the_mean_over_the_minute():
    # CPU is high (flag 3) for the first half of the minute only.
    cpu = np.where(np.arange(26) < 6, 0.9, 0.1)
    samples = steady(2)
    samples[CPU.collection] = stream(0, 5, 26, cpu=cpu)
    table = minute_health(samples, T0, T0 + dt.timedelta(minutes=1), S)
    assert table["health"].iloc[0] == pytest.approx(1 - 3 * 6 / 12 / 12)


def test_alignment_of_unsynchronised_streams_uses_the_latest_sample_within_tolerance():
    samples = steady(1)
    samples[CPU.collection] = stream(0, 20, 4, cpu=[0.1, 0.9, 0.1, 0.9])  # a sample every 20 s
    points = grid(T0, T0 + dt.timedelta(minutes=1), 5)
    aligned = align(samples, points, 12, S.stream_set)
    # At 25 s the latest CPU sample is from 20 s (0.9); at 35 s it is 15 s old: beyond tolerance.
    assert aligned.loc[pd.Timestamp(T0) + pd.Timedelta(seconds=25), "cpu"] == 0.9
    assert np.isnan(aligned.loc[pd.Timestamp(T0) + pd.Timedelta(seconds=35), "cpu"])
    # Never a sample from the future: at 15 s the 20 s sample is not used, and the 0 s one is too old.
    assert aligned.loc[pd.Timestamp(T0) + pd.Timedelta(seconds=10), "cpu"] == 0.1
    assert np.isnan(aligned.loc[pd.Timestamp(T0) + pd.Timedelta(seconds=15), "cpu"])


def test_a_missing_stream_makes_health_unknown_not_healthy():
    samples = steady(2)
    samples[RESPONSE_TIME.collection] = samples[RESPONSE_TIME.collection].iloc[0:0]
    table = minute_health(samples, T0, T0 + dt.timedelta(minutes=2), S)
    assert table["health"].isna().all() and (table["coverage"] == 0).all()
    assert table["flag_cpu"].notna().all()  # the other streams still report their flags


def test_thresholds_come_from_settings():
    strict = Settings(cpu_cuts=(0.05, 0.5, 0.75))
    table = minute_health(steady(1), T0 + dt.timedelta(seconds=30), T0 + dt.timedelta(minutes=1), strict)
    assert table["health"].iloc[0] == pytest.approx(1 - 1 / 12)


def test_failure_is_at_or_below_the_threshold_and_unknown_is_not_a_failure():
    assert is_failure([0.3, 0.31, np.nan, 0.0], S).tolist() == [True, False, False, True]


def test_staleness():
    now = T0 + dt.timedelta(minutes=10)
    fresh = {s.collection: now - dt.timedelta(seconds=5) for s in (CPU, MEMORY, REQUESTS, RESPONSE_TIME)}
    assert not staleness(fresh, now, S).stale
    silent = dict(fresh, response_time=now - dt.timedelta(minutes=5), cpu_usage=None)
    result = staleness(silent, now, S)
    assert result.stale and result.streams == ("cpu_usage", "response_time")
    assert result.since == now - dt.timedelta(minutes=5)


def test_step_means_add_as_pandas_grouped_mean_does():
    """Compensated sums, NaN skipped, each code's values in their order, codes outside dropped: bit for bit."""
    rng = np.random.default_rng(3)
    codes = rng.integers(-2, 12, 400)  # 10 and 11 lie outside the 10 steps below
    values = rng.lognormal(0, 3, 400) * rng.choice([1.0, -1.0], 400)
    values[::17] = np.nan
    values[5], values[9] = np.inf, -np.inf
    expected = pd.Series(values).groupby(codes).mean().reindex(range(10)).to_numpy()
    np.testing.assert_array_equal(step_means(codes, values, 10), expected)
    cancelling = np.array([1e16, 1.0, 1.0, -1e16])  # a plain sum gives 0.0; pandas' mean 0.5
    only = step_means(np.zeros(4, dtype=np.int64), cancelling, 1)
    assert only[0] == pd.Series(cancelling).groupby(np.zeros(4)).mean().iloc[0] == 0.5
    assert np.isnan(step_means(np.array([0]), np.array([np.nan]), 2)).all()  # no value, or none at all: NaN


def test_minute_frame_means_equal_pandas_group_bys():
    samples = steady(5, cpu=np.linspace(0.1, 0.9, 62), rt=np.geomspace(0.01, 2.0, 62))
    start, end = T0 + dt.timedelta(seconds=20), T0 + dt.timedelta(minutes=4, seconds=40)
    frame = minute_frame(samples, start, end, S)
    for collection, columns in ((CPU.collection, ["cpu"]), (RESPONSE_TIME.collection, ["response_time"])):
        data = samples[collection]
        expected = data[columns].groupby(data.index.floor("1min")).mean().reindex(frame.index)
        np.testing.assert_array_equal(frame[columns].to_numpy(), expected.to_numpy())
    health = minute_health(samples, start, end, S)
    pd.testing.assert_frame_equal(frame[list(health.columns)], health, check_exact=True)
    assert list(frame.index) == list(pd.date_range(T0, periods=5, freq="1min", name="time"))
