"""Which season a service's load follows, found from its own history.

A web service's load may repeat on some period: the seed's Locust shape every hour, many real
services every day (and week); others have no useful cycle at all. The baselines repeat the last
season (seasonal naive) or add it back to a trend (damped ETS), so they need to know which.

:func:`detect_season` asks the question that matters for forecasting: which candidate period's
seasonal-naive forecast is most accurate on the second half of the history? The candidates are an
hour, a day and a week (in steps of the frame's cadence), each measured only when the history holds
two of its periods and a horizon; "no season" is the last value repeated (persistence). A period is
chosen only when it beats persistence by :data:`MIN_GAIN`; errors are scaled per channel (by its
spread), so every channel counts alike.

On the seed's simulator this finds 60 minutes; on the vendored 5-minute NAB series, whose daily
cycle is weak next to their bursts and level shifts, it finds that repeating yesterday does not
beat repeating the last value (``tests/forecasting/test_seasonality.py``; the evidence is in every
model card, ``metrics.season``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Candidate periods in minutes: an hour (load tests, batch jobs), a day, a week.
CANDIDATE_MINUTES = (60, 24 * 60, 7 * 24 * 60)
#: A period must forecast this much better than persistence (relative error) to be chosen.
MIN_GAIN = 0.05
#: Origins measured per candidate (evenly spaced over the history's second half).
ORIGINS = 300


@dataclass(frozen=True)
class Season:
    """The chosen period (None: no season) and the evidence for it."""

    minutes: int | None
    #: Scaled mean absolute error of the seasonal-naive forecast per candidate measured, "none" for persistence.
    evidence: dict[str, float]

    def steps(self, cadence_minutes: float = 1.0) -> int | None:
        return None if self.minutes is None else max(1, int(round(self.minutes / cadence_minutes)))

    def to_dict(self) -> dict:
        return {"minutes": self.minutes, "scaled_mae": {k: round(v, 5) for k, v in self.evidence.items()}}


def _scaled_error(values: np.ndarray, origins: np.ndarray, source: np.ndarray, spread: np.ndarray) -> float:
    """Mean over channels of the mean absolute error, each channel divided by its spread."""
    error = np.abs(values[source] - values[origins[:, None] + np.arange(source.shape[1])[None, :]]) / spread
    per_channel = [np.nanmean(error[..., c]) for c in range(values.shape[1]) if np.isfinite(error[..., c]).any()]
    return float(np.mean(per_channel)) if per_channel else float("nan")


def detect_season(
    values: np.ndarray,
    cadence_minutes: float = 1.0,
    horizon_steps: int | None = None,
    candidates: Sequence[int] = CANDIDATE_MINUTES,
) -> Season:
    """The season of ``values`` ``[time, channel]`` (NaN where missing) at ``cadence_minutes`` per row (module doc).

    ``horizon_steps``: how far ahead the forecasts are scored (default: an hour, at least one step).
    """
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    n = len(values)
    horizon = horizon_steps or max(1, int(round(60 / cadence_minutes)))
    with warnings.catch_warnings():  # a stream the service lacks is all NaN: left out below
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.nanstd(values, axis=0)
    spread = np.where(np.isfinite(spread) & (spread > 1e-12), spread, np.nan)
    evidence: dict[str, float] = {}
    periods = {m: int(round(m / cadence_minutes)) for m in candidates}
    periods = {m: s for m, s in periods.items() if s >= 2 and n >= 2 * s + horizon}
    if not periods or not np.isfinite(spread).any():
        return Season(None, evidence)
    first = max(max(periods.values()), n // 2)
    origins = np.arange(first, n - horizon + 1)
    if len(origins) > ORIGINS:
        origins = origins[np.linspace(0, len(origins) - 1, ORIGINS).round().astype(int)]
    steps = np.arange(horizon)[None, :]
    evidence["none"] = _scaled_error(values, origins, np.repeat(origins[:, None] - 1, horizon, axis=1), spread)
    for minutes, period in periods.items():
        evidence[str(minutes)] = _scaled_error(values, origins, origins[:, None] - period + steps % period, spread)
    best = min(periods, key=lambda m: evidence[str(m)])
    chosen = best if evidence[str(best)] < (1 - MIN_GAIN) * evidence["none"] else None
    return Season(chosen, evidence)


__all__ = ["CANDIDATE_MINUTES", "MIN_GAIN", "Season", "detect_season"]
