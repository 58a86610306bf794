"""Properties of model inputs (telemetry/windows.py): scaling, gap filling and masks, leak-free splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, strategies as st

from forecasting.contract import FEATURES, MASKS, TARGETS
from forecasting.windows import LOG_CHANNELS, MAX_FILL_MINUTES, Scaling, feature_matrix, split_origins, window_at
from tests.properties.strategies import PROPERTY, T0

MASK_AT = [FEATURES.index(m) for m in MASKS]
# A channel missing for the whole frame is expected (Scaling.fit falls back to mean 0, std 1); numpy says so.
pytestmark = pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning", "ignore:Degrees of freedom:RuntimeWarning")


@st.composite
def minute_frames(draw, max_minutes: int = 90):
    """A per-minute frame of the six targets: non-negative values with NaN runs of any length."""
    n = draw(st.integers(1, max_minutes))
    columns = {}
    for name in TARGETS:
        values = np.asarray(draw(st.lists(st.floats(0, 500), min_size=n, max_size=n)), dtype=float)
        missing = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        values[np.asarray(missing, dtype=bool)] = np.nan
        columns[name] = values
    index = pd.date_range(pd.Timestamp(T0), periods=n, freq="1min", name="time")
    return pd.DataFrame(columns, index=index)


def _fit(frame: pd.DataFrame) -> Scaling:
    return Scaling.fit(frame[list(TARGETS)].to_numpy(dtype=float))


@PROPERTY
@given(frame=minute_frames())
def test_features_are_finite_and_masks_say_exactly_what_was_observed(frame):
    x = feature_matrix(frame, _fit(frame))
    assert x.shape == (len(frame), len(FEATURES)) and x.dtype == np.float32
    assert np.isfinite(x).all()  # the network is never fed NaN
    np.testing.assert_array_equal(x[:, MASK_AT], frame[list(TARGETS)].notna().to_numpy().astype(np.float32))
    sin, cos = x[:, FEATURES.index("minute_sin")], x[:, FEATURES.index("minute_cos")]
    np.testing.assert_allclose(sin**2 + cos**2, 1.0, atol=1e-5)


@PROPERTY
@given(frame=minute_frames())
def test_a_gap_is_filled_with_the_last_observed_value_for_at_most_five_minutes_then_zero(frame):
    scaling = _fit(frame)
    x = feature_matrix(frame, scaling)
    scaled = scaling.transform(frame[list(TARGETS)].to_numpy(dtype=float))
    for j, name in enumerate(TARGETS):
        last, run = None, 0
        for i, value in enumerate(frame[name].to_numpy()):
            if not np.isnan(value):
                last, run = scaled[i, j], 0
                assert x[i, j] == np.float32(scaled[i, j])
                continue
            run += 1
            want = last if last is not None and run <= MAX_FILL_MINUTES else 0.0
            assert x[i, j] == np.float32(want), (name, i, run)


@PROPERTY
@given(frame=minute_frames())
def test_scaling_round_trips_every_non_negative_value(frame):
    scaling = _fit(frame)
    values = frame[list(TARGETS)].to_numpy(dtype=float)
    back = scaling.inverse(scaling.transform(values))
    known = ~np.isnan(values)
    np.testing.assert_allclose(back[known], values[known], rtol=1e-9, atol=1e-9)
    assert all(scaling.log1p[TARGETS.index(c)] for c in LOG_CHANNELS)
    assert all(np.isfinite(scaling.mean)) and all(s > 0 for s in scaling.std)


@PROPERTY
@given(n=st.integers(0, 3000), L=st.integers(1, 200), H=st.integers(1, 200),
       a=st.integers(1, 8), b=st.integers(1, 8), c=st.integers(1, 8), stride=st.integers(1, 5))
def test_split_windows_stay_inside_their_block_and_never_share_a_minute(n, L, H, a, b, c, stride):
    total = a + b + c
    fractions = (a / total, b / total, 1 - (a + b) / total)
    split = split_origins(n, L, H, fractions, stride)
    bounds = np.round(np.cumsum((0.0,) + fractions) * n).astype(int)
    spans = []
    for origins, lo, hi in zip((split.train, split.validation, split.test), bounds[:-1], bounds[1:]):
        assert (np.diff(origins) == stride).all()
        if len(origins):
            assert origins[0] - L >= lo and origins[-1] + H <= hi  # input and horizon inside the block
            spans.append((origins[0] - L, origins[-1] + H))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start  # no minute seen by one part is predicted in another


@PROPERTY
@given(frame=minute_frames(max_minutes=60), L=st.integers(1, 40), data=st.data())
def test_a_served_window_never_looks_at_or_after_its_origin(frame, L, data):
    """window_at sees only the L minutes before the origin: changing anything from the origin on changes nothing."""
    assume(len(frame) > 1)
    scaling = _fit(frame)
    origin = frame.index[data.draw(st.integers(1, len(frame) - 1))]
    window = window_at(frame, origin, scaling, L)
    assert window.shape == (1, L, len(FEATURES)) and np.isfinite(window).all()
    future = frame.copy()
    future.loc[future.index >= origin] = 999.0
    np.testing.assert_array_equal(window_at(future, origin, scaling, L), window)
