"""The baselines as models: forecasts that are linear in the input window, with bands from the service's own history.

Both baseline kinds forecast each target (in scaled units, the same as the LSTM's) as a weighted
sum of that target's values in the input window, so one ONNX graph runs them all
(``training/linear_export.py``), under the same contract as the LSTM (:mod:`forecasting.contract`):

- **seasonal naive** (:func:`seasonal_naive_weights`): each step ahead repeats the same phase of the
  last season in the window (the season from :mod:`forecasting.seasonality`); no season: the last value.
- **damped-trend ETS on the deseasonalised window** (:func:`damped_ets_weights`): the window's seasonal
  profile (classical decomposition: each phase's mean distance from the centred moving average over
  one season) is taken out, Holt's linear method with a
  damped trend runs over the rest, and the profile is added back to the forecast. Level and trend are
  linear in the window for fixed smoothing parameters, so the whole forecast is one matrix; the
  parameters (alpha, beta, phi) are chosen per target on the training block (:func:`fit_ets`).

**Bands** (:func:`residual_offsets`): for each target and step ahead, the P10 and P90 are the point
forecast plus the split-conformal quantiles of the model's own residuals on the training block
(the ``ceil((n + 1) q)``-th smallest of ``n``). Leads with fewer than :data:`MIN_RESIDUALS` residuals
(a short history) extend the last well-measured lead's offset by the square root of the lead (a
random walk's spread); with none at all, the spread of one-step changes sets it. The median is
the point forecast. The held-back block checks the bands (their coverage is a promotion gate).

Everything here is numpy: the training run fits these, the evaluation runs them, and the ONNX
graph must equal :meth:`LinearModel.predict_scaled` (a parity test).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

SEASONAL_NAIVE = "seasonal_naive"
ETS = "ets"
KINDS = (SEASONAL_NAIVE, ETS)
#: Fewer residuals than this at a lead: its offset is extended from a shorter lead.
MIN_RESIDUALS = 30
#: Smoothing parameters tried for each target (alpha: level, beta: trend, phi: damping).
ALPHAS = (0.02, 0.05, 0.1, 0.2, 0.4, 0.7)
BETAS = (0.0, 0.02, 0.1)
PHIS = (0.8, 0.9, 0.98)
#: Leads the ETS parameters are chosen on (the promotion gates' horizon).
FIT_LEADS = 60
#: At most this many training windows are used to choose parameters (evenly spaced).
FIT_WINDOWS = 600


@dataclass(frozen=True)
class LinearModel:
    """``point[b, h, t] = sum_l window[b, l, t] * weights[t, l, h] + bias[t, h]``; quantiles add ``offsets[h, t, q]``."""

    kind: str
    input_steps: int
    horizon_steps: int
    season_steps: int | None
    weights: np.ndarray  # [T, L, H]
    bias: np.ndarray  # [T, H]
    offsets: np.ndarray  # [H, T, Q]
    quantiles: tuple[float, ...]
    #: How it was fitted, for the card (per-target smoothing parameters, residual counts).
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_targets(self) -> int:
        return self.weights.shape[0]

    def point_scaled(self, windows: np.ndarray) -> np.ndarray:
        """``[B, L, F]`` input windows -> ``[B, H, T]`` point forecasts (scaled)."""
        x = np.asarray(windows, dtype=np.float64)[:, :, : self.n_targets]
        return np.einsum("blt,tlh->bht", x, self.weights) + self.bias.T[None, :, :]

    def predict_scaled(self, windows: np.ndarray) -> np.ndarray:
        """``[B, L, F]`` -> ``[B, H, T, Q]`` scaled quantiles: what the exported ONNX graph computes."""
        return self.point_scaled(windows)[..., None] + self.offsets[None]


def seasonal_naive_weights(input_steps: int, horizon_steps: int, season_steps: int | None) -> np.ndarray:
    """``[L, H]``: step h repeats the same phase of the window's last season (no season: the last value)."""
    if season_steps is not None and season_steps > input_steps:
        raise ValueError(f"a season of {season_steps} steps does not fit in an input window of {input_steps}")
    w = np.zeros((input_steps, horizon_steps))
    for h in range(horizon_steps):
        source = input_steps - season_steps + h % season_steps if season_steps else input_steps - 1
        w[source, h] = 1.0
    return w


