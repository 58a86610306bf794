"""Windows, gaps and scaling (telemetry/windows.py, shared with serving) and the data module's split."""

import numpy as np
import pandas as pd
import pytest

from forecasting.contract import FEATURES, HEALTH, MASKS, TARGETS
from forecasting.windows import MAX_FILL_MINUTES, Scaling, feature_matrix, split_origins, target_values, window_at, window_origins, windows

L, H = 120, 60


def frame_of(n: int, start="2026-05-04T00:00Z") -> pd.DataFrame:
    index = pd.date_range(start, periods=n, freq="1min", name="time")
    rng = np.random.default_rng(0)
    data = {
        "cpu": rng.uniform(0, 1, n), "memory": rng.uniform(0, 1, n), "req_success": rng.uniform(0, 120, n),
        "req_fail": rng.uniform(0, 5, n), "response_time": rng.uniform(0.05, 4, n), "health": rng.uniform(0, 1, n),
    }
    return pd.DataFrame(data, index=index)


def test_window_origins_edges():
    origins = window_origins(400, L, H)
    assert origins[0] == L  # the first input is minutes [0, L)
    assert origins[-1] + H == 400  # the last horizon ends at the frame's last minute
    assert len(window_origins(L + H - 1, L, H)) == 0  # one minute short: no window
    assert len(window_origins(L + H, L, H)) == 1


def test_split_windows_never_straddle_a_boundary():
    n = 3000
    split = split_origins(n, L, H, (0.7, 0.15, 0.15))
    bounds = [0, 2100, 2550, 3000]
    spans = []
    for part, lo, hi in zip((split.train, split.validation, split.test), bounds[:-1], bounds[1:]):
        assert len(part)
        first, last = part[0] - L, part[-1] + H
        assert lo <= first and last <= hi  # inputs and horizons stay inside their block
        assert part[0] == lo + L and last == hi  # and use all of it
        spans.append((first, last))
    # No minute is in two parts: nothing predicted in validation or test was seen in training.
    assert spans[0][1] <= spans[1][0] and spans[1][1] <= spans[2][0]
    assert np.all(np.diff(split.train) == 1) and split.train.dtype.kind == "i"


def test_split_fractions_must_sum_to_one():
    with pytest.raises(ValueError):
        split_origins(3000, L, H, (0.7, 0.2, 0.2))


def test_windows_slice_inputs_before_and_targets_from_the_origin():
    frame = frame_of(400)
    scaling = Scaling.fit(target_values(frame))
    features = feature_matrix(frame, scaling)
    targets = scaling.transform(target_values(frame))
    x, y = windows(features, targets, np.array([L, 250]), L, H)
    assert x.shape == (2, L, len(FEATURES)) and y.shape == (2, H, len(TARGETS))
    assert x.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_allclose(x[1], features[250 - L : 250])
    np.testing.assert_allclose(y[1], targets[250 : 250 + H], rtol=1e-6)


def test_scaling_round_trip_and_log_channels():
    values = target_values(frame_of(500))
    scaling = Scaling.fit(values)
    scaled = scaling.transform(values)
    np.testing.assert_allclose(np.nanmean(scaled, axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(np.nanstd(scaled, axis=0), 1, atol=1e-9)
    np.testing.assert_allclose(scaling.inverse(scaled), values, rtol=1e-9, atol=1e-12)
    assert scaling.log1p == tuple(t in ("req_success", "req_fail", "response_time") for t in TARGETS)
    again = Scaling.from_dict(scaling.to_dict())
    assert again == scaling
    # inverse on [B, H, T, Q] with the channel axis at 2 (the ONNX output layout)
    stacked = np.repeat(scaled[None, :10, :, None], 3, axis=-1)
    np.testing.assert_allclose(again.inverse(stacked, axis=2)[0, :, :, 1], values[:10], rtol=1e-9)


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:Degrees of freedom")
def test_scaling_survives_nan_and_constant_channels():
    values = target_values(frame_of(100))
    values[:, 0] = 0.5  # constant
    values[:, 1] = np.nan  # never observed
    scaling = Scaling.fit(values)
    assert scaling.std[0] == 1.0 and scaling.mean[1] == 0.0 and scaling.std[1] == 1.0
    assert np.isfinite(scaling.transform(values)[:, 0]).all()


def test_missing_minutes_are_masked_and_filled_at_most_five_minutes():
    frame = frame_of(60)
    frame.iloc[10:13, 0] = np.nan  # a 3-minute gap: forward-filled, masked
    frame.iloc[30:40, 5] = np.nan  # a 10-minute health gap: 5 filled, then the training mean (0)
    scaling = Scaling.fit(target_values(frame))
    x = feature_matrix(frame, scaling)
    cpu, cpu_seen = 0, FEATURES.index(MASKS[0])
    health, health_seen = HEALTH, FEATURES.index(MASKS[HEALTH])
    assert (x[10:13, cpu_seen] == 0).all() and x[9, cpu_seen] == 1 and x[13, cpu_seen] == 1
    np.testing.assert_allclose(x[10:13, cpu], x[9, cpu])
    assert (x[30:40, health_seen] == 0).all()
    np.testing.assert_allclose(x[30 : 30 + MAX_FILL_MINUTES, health], x[29, health])
    np.testing.assert_array_equal(x[30 + MAX_FILL_MINUTES : 40, health], 0.0)
    assert np.isfinite(x).all()
    # Minute-of-hour features: sin/cos of the minute, the hour's phase.
    assert x[0, FEATURES.index("minute_sin")] == pytest.approx(0.0) and x[0, FEATURES.index("minute_cos")] == 1
    assert x[15, FEATURES.index("minute_sin")] == pytest.approx(1.0)


def test_window_at_builds_the_same_input_as_training():
    """Serving's single window equals the training window at the same origin, gaps included."""
    frame = frame_of(400)
    frame.iloc[200:203] = np.nan
    scaling = Scaling.fit(target_values(frame))
    features = feature_matrix(frame, scaling)
    x, _ = windows(features, scaling.transform(target_values(frame)), np.array([300]), L, H)
    origin = frame.index[300]
    served = window_at(frame[frame.index < origin], origin, scaling, L)  # serving never has the future
    np.testing.assert_allclose(served[0], x[0], atol=1e-6)
    # Minutes absent from the frame altogether (not even NaN rows) are missing, not zero.
    sparse = frame.drop(frame.index[250:260])
    served = window_at(sparse[sparse.index < origin], origin, scaling, L)
    assert (served[0, 250 - 180 : 260 - 180, FEATURES.index(MASKS[0])] == 0).all()
    assert served[0, 249 - 180, FEATURES.index(MASKS[0])] == 1
