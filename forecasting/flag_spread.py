"""How far a minute's samples spread about the minute's value, per health input: health scored from a forecast.

A minute's health is the mean of its samples' health (a 5 s scrape: twelve a minute), so a minute whose
mean CPU sits just under a cut still has samples above it, and its flag is a fraction (the frame's
``flag_<input>`` columns). Health derived from a forecast minute with the hard cuts (0 below, 1 above,
nothing between) is biased wherever the service lives near a cut: it answers 0.33 for a minute whose
samples flag 0.2 on average. The soft flag is what the hard one is in expectation over a spread ``s``
of the samples about the minute's value: the sum over the cuts of ``logistic((x - cut) / s)``
(the logistic scaled to the normal's slope, so ``s`` reads as a standard deviation). ``s`` is fitted per
input on the service's own minutes, the value against the observed fractional flag, and is 0 (the
hard cuts) where spreading gains nothing: one sample per step (imported series), or flat inputs.
The model's card keeps the spreads it was scored with (``flag_spread``), and serving derives alike.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from telemetry.catalogue import flag_inputs, flag_of
from telemetry.settings import Settings

#: Logistic slope matching a standard normal's CDF (max error about 0.01).
LOGISTIC_SLOPE = 1.702
#: Spreads tried, as fractions of the input's first cut (0: the hard cuts).
GRID = (0.0, *np.geomspace(1e-3, 1.0, 40))
#: A spread must lower the flags' mean absolute error by this much (relative) over the hard cuts.
MIN_GAIN = 0.05
#: Minutes needed to fit an input's spread.
MIN_MINUTES = 60


def soft_flag(values: np.ndarray, cuts: Sequence[float], spread: float) -> np.ndarray:
    """Expected flag 0..3 of samples spread by ``spread`` about ``values``; the hard flag when ``spread`` is 0. NaN stays NaN."""
    values = np.asarray(values, dtype=float)
    if spread <= 0:
        return flag_of(values, cuts)
    z = np.clip((values[..., None] - np.asarray(cuts, dtype=float)) * (LOGISTIC_SLOPE / spread), -50.0, 50.0)
    return (1.0 / (1.0 + np.exp(-z))).sum(axis=-1)


def fit(frame: pd.DataFrame, settings: Settings) -> dict[str, float]:
    """Per health input of ``settings``' streams, the spread that best turns the frame's minute values into its
    observed flags (mean absolute error), or 0 where none beats the hard cuts by :data:`MIN_GAIN`."""
    columns = {c: frame[c].to_numpy(dtype=float) for c in frame.columns}
    cuts = settings.cuts()
    out: dict[str, float] = {}
    for name, value in flag_inputs(columns, settings.stream_set).items():
        observed = columns.get(f"flag_{name}")
        if observed is None:
            continue
        value = np.asarray(value, dtype=float)
        known = np.isfinite(value) & np.isfinite(observed)
        if known.sum() < MIN_MINUTES:
            continue
        x, y = value[known], observed[known]
        errors = [float(np.mean(np.abs(soft_flag(x, cuts[name], g * cuts[name][0]) - y))) for g in GRID]
        best = int(np.argmin(errors))
        if GRID[best] > 0 and errors[best] < (1.0 - MIN_GAIN) * errors[0]:
            out[name] = float(GRID[best] * cuts[name][0])
    return out


def flags(streams: Mapping[str, np.ndarray], settings: Settings, spread: Mapping[str, float] | None = None) -> np.ndarray:
    """The sum of the soft flags of ``settings``' health inputs, from stream columns (any shape, alike)."""
    cuts, spread = settings.cuts(), spread or {}
    return sum(soft_flag(value, cuts[name], float(spread.get(name, 0.0)))
               for name, value in flag_inputs(streams, settings.stream_set).items())


__all__ = ["GRID", "MIN_GAIN", "fit", "flags", "soft_flag"]