def seasonal_profile(input_steps: int, season_steps: int | None) -> np.ndarray:
    """``[season, L]``: the window's seasonal profile by classical decomposition, as a matrix over its L values.

    The trend is the centred moving average over one season (a 2 x s average for an even s), which a
    linear trend passes unchanged and a season cancels out of; each phase's profile value is its mean
    of ``value - trend`` where the average is defined, and the profile is centred. A window too short
    for any centred average (less than a season and a step) uses a straight-line fit for the trend.
    """
    if not season_steps:
        return np.zeros((1, input_steps))
    L, s = input_steps, season_steps
    if s > L:
        raise ValueError(f"a season of {s} steps does not fit in an input window of {L}")
    half = s // 2
    trend = {}
    for i in range(half, L - half):
        w = np.zeros(L)
        if s % 2:
            w[i - half : i + half + 1] = 1.0 / s
        else:  # 2 x s moving average: the end points count half
            w[i - half : i + half + 1] = 1.0 / s
            w[i - half] = w[i + half] = 0.5 / s
        trend[i] = w
    eye = np.eye(L)
    if not trend:  # too short: a straight line through the window
        x = np.column_stack([np.ones(L), np.arange(L, dtype=float)])
        line = x @ np.linalg.pinv(x)
        trend = {i: line[i] for i in range(L)}
    profile = np.zeros((s, L))
    counts = np.zeros(s)
    for i, w in trend.items():
        p = (i - L) % s
        profile[p] += eye[i] - w
        counts[p] += 1
    profile[counts > 0] /= counts[counts > 0, None]
    return profile - profile.mean(axis=0, keepdims=True)


def damped_ets_weights(
    input_steps: int, horizon_steps: int, season_steps: int | None, alpha: float, beta: float, phi: float
) -> np.ndarray:
    """``[L, H]``: Holt's damped trend on the deseasonalised window, the seasonal profile added back (module doc).

    Level and trend are tracked as coefficient vectors over the window's L values, so the result
    is exactly the linear map the recursion computes for any window.
    """
    L = input_steps
    profile = seasonal_profile(L, season_steps)
    season = season_steps or 1
    phase = lambda i: (i - L) % season  # noqa: E731  (index L - season + p has phase p)
    eye = np.eye(L)
    d = [eye[i] - profile[phase(i)] for i in range(L)]  # deseasonalised value i, as coefficients of the window
    level, trend = d[0], np.zeros(L)
    for i in range(1, L):
        new_level = alpha * d[i] + (1 - alpha) * (level + phi * trend)
        trend = beta * (new_level - level) + (1 - beta) * phi * trend
        level = new_level
    w = np.zeros((L, horizon_steps))
    damp = 0.0
    for h in range(horizon_steps):
        damp += phi ** (h + 1)
        w[:, h] = level + damp * trend + profile[phase(L + h)]
    return w


