"""Per-step rollups: each service's frame rows (:func:`telemetry.frames.minute_frame`), stored once, read many times.

Reading a week of one service's raw samples costs the embedded server ~17 s (four streams, a
document every 5 s); the same week as frame rows is one document a minute. Each rollup document
(collection ``rollups``) is one frame step of one service framed one way::

    {service (null: the default service), recipe, step, tolerance_s, time, computed_at, cpu, memory, ..., health, coverage, flag_*}

- ``recipe`` names everything a row depends on (the cadence's step and as-of tolerance, the grid,
  the configured streams, the health cut points: :func:`recipe`), so a row is never read for a frame
  made another way; the unique index is ``(service, recipe, time)``.
- A row is computed by :func:`telemetry.frames.minute_frame` itself over whole steps, from the samples
  of ``[step - tolerance, step end)``: the very values the raw path gives (a step depends on no other
  sample). NaN values are left out of the document and read back as NaN.
- Closed steps only: writers recompute the steps their samples touch that have ended (:func:`update`;
  idempotent upserts, so a late or replayed sample just recomputes its step). The step still filling has
  no row: readers compute it from the samples (one step), and the first write after it ends (the
  collector recomputes from one tick back: the first tick of a step closes the step before) stores it.
  So a collector tick costs nothing at 11 ticks of 12, and one step's read and upsert at the first.
- Readers (:func:`read_frame`, used by :func:`telemetry.frames.load_minute_frame`) take the rows of the
  whole steps within ``[start, end)`` and compute the rest (partial first/last steps, the step still
  filling, steps no writer covered) from the samples: the frame is identical to the raw path's.
- Samples written by another tool leave rows stale: ``pycemaker rollup --rebuild`` recomputes a range.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from pymongo import ASCENDING, ReplaceOne
from pymongo.database import Database
from pymongo.errors import PyMongoError

from telemetry import store
from telemetry.catalogue import FLAG_NAMES, ROLLUPS_COLLECTION, STREAM_COLUMNS
from telemetry.fleet_framing import stack_documents, stacked_minute_frames
from telemetry.framing import Cadence, minute_frame, raw_minute_frame, service_cadence
from telemetry.health import floor_step, step_index
from telemetry.services import DEFAULT_SERVICE, Service
from telemetry.settings import Settings

log = logging.getLogger(__name__)
UTC = dt.timezone.utc

#: The columns of a frame row, in the frame's order (stream means, then health, coverage and flags).
FRAME_COLUMNS: tuple[str, ...] = (*STREAM_COLUMNS, "health", "coverage", *(f"flag_{n}" for n in FLAG_NAMES))
#: Steps computed (and upserted) per raw read when rows are written: a day of one-minute steps.
WRITE_CHUNK_STEPS = 1440
#: Missing steps this close together are computed in one raw read (fewer queries, a few more samples).
MERGE_GAP_STEPS = 30


def recipe(settings: Settings, cadence: Cadence) -> str:
    """What a row depends on besides the samples, as a short key: ``1m/15s/g5/<hash of streams and cuts>``."""
    cuts = settings.cuts()
    basis = json.dumps(
        {"streams": [s.name for s in settings.stream_set], "cuts": {k: list(map(float, v)) for k, v in sorted(cuts.items())}},
        sort_keys=True,
    )
    digest = hashlib.sha1(basis.encode()).hexdigest()[:10]
    return f"{cadence.step_minutes}m/{cadence.tolerance_s:g}s/g{settings.grid_seconds:g}/{digest}"


def usable(settings: Settings, cadence: Cadence) -> bool:
    """Whether steps can be framed one by one: the health grid must restart on every step boundary
    (``grid_seconds`` divides the step; the grid is anchored on a frame's first step)."""
    ratio = cadence.step_minutes * 60 / settings.grid_seconds
    return abs(ratio - round(ratio)) < 1e-9


#: Databases whose index this process has ensured (by client and name): a collector tick costs no extra round trip.
_indexed: set[tuple[int, str]] = set()


def ensure_indexes(db: Database) -> None:
    """Unique ``(service, recipe, time)``: one row per step of a service framed one way. Idempotent."""
    key = (id(db.client), db.name)
    if key in _indexed:
        return
    db[ROLLUPS_COLLECTION].create_index(
        [("service", ASCENDING), ("recipe", ASCENDING), ("time", ASCENDING)], unique=True, name="service_recipe_time_unique"
    )
    _indexed.add(key)


def _default_cadence(settings: Settings, cadence: Cadence | None) -> Cadence:
    return cadence or Cadence(1, settings.alignment_tolerance_s)


def _key(service: Service) -> str | None:
    """The ``service`` value of a service's rows: None for the default service (whatever it is called), as its samples."""
    return None if service.default else service.name


def _step(cadence: Cadence) -> dt.timedelta:
    return dt.timedelta(minutes=cadence.step_minutes)


def _utc(t: dt.datetime) -> dt.datetime:
    if t.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    return t.astimezone(UTC)


# --- writing ---------------------------------------------------------------------------------


def write_steps(
    db: Database, settings: Settings, first: dt.datetime, end: dt.datetime, cadence: Cadence | None = None,
    service: Service = DEFAULT_SERVICE, now: dt.datetime | None = None,
) -> int:
    """Recompute and upsert the rows of every step from the one holding ``first`` to the one holding ``end``
    (exclusive of a step starting at ``end``), from the samples; only steps ended by ``now`` (default: the
    clock). Returns the rows written."""
    cadence = _default_cadence(settings, cadence)
    if not usable(settings, cadence):
        return 0
    now = _utc(now) if now is not None else dt.datetime.now(UTC)
    step = _step(cadence)
    tolerance = dt.timedelta(seconds=cadence.tolerance_s)
    steps = _steps(first, end, cadence, now)
    if steps is None:
        return 0
    a, last = steps
    key = recipe(settings, cadence)
    ensure_indexes(db)
    written = 0
    while a <= last:
        b = min(a + step * WRITE_CHUNK_STEPS, last + step)
        samples = store.read_samples(db, a - tolerance, b, settings.stream_set, service)
        frame = minute_frame(samples, a, b, settings, cadence)
        written += _upsert(db, list(_documents(frame, service, key, cadence, now)))
        a = b
    return written


def _steps(first: dt.datetime, end: dt.datetime, cadence: Cadence, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """The first and last step :func:`write_steps` computes over ``[first, end)`` at ``now`` (None: no step)."""
    a = floor_step(_utc(first), cadence.step_minutes)
    last = min(floor_step(_utc(end) - dt.timedelta(microseconds=1), cadence.step_minutes),
               floor_step(now, cadence.step_minutes) - _step(cadence))
    return None if last < a else (a, last)


def first_step_in_memory(first: dt.datetime, cadence: Cadence) -> dt.datetime:
    """The first step :func:`write_samples` computes from samples beginning at ``first`` alone: a step needs the
    samples of [step - tolerance, step end), so the steps before it are read from the store (its edge)."""
    return floor_step(first + dt.timedelta(seconds=cadence.tolerance_s) - dt.timedelta(microseconds=1),
                      cadence.step_minutes) + _step(cadence)


def write_samples(
    db: Database, settings: Settings, samples: Mapping[str, pd.DataFrame], cadence: Cadence | None = None,
    service: Service = DEFAULT_SERVICE, now: dt.datetime | None = None,
) -> int:
    """The rows of samples just stored, none of which the store held before (a simulation, an import): the steps
    whose every input sample lies within these samples' span are computed from ``samples`` themselves (times
    floored to the millisecond, as BSON stores them), without reading them back; the steps at either edge, which
    may also need samples stored before or after, from the store (:func:`write_steps`). Returns the rows written."""
    cadence = _default_cadence(settings, cadence)
    present = {name: frame for name, frame in samples.items() if len(frame)}
    if not present or not usable(settings, cadence):
        return 0
    now = _utc(now) if now is not None else dt.datetime.now(UTC)
    step = _step(cadence)
    first = min(frame.index[0] for frame in present.values()).to_pydatetime()
    last = max(frame.index[-1] for frame in present.values()).to_pydatetime()
    a = first_step_in_memory(first, cadence)
    b = min(floor_step(last, cadence.step_minutes), floor_step(now, cadence.step_minutes))
    if b <= a:
        return update(db, settings, first, last, cadence, service, now)
    written = write_steps(db, settings, first, a, cadence, service, now)
    stored = {name: frame.set_axis(frame.index.floor("ms")) for name, frame in present.items()}
    key = recipe(settings, cadence)
    ensure_indexes(db)
    while a < b:
        chunk_end = min(a + step * WRITE_CHUNK_STEPS, b)
        frame = minute_frame(stored, a, chunk_end, settings, cadence)
        written += _upsert(db, list(_documents(frame, service, key, cadence, now)))
        a = chunk_end
    last_reach = last + dt.timedelta(seconds=cadence.tolerance_s)
    return written + write_steps(db, settings, b, floor_step(last_reach, cadence.step_minutes) + step, cadence, service, now)


def _upsert(db: Database, docs: list[dict]) -> int:
    try:
        if docs:
            db[ROLLUPS_COLLECTION].bulk_write(
                [ReplaceOne({"service": d["service"], "recipe": d["recipe"], "time": d["time"]}, d, upsert=True) for d in docs],
                ordered=False,
            )
    except PyMongoError as exc:
        raise store.unavailable(db, exc) from exc
    return len(docs)


def _documents(frame: pd.DataFrame, service: Service, key: str, cadence: Cadence, now: dt.datetime) -> Iterable[dict]:
    values = {c: frame[c].to_numpy(dtype=float) for c in FRAME_COLUMNS}
    for i, t in enumerate(frame.index.to_pydatetime()):
        doc: dict[str, Any] = {
            "service": _key(service), "recipe": key, "step": cadence.step_minutes, "tolerance_s": cadence.tolerance_s,
            "time": t, "computed_at": now,
        }
        for column, array in values.items():
            if not np.isnan(array[i]):
                doc[column] = float(array[i])
        yield doc


def _update_end(last_sample: dt.datetime, cadence: Cadence, now: dt.datetime) -> dt.datetime:
    """The end of the steps a sample at ``last_sample`` touches (it counts up to the tolerance after it), as of ``now``."""
    last_sample = _utc(last_sample)
    reach = last_sample + dt.timedelta(seconds=cadence.tolerance_s)
    if reach > now:
        reach = max(now, last_sample)
    return floor_step(reach, cadence.step_minutes) + _step(cadence)


def update(
    db: Database, settings: Settings, first_sample: dt.datetime, last_sample: dt.datetime, cadence: Cadence | None = None,
    service: Service = DEFAULT_SERVICE, now: dt.datetime | None = None,
) -> int:
    """After samples in ``[first_sample, last_sample]`` were written: recompute the steps they touch (a sample
    counts at grid points up to the tolerance after it) that ``now`` has ended. Returns the rows written."""
    cadence = _default_cadence(settings, cadence)
    now = _utc(now) if now is not None else dt.datetime.now(UTC)
    end = _update_end(last_sample, cadence, now)
    return write_steps(db, settings, first_sample, end, cadence, service, now)


@dataclass(frozen=True)
class Span:
    """Samples of one service stored in ``[first, last]`` whose rows :func:`update_services` recomputes as of ``now``."""

    service: Service
    first: dt.datetime
    last: dt.datetime
    now: dt.datetime


#: Most steps of one service :func:`update_services` computes with other services' (longer spans: one by one).
BATCH_STEPS = 10
#: Most rows (services x steps) :func:`update_services` computes from one read (~15 samples a stream each in memory).
BATCH_ROWS = 5000


def update_services(db: Database, settings: Settings, spans: Sequence[Span], cadence: Cadence | None = None) -> int:
    """:func:`update` of many services at once, each span as of its own ``now``: the same rows, in fewer round trips.

    Services whose spans cover the same steps (every service at a collector tick) are computed together:
    one read per stream over those steps for all of them (a time range on the ``time_series`` index, no
    service filter; other services' samples are left out), each service's rows from its own samples
    exactly as :func:`write_steps` reads them (:mod:`telemetry.fleet_framing`: the values of
    :func:`minute_frame`, for all of them at once), and one ``bulk_write`` of upserts per
    read (groups of more than :data:`BATCH_ROWS` rows are split). Spans of more than :data:`BATCH_STEPS`
    steps (a long replay or backfill) go service by service through :func:`write_steps`, which reads only
    that service's samples. Returns the rows written.
    """
    cadence = _default_cadence(settings, cadence)
    if not spans or not usable(settings, cadence):
        return 0
    step = _step(cadence)
    groups: dict[tuple[dt.datetime, dt.datetime], list[tuple[Service, dt.datetime]]] = {}
    written = 0
    known: dict[tuple[dt.datetime, dt.datetime, dt.datetime], tuple[dt.datetime, dt.datetime] | None] = {}
    for span in spans:
        now = _utc(span.now)
        # At a tick every span is the same: its steps are worked out once (a step floor costs ~0.1 ms).
        times = (span.first, span.last, now)
        if times not in known:
            known[times] = _steps(span.first, _update_end(span.last, cadence, now), cadence, now)
        steps = known[times]
        if steps is None:
            continue
        if (steps[1] - steps[0]) // step + 1 > BATCH_STEPS:
            written += write_steps(db, settings, steps[0], steps[1] + step, cadence, span.service, now)
        else:
            groups.setdefault(steps, []).append((span.service, now))
    key = recipe(settings, cadence)
    if groups:
        ensure_indexes(db)
    for (a, last), members in groups.items():
        per_read = max(1, BATCH_ROWS // ((last - a) // step + 1))
        for i in range(0, len(members), per_read):
            written += _write_batch(db, settings, a, last + step, cadence, members[i : i + per_read], key)
    return written


def _write_batch(
    db: Database, settings: Settings, a: dt.datetime, b: dt.datetime, cadence: Cadence,
    members: Sequence[tuple[Service, dt.datetime]], key: str,
) -> int:
    """The rows of the steps in ``[a, b)`` of every service in ``members``, from one read per stream."""
    # The ``service`` value of a sample -> (member, rank of the filter): the default service reads its samples
    # without a service field before those naming it, and keeps the first of two at the same time (write_steps).
    wanted: dict[str | None, list[tuple[int, int]]] = {}
    for i, (service, _) in enumerate(members):
        for rank, where in enumerate(service.filters()):
            wanted.setdefault(where["service"], []).append((i, rank))
    start = a - dt.timedelta(seconds=cadence.tolerance_s)
    stacked = {}
    for stream in settings.stream_set:
        stacked[stream.collection] = stack_documents(stream, (
            (i, rank, doc) for doc in store.read_window(db, stream, start, b) for i, rank in wanted.get(doc.get("service"), ())
        ))
    docs_out: list[dict] = []
    for (service, now), frame in zip(members, stacked_minute_frames(stacked, len(members), a, b, settings, cadence)):
        docs_out.extend(_documents(frame, service, key, cadence, now))
    return _upsert(db, docs_out)


def rebuild(
    db: Database, settings: Settings, start: dt.datetime | None = None, end: dt.datetime | None = None,
    cadence: Cadence | None = None, service: Service = DEFAULT_SERVICE, now: dt.datetime | None = None,
) -> int:
    """Recompute ``service``'s rows over ``[start, end)`` (default: its whole data range) from the samples,
    at ``cadence`` (default: the service's own, :func:`telemetry.frames.service_cadence`). Returns the rows written."""
    if start is None or end is None:
        span = store.data_range(db, settings.stream_set, service)
        if span is None:
            return 0
        start = start or span[0]
        end = end or span[1] + dt.timedelta(microseconds=1)
    if _utc(end) <= _utc(start):
        return 0
    cadence = cadence or service_cadence(db, settings, service=service)
    return write_steps(db, settings, start, end, cadence, service, now)


def delete(db: Database, service: Service, start: dt.datetime, end: dt.datetime) -> int:
    """Remove ``service``'s rows (every recipe) with ``start <= time < end``; returns how many."""
    try:
        return db[ROLLUPS_COLLECTION].delete_many(
            {"service": _key(service), "time": {"$gte": _utc(start), "$lt": _utc(end)}}
        ).deleted_count
    except PyMongoError as exc:
        raise store.unavailable(db, exc) from exc


# --- reading ---------------------------------------------------------------------------------


def read_rows(
    db: Database, settings: Settings, start: dt.datetime, end: dt.datetime, cadence: Cadence | None = None,
    service: Service = DEFAULT_SERVICE,
) -> pd.DataFrame:
    """The rows of ``service`` at ``cadence`` with ``start <= time < end``: :data:`FRAME_COLUMNS`, UTC index."""
    cadence = _default_cadence(settings, cadence)
    query = {"service": _key(service), "recipe": recipe(settings, cadence), "time": {"$gte": _utc(start), "$lt": _utc(end)}}
    projection = {"_id": 0, "time": 1, **{c: 1 for c in FRAME_COLUMNS}}
    try:
        docs = list(db[ROLLUPS_COLLECTION].find(query, projection))
    except PyMongoError as exc:
        raise store.unavailable(db, exc) from exc
    index = pd.DatetimeIndex([d["time"] for d in docs], name="time")
    index = index.tz_localize(UTC) if index.tz is None else index.tz_convert(UTC)
    data = {c: np.array([d.get(c, np.nan) for d in docs], dtype=float) for c in FRAME_COLUMNS}
    return pd.DataFrame(data, index=index).sort_index()


def read_frame(
    db: Database, start: dt.datetime, end: dt.datetime, settings: Settings, cadence: Cadence | None = None,
    service: Service = DEFAULT_SERVICE, window: store.SampleWindow | None = None,
) -> pd.DataFrame:
    """:func:`telemetry.frames.minute_frame` of ``service`` over ``[start, end)``: rollup rows for the whole
    steps that have one, the other steps computed from the samples (``window``'s, where it holds them).
    Identical to the raw path's frame."""
    cadence = _default_cadence(settings, cadence)
    start, end = _utc(start), _utc(end)
    steps = step_index(start, end, cadence.step_minutes)
    if not len(steps) or not usable(settings, cadence):
        return raw_minute_frame(db, start, end, settings, cadence, service, window)
    delta = pd.Timedelta(minutes=cadence.step_minutes)
    whole = (steps >= pd.Timestamp(start)) & (steps + delta <= pd.Timestamp(end))
    out = pd.DataFrame(np.nan, index=steps, columns=list(FRAME_COLUMNS))
    have = np.zeros(len(steps), dtype=bool)
    if whole.any():
        rows = read_rows(db, settings, steps[whole][0], steps[whole][-1] + delta, cadence, service)
        positions = steps.get_indexer(rows.index)
        keep = positions >= 0
        positions = positions[keep]
        out.iloc[positions, :] = rows.to_numpy()[keep]
        have[positions] = True
        have &= whole
    for i, j in _runs(np.flatnonzero(~have)):
        run_start = max(steps[i], pd.Timestamp(start)).to_pydatetime()
        run_end = min(steps[j] + delta, pd.Timestamp(end)).to_pydatetime()
        part = raw_minute_frame(db, run_start, run_end, settings, cadence, service, window)
        out.iloc[i : j + 1, :] = part[list(FRAME_COLUMNS)].to_numpy()
    out["coverage"] = out["coverage"].astype(float)
    return out


def _runs(missing: np.ndarray) -> list[tuple[int, int]]:
    """Runs ``(first, last)`` of the positions in ``missing``, merging runs fewer than :data:`MERGE_GAP_STEPS` apart."""
    runs: list[tuple[int, int]] = []
    for position in missing.tolist():
        if runs and position - runs[-1][1] <= MERGE_GAP_STEPS:
            runs[-1] = (runs[-1][0], position)
        else:
            runs.append((position, position))
    return runs


__all__ = [
    "FRAME_COLUMNS", "Span", "recipe", "usable", "ensure_indexes", "write_steps", "update", "update_services", "rebuild", "delete", "read_rows", "read_frame",
]
