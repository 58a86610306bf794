"""Hypothesis strategies for metric streams, and the settings every property test runs with.

Samples lie in a 10-minute span starting at ``T0``, at whole milliseconds (what the store
keeps), with values around every cut point (so each flag 0-3 is exercised).
"""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, settings, strategies as st

from telemetry.catalogue import STREAMS, Stream

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SPAN_S = 600.0
#: Deterministic in CI (CI=true): a failure there is reproducible from the log, never a flake.
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Values per frame column: zero, the cut points, just around them, and beyond the last one.
VALUES = {
    "cpu": st.sampled_from([0.0, 0.1, 0.25, 0.2500001, 0.5, 0.6, 0.75, 0.9, 1.0]) | st.floats(0, 1),
    "memory": st.sampled_from([0.0, 0.25, 0.26, 0.5, 0.75, 0.76, 1.0]) | st.floats(0, 1),
    "req_success": st.sampled_from([0.0, 5.0, 15.0, 29.0, 45.0, 60.0, 100.0]) | st.floats(0, 200),
    "req_fail": st.sampled_from([0.0, 0.0, 1.0, 20.0]) | st.floats(0, 50),
    "response_time": st.sampled_from([0.0, 0.05, 0.3, 0.31, 0.6, 1.0, 3.0]) | st.floats(0, 10),
}
#: A value that scores flag 0 for each column (alone: requests count success + fail together).
HEALTHY = {"cpu": 0.1, "memory": 0.1, "req_success": 5.0, "req_fail": 0.0, "response_time": 0.1}


def offsets(max_size: int = 40) -> st.SearchStrategy[list[int]]:
    """Sample times as milliseconds after ``T0``."""
    return st.lists(st.integers(0, int(SPAN_S * 1000) - 1), max_size=max_size)


@st.composite
def stream_frame(draw, stream: Stream, max_size: int = 40) -> pd.DataFrame:
    times = sorted(set(draw(offsets(max_size))))
    data = {column: [draw(VALUES[column]) for _ in times] for column in stream.columns}
    index = pd.DatetimeIndex([pd.Timestamp(T0) + pd.Timedelta(milliseconds=t) for t in times], name="time", tz=UTC)
    return pd.DataFrame({c: np.asarray(v, dtype=float) for c, v in data.items()}, index=index)


@st.composite
def stream_samples(draw, max_size: int = 40) -> dict[str, pd.DataFrame]:
    """One frame per collection (sorted, unique times); a stream may be empty."""
    return {s.collection: draw(stream_frame(s, max_size)) for s in STREAMS}
