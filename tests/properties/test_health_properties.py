"""Properties of health scoring and alignment (telemetry/health.py, docs/health.md), for any samples."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import numpy as np
import pandas as pd
from hypothesis import assume, given, settings, strategies as st

from telemetry import store
from telemetry.catalogue import FLAG_NAMES, STREAMS, STREAMS_BY_COLLECTION, flag_of
from telemetry.health import align, flags, grid, health_from_flags, minute_health, staleness
from telemetry.settings import Settings
from tests.properties.strategies import HEALTHY, PROPERTY, SPAN_S, T0, stream_samples

S = Settings()
END = T0 + dt.timedelta(seconds=SPAN_S)
POINTS = grid(T0, END, S.grid_seconds)


def point_health(samples) -> pd.Series:
    """Health at every 5-second grid point (NaN where some input is missing)."""
    return health_from_flags(flags(align(samples, POINTS, S.alignment_tolerance_s, S.stream_set), S))


@PROPERTY
@given(samples=stream_samples())
def test_health_is_within_0_and_1_or_unknown_and_unknown_means_no_coverage(samples):
    table = minute_health(samples, T0, END, S)
    assert len(table) == SPAN_S / 60 and table.index.tz is not None
    health, coverage = table["health"].to_numpy(), table["coverage"].to_numpy()
    known = ~np.isnan(health)
    assert ((health[known] >= 0) & (health[known] <= 1)).all()
    assert ((coverage >= 0) & (coverage <= 1)).all()
    np.testing.assert_array_equal(known, coverage > 0)  # null exactly where nothing was scored, never 1.0 by default
    for name in FLAG_NAMES:
        f = table[f"flag_{name}"].to_numpy()
        assert ((f[~np.isnan(f)] >= 0) & (f[~np.isnan(f)] <= 3)).all()
    # Each scored point is 1 - k/12: a minute's mean over n of its 12 points is a multiple of 1/(12 n).
    n = np.round(coverage[known] * 12)
    np.testing.assert_allclose(np.round(health[known] * 12 * n) / (12 * n), health[known], atol=1e-9)


@settings(PROPERTY, max_examples=30)  # a brute-force reference: 120 points x 5 columns per example
@given(samples=stream_samples())
def test_alignment_takes_the_latest_sample_at_or_before_each_point_within_the_tolerance(samples):
    """Against a brute-force as-of join: never a sample from the future, never one older than the tolerance."""
    aligned = align(samples, POINTS, S.alignment_tolerance_s, S.stream_set)
    tolerance = pd.Timedelta(seconds=S.alignment_tolerance_s)
    for collection, frame in samples.items():
        for column in STREAMS_BY_COLLECTION[collection].columns:
            for point, got in zip(POINTS, aligned[column].to_numpy()):
                past = frame[(frame.index <= point) & (frame.index >= point - tolerance)]
                want = past[column].iloc[-1] if len(past) else np.nan
                assert (np.isnan(got) and np.isnan(want)) or got == want, (collection, point)


@PROPERTY
@given(samples=stream_samples(), data=st.data())
def test_adding_a_healthy_sample_never_lowers_a_scored_point_nor_a_minute_whose_coverage_is_unchanged(samples, data):
    """A flag-0 sample can only replace a worse one. It may also complete a grid point that was unscored;
    that new point may be worse than the minute's mean, so a minute is compared only when its coverage is unchanged."""
    stream = data.draw(st.sampled_from(STREAMS))
    at = pd.Timestamp(T0) + pd.Timedelta(milliseconds=data.draw(st.integers(0, int(SPAN_S * 1000) - 1)))
    frame = samples[stream.collection]
    assume(at not in frame.index)
    sample = pd.DataFrame({c: [HEALTHY[c]] for c in stream.columns}, index=pd.DatetimeIndex([at], name="time"))
    added = {**samples, stream.collection: pd.concat([frame, sample]).sort_index() if len(frame) else sample}

    before, after = point_health(samples), point_health(added)
    scored = before.notna().to_numpy()
    assert after.notna().to_numpy()[scored].all()  # a scored point stays scored
    assert (after.to_numpy()[scored] >= before.to_numpy()[scored] - 1e-12).all()

    old, new = minute_health(samples, T0, END, S), minute_health(added, T0, END, S)
    assert (new["coverage"].to_numpy() >= old["coverage"].to_numpy() - 1e-12).all()
    same = np.isclose(new["coverage"], old["coverage"]) & old["health"].notna().to_numpy()
    assert (new["health"].to_numpy()[same] >= old["health"].to_numpy()[same] - 1e-12).all()


