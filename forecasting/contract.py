"""The model contract: the channels a model reads and writes, their bounds, and the ONNX names.

Training exports to it (``training/export.py``), serving and the evaluation run models through
it (:mod:`forecasting.forecaster`), and the model card records it, so a model trained on one
side runs unchanged on the other.

- Input ``window``: float32 ``[batch, L, len(FEATURES)]`` (:func:`forecasting.windows.window_at`).
- Output ``quantiles``: float32 ``[batch, H, len(TARGETS), len(quantiles)]`` in scaled units.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from telemetry.catalogue import STREAM_COLUMNS

#: What a model forecasts: every stream column of the catalogue, then health.
TARGETS: tuple[str, ...] = (*STREAM_COLUMNS, "health")
#: One mask per target: 1 where the minute was observed, 0 where it was missing.
MASKS: tuple[str, ...] = tuple(f"{t}_observed" for t in TARGETS)
#: Minute of the hour as sine and cosine (the load repeats hourly).
TIME_FEATURES: tuple[str, ...] = ("minute_sin", "minute_cos")
#: The input channels, in order: scaled targets, their masks, the time features.
FEATURES: tuple[str, ...] = TARGETS + MASKS + TIME_FEATURES
HEALTH = TARGETS.index("health")

#: Physical bounds of each target in original units.
BOUNDS: dict[str, tuple[float, float]] = {
    "cpu": (0.0, 1.0),
    "memory": (0.0, 1.0),
    "req_success": (0.0, float(np.inf)),
    "req_fail": (0.0, float(np.inf)),
    "response_time": (0.0, float(np.inf)),
    "health": (0.0, 1.0),
}

#: ONNX graph input and output names.
INPUT = "window"
OUTPUT = "quantiles"


def median_index(quantiles: Sequence[float]) -> int:
    """Index of the median among a model's quantile levels (the middle level when 0.5 is not one of them)."""
    levels = list(quantiles)
    return levels.index(0.5) if 0.5 in levels else len(levels) // 2


__all__ = ["TARGETS", "MASKS", "TIME_FEATURES", "FEATURES", "HEALTH", "BOUNDS", "INPUT", "OUTPUT", "median_index"]
