"""The metric catalogue: the four streams, their document shape and their criticity labels.

The document shape is the original deployment's, so an existing database can be pointed at:

- ``cpu_usage`` / ``jvm_memory_usage``:
  ``{time_series, origin_time_series, value, consume_percent, criticity}``
- ``request_count``: ``{time_series, origin_time_series, value_success, value_fail, criticity}``
- ``response_time``: ``{time_series, origin_time_series, value, criticity}``
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

CRITICITY_LABELS = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class Stream:
    """One metric stream: a MongoDB collection and the columns it yields."""

    #: What people and settings call it (``PYCEMAKER_STREAMS=cpu,requests``).
    name: str
    #: Collection name (the original's).
    collection: str
    #: Document fields holding values -> the frame column each becomes.
    fields: Mapping[str, str]
    #: Which health input (settings cut points) this stream feeds.
    flag: str
    unit: str
    #: What the health input is, for people (API descriptions, dashboards).
    flag_title: str
    #: What each frame column holds, for people.
    descriptions: Mapping[str, str]
    #: Whether the document carries ``consume_percent`` (a 0..1 utilisation).
    has_percent: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.fields.values())

    def flag_input(self, values: Mapping[str, Any]) -> Any:
        """What this stream's health cut points apply to: the sum of its columns (requests/s: success + fail).

        ``values`` maps column names to scalars, numpy arrays or pandas series. A missing (NaN) column
        counts as none beside a known one (a history imported with success counts only: the rate is its
        successes); the input is missing only where every column is.
        """
        parts = [values[column] for column in self.columns]
        if len(parts) == 1:
            return parts[0]
        stacked = np.stack([np.asarray(part, dtype=float) for part in parts])
        known = ~np.isnan(stacked)
        total = np.where(known.any(axis=0), np.where(known, stacked, 0.0).sum(axis=0), np.nan)
        if isinstance(parts[0], pd.Series):
            return pd.Series(total, index=parts[0].index)
        return total if total.ndim else float(total)


CPU = Stream(
    "cpu", "cpu_usage", {"value": "cpu"}, flag="cpu", unit="ratio", flag_title="CPU",
    descriptions={"cpu": "CPU usage ratio 0-1."}, has_percent=True,
)
MEMORY = Stream(
    "memory", "jvm_memory_usage", {"value": "memory"}, flag="memory", unit="ratio", flag_title="JVM memory",
    descriptions={"memory": "JVM memory usage ratio 0-1."}, has_percent=True,
)
REQUESTS = Stream(
    "requests",
    "request_count",
    {"value_success": "req_success", "value_fail": "req_fail"},
    flag="request_rate",
    unit="req/s",
    flag_title="Request rate (success + fail per second)",
    descriptions={"req_success": "Successful requests per second.", "req_fail": "Failed (5xx) requests per second."},
)
RESPONSE_TIME = Stream(
    "response_time", "response_time", {"value": "response_time"}, flag="response_time", unit="s", flag_title="Response time",
    descriptions={"response_time": "Mean response time, seconds."},
)

STREAMS: tuple[Stream, ...] = (CPU, MEMORY, REQUESTS, RESPONSE_TIME)
STREAMS_BY_COLLECTION = {s.collection: s for s in STREAMS}
STREAMS_BY_NAME = {s.name: s for s in STREAMS}
STREAM_NAMES: tuple[str, ...] = tuple(s.name for s in STREAMS)
#: Every per-minute value column, in a fixed order (the model's stream channels).
STREAM_COLUMNS: tuple[str, ...] = tuple(c for s in STREAMS for c in s.columns)
#: The health inputs, in a fixed order.
FLAG_NAMES: tuple[str, ...] = tuple(s.flag for s in STREAMS)
INCIDENTS_COLLECTION = "incidents"
#: Per-service, per-step frame rows (telemetry/rollups.py).
ROLLUPS_COLLECTION = "rollups"


def streams_named(names: Sequence[str]) -> tuple[Stream, ...]:
    """The streams called ``names`` (a service's configured subset), in the catalogue's order."""
    unknown = [n for n in names if n not in STREAMS_BY_NAME]
    if unknown or not names:
        raise ValueError(f"unknown stream(s) {', '.join(unknown) or '(none given)'}: use some of {', '.join(STREAM_NAMES)}")
    return tuple(s for s in STREAMS if s.name in names)


def flag_inputs(values: Mapping[str, Any], streams: Sequence[Stream] = STREAMS) -> dict[str, Any]:
    """The health inputs (keyed by flag name) of ``streams`` from stream columns (:meth:`Stream.flag_input`)."""
    return {s.flag: s.flag_input(values) for s in streams}


def flag_of(values: np.ndarray | float, cuts: Sequence[float]) -> np.ndarray:
    """Flag 0..3 per value: 0 if v <= c0, 1 if v <= c1, 2 if v <= c2, else 3. NaN stays NaN.

    ``searchsorted(side="left")`` counts the cut points strictly below v, which is
    exactly the ``<=`` rule, so every value gets one flag and the ranges never overlap.
    """
    arr = np.asarray(values, dtype=float)
    flags = np.searchsorted(np.asarray(cuts, dtype=float), arr, side="left").astype(float)
    return np.where(np.isnan(arr), np.nan, flags)


def criticity(value: float, cuts: Sequence[float]) -> str:
    """The original's ``criticity`` label for one value."""
    return CRITICITY_LABELS[int(flag_of(value, cuts))]


def to_document(
    stream: Stream, time: dt.datetime, values: Mapping[str, float], cuts: Sequence[float]
) -> dict[str, Any]:
    """One sample in the original document shape. ``time`` must be timezone-aware."""
    if time.tzinfo is None:
        raise ValueError("sample time must be timezone-aware (UTC)")
    time = time.astimezone(dt.timezone.utc)
    doc: dict[str, Any] = {
        "time_series": time,
        "origin_time_series": int(round(time.timestamp() * 1000)),
    }
    for field, column in stream.fields.items():
        doc[field] = float(values[column])
    if stream.has_percent:
        doc["consume_percent"] = f"{100.0 * float(values[stream.columns[0]]):.1f}%"
    doc["criticity"] = criticity(float(stream.flag_input(values)), cuts)
    return doc
