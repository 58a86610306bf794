"""Helpers the routes share: intervals, path hours, timestamps in the original's format."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from serving.errors import abort_field

UTC = dt.timezone.utc


def resolve_interval(
    start: dt.datetime | None, end: dt.datetime | None, now: dt.datetime, default: dt.timedelta, max_hours: float
) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` with defaults (end: now; start: end - default), at most ``max_hours`` long."""
    end = end or now
    start = start or end - default
    if end <= start:  # only possible with a default end: the schema checks two given bounds
        abort_field("start", "must be before end (default: now)")
    if end - start > dt.timedelta(hours=max_hours):
        abort_field("start", f"the interval is longer than the maximum of {max_hours:g} hours (max_interval_hours)")
    return start, end


def parse_hours(raw: str, max_hours: float, setting: str) -> float:
    """A compatibility route's ``<hours>`` path segment: a positive number, at most ``max_hours``."""
    try:
        hours = float(raw)
    except ValueError:
        abort_field("hours", "Not a valid number.", location="path")
    if not np.isfinite(hours) or hours <= 0:
        abort_field("hours", "must be a positive number of hours", location="path")
    if hours > max_hours:
        abort_field("hours", f"at most {max_hours:g} hours ({setting})", location="path")
    return hours


def iso_ms(t: pd.Timestamp | dt.datetime) -> str:
    """``2026-03-01T12:00:00.000Z``: what the original's pandas ``to_json(orient="table")`` wrote."""
    t = pd.Timestamp(t).tz_convert(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def nan_to_none(values) -> list:
    arr = np.asarray(values, dtype=float)
    return [None if not np.isfinite(v) else float(v) for v in arr]
