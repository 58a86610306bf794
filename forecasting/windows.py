"""Model inputs from per-minute frames: channels, scaling, windows and leak-free splits.

Both sides build inputs here, so serving feeds the ONNX model exactly what training fed
the network (see docs/model.md).

Channels, in order (:data:`forecasting.contract.FEATURES`):
- the six targets, scaled: ``cpu, memory, req_success, req_fail, response_time, health``;
- one mask per target: 1 where the minute was observed, 0 where it was missing;
- ``minute_sin, minute_cos``: minute of the hour (the load repeats hourly).

Rows are frame steps: a minute, or the series' own step for coarse data (``step_minutes``); the
window functions count rows. Missing rows: a gap of up to ``MAX_FILL_MINUTES`` rows is forward-filled (a scrape hiccup);
a longer gap is set to the channel's training mean (0 after scaling) and its mask is 0, so
the network is told, never silently fed zeros. Targets are never filled: a missing
minute in the horizon is masked out of the loss and of every metric.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from forecasting.contract import TARGETS

#: Heavy-tailed channels are scaled on log1p.
LOG_CHANNELS = frozenset({"req_success", "req_fail", "response_time"})
MAX_FILL_MINUTES = 5


@dataclass(frozen=True)
class Scaling:
    """Per-target affine scaling (on log1p for heavy-tailed channels), fitted on training data only."""

    channels: tuple[str, ...]
    log1p: tuple[bool, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, values: np.ndarray, channels: Sequence[str] = TARGETS) -> "Scaling":
        """``values``: [time, channel] in original units (NaN allowed)."""
        logs = tuple(c in LOG_CHANNELS for c in channels)
        x = _log(values, logs)
        with warnings.catch_warnings():  # a stream the service does not have is all NaN: mean 0, std 1 below
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(x, axis=0)
            std = np.nanstd(x, axis=0)
        mean = np.where(np.isnan(mean), 0.0, mean)
        std = np.where(~np.isfinite(std) | (std < 1e-6), 1.0, std)
        return cls(tuple(channels), logs, tuple(float(m) for m in mean), tuple(float(s) for s in std))

    def transform(self, values: np.ndarray) -> np.ndarray:
        """[..., channel] original units -> scaled."""
        return (_log(values, self.log1p) - np.asarray(self.mean)) / np.asarray(self.std)

    def inverse(self, scaled: np.ndarray, axis: int = -1) -> np.ndarray:
        """Scaled -> original units; ``axis`` is the channel axis."""
        shape = [1] * scaled.ndim
        shape[axis] = len(self.channels)
        mean = np.asarray(self.mean).reshape(shape)
        std = np.asarray(self.std).reshape(shape)
        x = scaled * std + mean
        logs = np.asarray(self.log1p).reshape(shape)
        return np.where(logs, np.expm1(x), x)

    def to_dict(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "log1p": list(self.log1p), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Scaling":
        return cls(tuple(data["channels"]), tuple(data["log1p"]), tuple(data["mean"]), tuple(data["std"]))


def _log(values: np.ndarray, logs: Sequence[bool]) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.where(np.asarray(logs), np.log1p(np.maximum(values, 0.0)), values)


def target_values(frame: pd.DataFrame) -> np.ndarray:
    """[time, target] in original units, NaN where missing."""
    return frame[list(TARGETS)].to_numpy(dtype=float)


def feature_matrix(frame: pd.DataFrame, scaling: Scaling) -> np.ndarray:
    """[time, feature] float32 model inputs for every minute of ``frame`` (see module doc)."""
    raw = frame[list(TARGETS)]
    observed = raw.notna().to_numpy()
    filled = raw.ffill(limit=MAX_FILL_MINUTES).to_numpy(dtype=float)
    scaled = scaling.transform(filled)
    scaled = np.where(np.isnan(scaled), 0.0, scaled)
    minute = frame.index.minute.to_numpy() + frame.index.second.to_numpy() / 60.0
    angle = 2 * np.pi * minute / 60.0
    out = np.concatenate([scaled, observed.astype(float), np.sin(angle)[:, None], np.cos(angle)[:, None]], axis=1)
    return out.astype(np.float32)


def window_origins(n_minutes: int, input_minutes: int, horizon_minutes: int, stride: int = 1) -> np.ndarray:
    """Indices ``o`` such that input = [o - L, o) and horizon = [o, o + H) both lie in the frame."""
    return np.arange(input_minutes, n_minutes - horizon_minutes + 1, stride)


def windows(
    features: np.ndarray,
    targets_scaled: np.ndarray,
    origins: np.ndarray,
    input_minutes: int,
    horizon_minutes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs [N, L, F] and horizon targets [N, H, T] (scaled, NaN where missing) at ``origins``."""
    if len(origins) == 0:
        return (
            np.empty((0, input_minutes, features.shape[1]), np.float32),
            np.empty((0, horizon_minutes, targets_scaled.shape[1]), np.float32),
        )
    x_idx = origins[:, None] + np.arange(-input_minutes, 0)[None, :]
    y_idx = origins[:, None] + np.arange(horizon_minutes)[None, :]
    return features[x_idx].astype(np.float32), targets_scaled[y_idx].astype(np.float32)


@dataclass(frozen=True)
class Split:
    """Window origins of each part of a time-ordered split."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_origins(
    n_minutes: int,
    input_minutes: int,
    horizon_minutes: int,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    stride: int = 1,
) -> Split:
    """Time-ordered train / validation / test windows; any window straddling a boundary is dropped.

    The minutes are cut into three consecutive blocks; a window belongs to a block only if
    its whole span (input and horizon) lies inside it, so no minute seen by one part is
    predicted in another.
    """
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError("split fractions must sum to 1")
    bounds = np.round(np.cumsum((0.0,) + tuple(fractions)) * n_minutes).astype(int)
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        origins = window_origins(hi - lo, input_minutes, horizon_minutes, stride) + lo
        parts.append(origins)
    return Split(*parts)


def lookback_minutes(input_minutes: int, step_minutes: int = 1) -> int:
    """Minutes of history an input window of ``input_minutes`` reads: the window and the forward fill's lead-in."""
    return input_minutes + MAX_FILL_MINUTES * step_minutes


def window_at(frame: pd.DataFrame, origin: pd.Timestamp, scaling: Scaling, input_steps: int, step_minutes: int = 1) -> np.ndarray:
    """The single input window [1, L, F] whose input is the L steps before ``origin``.

    ``frame`` must hold those steps (missing ones as NaN rows); extra rows are ignored.
    """
    freq = f"{step_minutes}min"
    step = pd.Timedelta(minutes=step_minutes)
    steps = pd.date_range(origin - input_steps * step, periods=input_steps, freq=freq)
    # MAX_FILL_MINUTES rows of lead-in let a gap at the window's start be forward-filled as in training.
    lead = pd.date_range(steps[0] - MAX_FILL_MINUTES * step, periods=MAX_FILL_MINUTES, freq=freq)
    part = frame.reindex(lead.append(steps))
    return feature_matrix(part, scaling)[MAX_FILL_MINUTES:][None, :, :]
