"""``GET /api/v1/health``: observed health per step over an interval."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from flask_smorest import Blueprint
from marshmallow import RAISE

from serving.errors import abort_field
from serving.routes.common import nan_to_none, resolve_interval
from serving.minute_cache import MinuteCache
from serving.runtime import runtime
from serving.schemas import ErrorSchema, HealthQuerySchema, HealthSeriesSchema
from telemetry.catalogue import FLAG_NAMES
from telemetry.health import floor_minute

blp = Blueprint("health", __name__, url_prefix="/api/v1", description="Observed health, as scored from the service's metric streams.")


@blp.route("/health")
@blp.arguments(HealthQuerySchema, location="query", unknown=RAISE, as_kwargs=True)
@blp.response(200, HealthSeriesSchema)
@blp.alt_response(422, schema=ErrorSchema, description="A malformed or inconsistent parameter (named in `errors`).")
@blp.alt_response(503, schema=ErrorSchema, description="The database is unreachable.")
def health(start: dt.datetime | None = None, end: dt.datetime | None = None, step: int = 1):
    """Observed health over an interval

    Health per bucket of `step` minutes (default 1, or the frame step for data coarser than a minute, which
    `step` must then be a multiple of) over `[start, end)` (default: the last hour),
    with the mean flag of each health input and the coverage (share of the bucket's 5-second
    grid points where every configured stream was present). A bucket with no scored minute has
    `health: null`: unknown is never reported as healthy. Health is 1 - sum(flags) / 12 with the
    four streams; a service with fewer scores from those it has (`health` in the status, docs/health.md);
    a bucket at or below `threshold` is `failing`.
    """
    return health_series(runtime().cache, start, end, step)


def health_series(cache: MinuteCache, start: dt.datetime | None, end: dt.datetime | None, step: int = 1) -> dict:
    """The body of ``GET /api/v1/health`` for the service whose minutes ``cache`` holds."""
    rt = runtime()
    now = rt.now()
    start, end = resolve_interval(start, end, now, dt.timedelta(hours=1), rt.settings.max_interval_hours)
    frame_step = cache.step_minutes  # data coarser than a minute is framed at its own step
    step = frame_step if step == 1 else step  # the default bucket: one frame step
    if step % frame_step:
        abort_field("step", f"must be a multiple of this service's {frame_step}-minute frame step")
    frame = cache.frame(start, end, now)
    table = bucket(frame, step, frame_step)
    threshold = rt.settings.failure_threshold
    health_values = table["health"].to_numpy()
    known = health_values[np.isfinite(health_values)]
    points = []
    flags = {name: nan_to_none(table[f"flag_{name}"]) for name in FLAG_NAMES}
    for i, (t, h, c) in enumerate(zip(table.index, nan_to_none(health_values), table["coverage"].to_numpy())):
        points.append(
            {
                "time": t.to_pydatetime(),
                "health": h,
                "coverage": round(float(c), 4),
                "failing": None if h is None else bool(h <= threshold),
                "flags": {name: flags[name][i] for name in FLAG_NAMES},
            }
        )
    return {
        "start": floor_minute(start),
        "end": end,
        "step_seconds": step * 60,
        "threshold": threshold,
        "summary": {
            "known_points": int(len(known)),
            "mean": float(known.mean()) if len(known) else None,
            "min": float(known.min()) if len(known) else None,
            "failing_points": int((known <= threshold).sum()),
        },
        "points": points,
    }


def bucket(frame: pd.DataFrame, step: int, frame_step: int = 1) -> pd.DataFrame:
    """Frame rows (``frame_step`` minutes each) -> buckets of ``step`` minutes from the first row: mean of the known
    rows; coverage is the mean over every row (an unknown row covers nothing)."""
    columns = ["health", "coverage", *(f"flag_{n}" for n in FLAG_NAMES)]
    if step == frame_step or frame.empty:
        return frame[columns]
    first = frame.index[0]
    keys = first + pd.to_timedelta(((frame.index - first) // pd.Timedelta(minutes=step)) * step, unit="min")
    grouped = frame[columns].groupby(keys)
    out = grouped.mean()  # NaN-skipping: the mean of the known minutes
    out["coverage"] = grouped["coverage"].mean()
    return out