def training_windows(
    features: np.ndarray, targets_scaled: np.ndarray, input_steps: int, horizon_steps: int, end: int, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` evenly spaced windows whose input lies before ``end``: inputs ``[N, L, F]`` and targets
    ``[N, H, T]`` (scaled; NaN where missing or at or after ``end``, so a short history gives partial horizons)."""
    origins = np.arange(input_steps, end)
    if len(origins) > count:
        origins = origins[np.linspace(0, len(origins) - 1, count).round().astype(int)]
    if len(origins) == 0:
        return (np.empty((0, input_steps, features.shape[1])), np.empty((0, horizon_steps, targets_scaled.shape[1])))
    x = features[origins[:, None] + np.arange(-input_steps, 0)[None, :]]
    rows = origins[:, None] + np.arange(horizon_steps)[None, :]
    y = np.where((rows < end)[..., None], targets_scaled[np.minimum(rows, len(targets_scaled) - 1)], np.nan)
    return x, y


def fit_ets(
    x: np.ndarray, y: np.ndarray, input_steps: int, season_steps: int | None, n_targets: int
) -> list[tuple[float, float, float]]:
    """Per target, the (alpha, beta, phi) with the lowest mean absolute error over the first :data:`FIT_LEADS` steps."""
    leads = min(FIT_LEADS, y.shape[1])
    best: list[tuple[float, tuple[float, float, float]]] = [(np.inf, (0.2, 0.02, 0.9))] * n_targets
    xt = np.asarray(x[:, :, :n_targets], dtype=np.float64).transpose(0, 2, 1)  # [N, T, L]
    for params in itertools.product(ALPHAS, BETAS, PHIS):
        w = damped_ets_weights(input_steps, leads, season_steps, *params)
        errors = np.abs(xt @ w - y[:, :leads, :].transpose(0, 2, 1))  # [N, T, leads]
        for t in range(n_targets):
            e = errors[:, t][np.isfinite(errors[:, t])]
            if len(e) and e.mean() < best[t][0]:
                best[t] = (float(e.mean()), params)
    return [params for _, params in best]


def residual_offsets(
    point: np.ndarray, actual: np.ndarray, quantiles: Sequence[float], series: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``[H, T, Q]`` band offsets from residuals ``actual - point`` (``[N, H, T]``, scaled; see the module doc), and
    ``[H, T]`` how many residuals each lead had. ``series`` ``[time, T]`` (scaled) gives the one-step spread when
    no lead has enough."""
    n_leads, n_targets = point.shape[1], point.shape[2]
    residuals = actual - point
    counts = np.isfinite(residuals).sum(axis=0)
    offsets = np.zeros((n_leads, n_targets, len(quantiles)))
    for t in range(n_targets):
        measured = [h for h in range(n_leads) if counts[h, t] >= MIN_RESIDUALS]
        for h in measured:
            r = np.sort(residuals[:, h, t][np.isfinite(residuals[:, h, t])])
            for j, q in enumerate(quantiles):
                if q != 0.5:
                    k = int(np.ceil((len(r) + 1) * q))
                    offsets[h, t, j] = r[min(max(k, 1), len(r)) - 1]
        if measured:
            last = measured[-1]
            for h in range(last + 1, n_leads):
                offsets[h, t] = offsets[last, t] * np.sqrt((h + 1) / (last + 1))
            for h in range(last):  # a gap below the last measured lead: the nearest measured one below it
                if counts[h, t] < MIN_RESIDUALS:
                    below = [m for m in measured if m < h]
                    offsets[h, t] = offsets[below[-1], t] if below else offsets[measured[0], t]
        else:
            steps = np.diff(series[:, t])
            spread = float(np.nanstd(steps)) if np.isfinite(steps).sum() > 1 else 1.0
            z = np.array([NormalDist().inv_cdf(q) for q in quantiles])
            offsets[:, t, :] = z[None, :] * spread * np.sqrt(np.arange(1, n_leads + 1))[:, None]
    return offsets, counts


def fit_linear(
    kind: str,
    features: np.ndarray,
    targets_scaled: np.ndarray,
    fit_end: int,
    input_steps: int,
    horizon_steps: int,
    season_steps: int | None,
    quantiles: Sequence[float],
) -> LinearModel:
    """Fit a baseline of ``kind`` on the rows before ``fit_end`` of a frame's features and scaled targets."""
    n_targets = targets_scaled.shape[1]
    if kind == SEASONAL_NAIVE:
        weights = np.repeat(seasonal_naive_weights(input_steps, horizon_steps, season_steps)[None], n_targets, axis=0)
        params: dict[str, Any] = {}
    elif kind == ETS:
        x, y = training_windows(features, targets_scaled, input_steps, horizon_steps, fit_end, FIT_WINDOWS)
        chosen = fit_ets(x, y, input_steps, season_steps, n_targets) if len(x) else [(0.2, 0.02, 0.9)] * n_targets
        weights = np.stack([damped_ets_weights(input_steps, horizon_steps, season_steps, *p) for p in chosen])
        params = {"alpha_beta_phi": [list(p) for p in chosen]}
    else:
        raise ValueError(f"unknown baseline kind {kind!r}; known: {', '.join(KINDS)}")
    bias = np.zeros((n_targets, horizon_steps))
    model = LinearModel(kind, input_steps, horizon_steps, season_steps, weights, bias,
                        np.zeros((horizon_steps, n_targets, len(quantiles))), tuple(quantiles), params)
    x, y = training_windows(features, targets_scaled, input_steps, horizon_steps, fit_end, 4 * FIT_WINDOWS)
    offsets, counts = residual_offsets(model.point_scaled(x), y, quantiles, targets_scaled[:fit_end])
    params = {**params, "band_windows": int(len(x)), "band_leads_measured": int((counts >= MIN_RESIDUALS).all(axis=1).sum())}
    return LinearModel(kind, input_steps, horizon_steps, season_steps, weights, bias, offsets, tuple(quantiles), params)


__all__ = ["SEASONAL_NAIVE", "ETS", "KINDS", "LinearModel", "seasonal_naive_weights", "seasonal_profile",
           "damped_ets_weights", "training_windows", "fit_ets", "residual_offsets", "fit_linear"]
