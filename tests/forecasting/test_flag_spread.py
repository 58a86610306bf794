"""Soft flags: a minute's flag as the mean of its samples', fitted per input on the service's minutes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting import flag_spread
from forecasting.contract import HEALTH, TARGETS
from forecasting.forecaster import derive_health
from telemetry.catalogue import flag_of
from telemetry.settings import Settings

CPU_CUTS = (0.25, 0.5, 0.75)


def test_no_spread_is_the_hard_cuts_and_a_spread_is_their_expectation():
    x = np.array([0.1, 0.5, 0.74, 0.75, 0.76, 0.9, np.nan])
    assert np.array_equal(flag_spread.soft_flag(x, CPU_CUTS, 0.0), flag_of(x, CPU_CUTS), equal_nan=True)
    soft = flag_spread.soft_flag(x, CPU_CUTS, 0.02)
    assert soft[3] == pytest.approx(2.5, abs=1e-6)  # on a cut: half the samples above it
    assert 2.0 < soft[2] < 2.5 < soft[4] < 3.0  # near a cut: a fraction, rising with the value
    assert soft[0] == pytest.approx(0.0, abs=1e-4) and soft[5] == pytest.approx(3.0, abs=1e-4)  # far from any cut: hard
    assert np.isnan(soft[-1])


def _minutes(spread: float | None, rng: np.random.Generator, n: int = 600) -> pd.DataFrame:
    """CPU minutes about the 0.75 cut, each flagged as its twelve samples' mean flag (``spread`` None: hard flags)."""
    cpu = rng.uniform(0.65, 0.85, n)
    if spread is None:
        flags = flag_of(cpu, CPU_CUTS)
    else:
        samples = cpu[:, None] + rng.normal(0.0, spread, (n, 12))
        cpu = samples.mean(axis=1)
        flags = flag_of(samples, CPU_CUTS).mean(axis=1)
    return pd.DataFrame({"cpu": cpu, "flag_cpu": flags})


def test_the_spread_fitted_is_the_samples_and_none_where_a_step_is_one_sample():
    settings = Settings(streams=("cpu",))
    rng = np.random.default_rng(3)
    fitted = flag_spread.fit(_minutes(0.03, rng), settings)
    assert set(fitted) == {"cpu"} and 0.02 < fitted["cpu"] < 0.045
    assert flag_spread.fit(_minutes(None, rng), settings) == {}  # an imported series: nothing between the cuts
    assert flag_spread.fit(_minutes(0.03, rng, n=30), settings) == {}  # too few minutes to tell


def test_derived_health_scores_soft_flags_and_keeps_its_quantiles_in_order():
    settings = Settings(streams=("cpu",))
    values = np.zeros((1, 1, len(TARGETS), 3))
    values[0, 0, TARGETS.index("cpu")] = [0.70, 0.74, 0.78]  # P10, P50, P90 about the 0.75 cut
    hard = derive_health(values, settings)[0, 0]
    soft = derive_health(values, settings, {"cpu": 0.02})[0, 0]
    assert np.allclose(hard, [1 - 3 / 3, 1 - 2 / 3, 1 - 2 / 3])
    assert np.all(np.diff(soft) >= 0)  # health at P10 from CPU at P90
    assert soft[1] < hard[1] and soft[0] > hard[0]  # the median minute has samples above the cut; P10's below it
    assert values[0, 0, HEALTH].sum() == 0  # the input is left alone