@PROPERTY
@given(samples=stream_samples(), factor=st.floats(1.0, 10.0))
def test_worse_values_never_raise_health(samples, factor):
    """Every flag rises with its value: scaling every value up never raises any minute's health (coverage is unchanged)."""
    worse = {name: frame * factor for name, frame in samples.items()}
    old, new = minute_health(samples, T0, END, S), minute_health(worse, T0, END, S)
    np.testing.assert_array_equal(old["coverage"], new["coverage"])
    known = old["health"].notna().to_numpy()
    assert (new["health"].to_numpy()[known] <= old["health"].to_numpy()[known] + 1e-12).all()


@PROPERTY
@given(samples=stream_samples(), minutes=st.integers(-600, 600))
def test_shifting_every_sample_by_whole_minutes_shifts_minute_health(samples, minutes):
    """Health depends on the samples' spacing, never on the wall clock (the grid starts on whole minutes)."""
    delta = pd.Timedelta(minutes=minutes)
    shifted = {name: frame.set_axis(frame.index + delta) for name, frame in samples.items()}
    old = minute_health(samples, T0, END, S)
    new = minute_health(shifted, T0 + delta.to_pytimedelta(), END + delta.to_pytimedelta(), S)
    pd.testing.assert_frame_equal(old.reset_index(drop=True), new.reset_index(drop=True))


@PROPERTY
@given(samples=stream_samples(max_size=25), seed=st.integers(0, 2**16), copies=st.integers(1, 3))
def test_documents_in_any_order_and_repeated_read_as_the_sorted_unique_samples(samples, seed, copies):
    """What the store does with out-of-order and duplicated documents (a database without the unique index)."""
    rng = random.Random(seed)
    for collection, frame in samples.items():
        stream = STREAMS_BY_COLLECTION[collection]
        docs = [{"time_series": t.to_pydatetime(), **{f: row[c] for f, c in stream.fields.items()}} for t, row in frame.iterrows()]
        messy = docs * copies
        rng.shuffle(messy)
        read = store.samples_frame(stream, messy)
        pd.testing.assert_frame_equal(read, frame, check_freq=False, check_names=False, check_index_type=False)


@PROPERTY
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=50),
       cuts=st.lists(st.floats(-100, 100), min_size=3, max_size=3, unique=True).map(sorted))
def test_flags_count_the_cut_points_below_the_value(values, cuts):
    got = flag_of(np.asarray(values), cuts)
    for v, f in zip(values, got):
        if np.isnan(v):
            assert np.isnan(f)
        else:
            assert f == sum(c < v for c in cuts)  # the `<=` rule: a value on a cut keeps the lower flag
    finite = sorted(v for v in values if not np.isnan(v))
    assert (np.diff(flag_of(np.asarray(finite), cuts)) >= 0).all()  # monotone


@PROPERTY
@given(ages=st.lists(st.one_of(st.none(), st.floats(0, 1000)), min_size=4, max_size=4), limit=st.floats(1, 500))
def test_a_stream_silent_beyond_the_limit_or_never_heard_makes_health_stale(ages, limit):
    now = T0
    latest = {s.collection: (None if a is None else now - dt.timedelta(seconds=a)) for s, a in zip(STREAMS, ages)}
    result = staleness(latest, now, dataclasses.replace(S, staleness_limit_s=limit))
    silent = sorted(s.collection for s, a in zip(STREAMS, ages) if a is None or a > limit)
    assert result.stale == bool(silent) and list(result.streams) == silent
    heard = [latest[name] for name in silent if latest[name] is not None]
    assert result.since == (min(heard) if heard else None)

