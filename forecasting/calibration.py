"""Split-conformal calibration of the health quantiles, per lead time. Torch-free numpy.

The network's quantile head is trained with pinball loss, but its band need not be
calibrated: the P10-P90 band of a long lead, or of a model trained briefly, can be too
narrow or too wide. After fitting, the trainer measures, on the validation windows (never
the training ones), the residuals ``y - q_hat`` of each band quantile at each lead, and
stores their conformal quantile as an offset in the model card. Serving and the gates add
the offsets to every forecast (:func:`forecasting.forecaster.to_original`).

One-sided split conformal per quantile level ``q``: the offset is the ``ceil((n + 1) q)``-th
smallest of the ``n`` residuals, so that ``P(y <= q_hat + offset) >= q`` for an exchangeable
new window (Romano, Patterson and Candes 2019 calibrate a two-sided band the same way).
Leads with fewer than :data:`MIN_WINDOWS` observed residuals keep offset 0.

The median is left as trained (offset 0). Measured (docs/evaluation.md): its validation
residual median is within a few thousandths of zero at every lead, i.e. noise over ~1 200
overlapping windows, and shifting the P50 by it moved plateau minutes (health 0.33) across the
failure threshold (0.3): twice the false alarms on the held-out weeks, with no gain in accuracy.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: Fewer observed residuals than this at a lead: no offset there.
MIN_WINDOWS = 30
METHOD = "split-conformal per band quantile and lead (median as trained)"
MEDIAN = 0.5


def conformal_offsets(forecast: np.ndarray, actual: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """Offsets [H, Q] from forecasts [N, H, Q] and observations [N, H] (NaN: not observed)."""
    n_leads, n_q = forecast.shape[1], forecast.shape[2]
    offsets = np.zeros((n_leads, n_q))
    residuals = actual[:, :, None] - forecast
    observed = np.isfinite(actual)
    for h in range(n_leads):
        r = residuals[observed[:, h], h, :]
        n = len(r)
        if n < MIN_WINDOWS:
            continue
        ranked = np.sort(r, axis=0)
        for j, q in enumerate(quantiles):
            if q == MEDIAN:
                continue
            k = int(np.ceil((n + 1) * q))  # 1-based rank; clamped for q close to 1 with few windows
            offsets[h, j] = ranked[min(max(k, 1), n) - 1, j]
    return offsets


def apply(values: np.ndarray, offsets: np.ndarray | None, bounds: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Calibrated quantiles [B, H, Q] (bounded and sorted). Leads beyond the offsets' keep the last lead's."""
    if offsets is None:
        return values
    n_leads = values.shape[1]
    rows = np.minimum(np.arange(n_leads), len(offsets) - 1)
    out = np.clip(values + offsets[rows][None, :, :], *bounds)
    return np.sort(out, axis=-1)


def to_card(offsets: np.ndarray, windows: int) -> dict[str, Any]:
    """The card's ``calibration`` entry."""
    return {"health": {"method": METHOD, "validation_windows": int(windows),
                       "offsets": np.round(offsets, 6).tolist()}}


def from_card(calibration: dict[str, Any] | None) -> np.ndarray | None:
    """Health offsets [H, Q] from a card's ``calibration`` entry (None: the model is not calibrated)."""
    health = (calibration or {}).get("health")
    if not health or not health.get("offsets"):
        return None
    return np.asarray(health["offsets"], dtype=float)
