"""MongoDB access: connecting (a real MongoDB or the embedded SecantusDB), writing and reading samples.

Every read returns timezone-aware UTC datetimes. BSON dates carry no zone and are
UTC by definition, so a "naive" datetime written by another tool reads back as UTC.
Writes are idempotent: each collection has a unique index on ``(service, time_series)``, and a
duplicate sample is skipped, so a retried batch never duplicates. Every read is of one service
(:class:`telemetry.services.Service`; the default one unless told): samples without a
``service`` field belong to the default service.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import socket
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from bson.codec_options import CodecOptions
from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from telemetry.catalogue import INCIDENTS_COLLECTION, STREAMS, Stream
from telemetry.services import DEFAULT_SERVICE, Service
from telemetry.settings import Settings

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
DUPLICATE_KEY = 11000


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message names the host, never the password."""


def embedded_uri(settings: Settings) -> str:
    return f"mongodb://127.0.0.1:{settings.embedded_port}/"


def _port_open(port: int, timeout: float = 0.2) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def resolve_uri(settings: Settings, *, autostart: bool = True) -> str:
    """The URI to connect to.

    ``MONGO_URI`` when set. Otherwise the embedded server on its loopback port: if no
    process hosts it yet and ``autostart`` is true, this process starts it (see
    :mod:`telemetry.embedded`), so a single command on a fresh clone just works.
    """
    if settings.mongo_uri:
        return settings.mongo_uri
    if not _port_open(settings.embedded_port) and autostart:
        from telemetry.embedded import start_embedded

        start_embedded(settings)
    return embedded_uri(settings)


#: How long a connection attempt or heartbeat may take before the server counts as down (see :func:`connect`).
HEARTBEAT_TIMEOUT_MS = 20_000


def connect(
    settings: Settings, *, autostart: bool = True, check: bool = True, socket_timeout_ms: int | None = None
) -> Database:
    """A handle on the pycemaker database. Raises :class:`DatabaseUnavailable` quickly if down.

    ``socket_timeout_ms``: how long one operation may wait for the server (default 30 s); the
    trainer, which reads a week in one go, passes ``train_read_timeout_s``.
    """
    uri = resolve_uri(settings, autostart=autostart)
    client: MongoClient = MongoClient(
        uri,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        # Also the monitor's heartbeat timeout: a busy server that answers its heartbeat late must not be marked
        # down (pymongo then cancels every operation in flight). A down server refuses at once, and server
        # selection still gives up after mongo_timeout_ms.
        connectTimeoutMS=max(settings.mongo_timeout_ms, HEARTBEAT_TIMEOUT_MS),
        socketTimeoutMS=max(socket_timeout_ms or 30_000, settings.mongo_timeout_ms),
        tz_aware=True,
        tzinfo=UTC,
        appname="pycemaker",
    )
    db = client.get_database(
        settings.database, codec_options=CodecOptions(tz_aware=True, tzinfo=UTC)
    )
    if check:
        ping(db)
    return db


def ping(db: Database) -> None:
    """Raise :class:`DatabaseUnavailable` unless the server answers."""
    try:
        db.client.admin.command("ping")
    except PyMongoError as exc:
        raise unavailable(db, exc) from exc


def unavailable(db: Database, exc: Exception) -> DatabaseUnavailable:
    hosts = ", ".join(f"{h}:{p}" for h, p in db.client.topology_description.server_descriptions())
    reason = type(exc).__name__
    return DatabaseUnavailable(f"MongoDB at {hosts or 'unknown host'} is unreachable ({reason})")


#: Indexes of the single-service layout, replaced by their per-service forms (unique keys must include the service).
LEGACY_UNIQUE_INDEXES = ("time_series_unique", "start_unique")


def ensure_indexes(db: Database) -> None:
    """Per stream: unique ``(service, time_series)`` (idempotent writes, one service's range reads) and
    ``time_series`` (reads across services by time); incidents: unique ``(service, start)``. Idempotent;
    a database written before services existed has its old unique indexes replaced."""
    for collection in [*(s.collection for s in STREAMS), INCIDENTS_COLLECTION]:
        existing = db[collection].index_information()
        for name in LEGACY_UNIQUE_INDEXES:
            if name in existing:
                db[collection].drop_index(name)
    for stream in STREAMS:
        db[stream.collection].create_index(
            [("service", ASCENDING), ("time_series", ASCENDING)], unique=True, name="service_time_series_unique"
        )
        db[stream.collection].create_index([("time_series", ASCENDING)], name="time_series")
    db[INCIDENTS_COLLECTION].create_index([("service", ASCENDING), ("start", ASCENDING)], unique=True, name="service_start_unique")


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    duplicates: int


def insert_idempotent(db: Database, collection: str, docs: Sequence[Mapping[str, Any]]) -> WriteResult:
    """Insert documents, skipping those already stored (same unique key)."""
    if not docs:
        return WriteResult(0, 0)
    try:
        result = db[collection].insert_many([dict(d) for d in docs], ordered=False)
        return WriteResult(len(result.inserted_ids), 0)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
        if other:
            raise
        return WriteResult(exc.details.get("nInserted", len(docs) - len(errors)), len(errors))
    except PyMongoError as exc:
        raise unavailable(db, exc) from exc


def _as_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware (UTC)")
    return value.astimezone(UTC)


def read_stream(
    db: Database, stream: Stream, start: dt.datetime, end: dt.datetime, service: Service = DEFAULT_SERVICE
) -> pd.DataFrame:
    """Samples of one stream of ``service`` with ``start <= time < end``: a UTC DatetimeIndex, one column per value.

    Missing values (null or absent fields) read as NaN; duplicates keep the first.
    """
    query = {"time_series": {"$gte": _as_utc(start), "$lt": _as_utc(end)}}
    projection = {"_id": 0, "time_series": 1, **{f: 1 for f in stream.fields}}
    try:
        docs = [
            doc
            for where in service.filters()
            for doc in db[stream.collection].find({**where, **query}, projection).sort("time_series", ASCENDING)
        ]
    except PyMongoError as exc:
        raise unavailable(db, exc) from exc
    return samples_frame(stream, docs)


def read_window(db: Database, stream: Stream, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """Every service's raw documents of ``stream`` with ``start <= time < end`` (``service``, ``time_series`` and
    the stream's fields), unsorted: one query on the ``time_series`` index, for callers that split them by service."""
    query = {"time_series": {"$gte": _as_utc(start), "$lt": _as_utc(end)}}
    projection = {"_id": 0, "service": 1, "time_series": 1, **{f: 1 for f in stream.fields}}
    try:
        return list(db[stream.collection].find(query, projection))
    except PyMongoError as exc:
        raise unavailable(db, exc) from exc


def samples_frame(stream: Stream, docs: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    docs = list(docs)
    index = pd.DatetimeIndex([d["time_series"] for d in docs], name="time")
    index = index.tz_localize(UTC) if index.tz is None else index.tz_convert(UTC)
    data = {
        column: np.array([number(d.get(field)) for d in docs], dtype=float)
        for field, column in stream.fields.items()
    }
    frame = pd.DataFrame(data, index=index)
    frame = frame[~frame.index.duplicated(keep="first")]
    return frame if frame.index.is_monotonic_increasing else frame.sort_index()


def number(value: Any) -> float:
    """A stored field as a float (NaN: null, absent or not a number)."""
    try:
        return float(value) if value is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


@dataclass(frozen=True)
class SampleWindow:
    """Samples of one service already read over ``[start, end)``, keyed by collection: :func:`read_samples` answers
    an interval within it from these, without a query (serving/minute_cache.py reads the newest step's samples to
    find the newest sample times, then frames that step from them)."""

    start: dt.datetime
    end: dt.datetime
    samples: Mapping[str, pd.DataFrame]

    def within(self, stream: Stream, start: dt.datetime, end: dt.datetime) -> pd.DataFrame | None:
        """``stream``'s samples over ``[start, end)`` (None: not held, or not all of the interval)."""
        frame = self.samples.get(stream.collection)
        if frame is None or start < self.start or end > self.end:
            return None
        return frame[(frame.index >= start) & (frame.index < end)]


def read_samples(
    db: Database, start: dt.datetime, end: dt.datetime, streams: Sequence[Stream] = STREAMS,
    service: Service = DEFAULT_SERVICE, window: SampleWindow | None = None,
) -> dict[str, pd.DataFrame]:
    """The samples of ``service``'s ``streams`` (default: every stream) over ``[start, end)``, keyed by collection
    (from ``window`` where it holds them: it must be ``service``'s)."""
    out = {}
    for stream in streams:
        held = window.within(stream, start, end) if window is not None else None
        out[stream.collection] = held if held is not None else read_stream(db, stream, start, end, service)
    return out


#: Widths of the successive windows :func:`newest_sample_time` searches back through (the last repeats).
NEWEST_SEARCH_WINDOWS = (
    dt.timedelta(minutes=10),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=1),
    dt.timedelta(hours=3),
)
#: Without ``after``, how far back the windows go before one last query without a lower bound.
NEWEST_SEARCH_LOOK_BACK = dt.timedelta(days=7)


def newest_sample_time(
    db: Database, stream: Stream, before: dt.datetime | None = None, after: dt.datetime | None = None,
    service: Service = DEFAULT_SERVICE,
) -> dt.datetime | None:
    """The newest sample of ``service``'s ``stream`` with ``after < time <= before`` (None: there is none).

    ``before`` None: no upper bound (the windows count back from now). The search steps back
    through windows of :data:`NEWEST_SEARCH_WINDOWS` (10 min, 30 min, 1 h, then 3 h at a time)
    and stops at the first holding a sample, down to ``after``; without ``after``, down to
    :data:`NEWEST_SEARCH_LOOK_BACK`, then once without a lower bound. A sorted ``find_one`` costs
    the embedded server (SecantusDB) every document in its range, not one index step: it decodes
    and sorts them all before the limit (~75 us a document, 3.5 s per stream over 3 days). So no
    query here covers more than 3 h (but that last one), and an empty window costs one index lookup.
    """
    anchor = _as_utc(before) if before is not None else dt.datetime.now(UTC)
    floor = _as_utc(after) if after is not None else anchor - NEWEST_SEARCH_LOOK_BACK
    upper = _as_utc(before) if before is not None else None
    widths = itertools.chain(NEWEST_SEARCH_WINDOWS, itertools.repeat(NEWEST_SEARCH_WINDOWS[-1]))
    edge = anchor
    while edge > floor:
        lower = max(floor, edge - next(widths))
        found = _newest(db, stream, lower, upper, service)
        if found is not None:
            return found
        edge = upper = lower
    return None if after is not None else _newest(db, stream, None, upper, service)


def _newest(
    db: Database, stream: Stream, after: dt.datetime | None, before: dt.datetime | None, service: Service = DEFAULT_SERVICE
) -> dt.datetime | None:
    bounds: dict[str, dt.datetime] = {}
    if after is not None:
        bounds["$gt"] = after
    if before is not None:
        bounds["$lte"] = before
    found = []
    try:
        for where in service.filters():
            doc = db[stream.collection].find_one(
                {**where, "time_series": bounds} if bounds else where, {"_id": 0, "time_series": 1},
                sort=[("time_series", DESCENDING)],
            )
            if doc:
                found.append(doc["time_series"].astimezone(UTC))
    except PyMongoError as exc:
        raise unavailable(db, exc) from exc
    return max(found) if found else None


def newest_sample_times(
    db: Database, before: dt.datetime | None = None, streams: Sequence[Stream] = STREAMS,
    service: Service = DEFAULT_SERVICE,
) -> dict[str, dt.datetime | None]:
    """The newest sample at or before ``before`` (None: any) of each of ``service``'s ``streams``, keyed by collection (None: empty)."""
    return {s.collection: newest_sample_time(db, s, before, service=service) for s in streams}


def recent_spacing_s(
    db: Database, streams: Sequence[Stream] = STREAMS, samples: int = 20,
    newest_times: Mapping[str, dt.datetime | None] | None = None, service: Service = DEFAULT_SERVICE,
) -> float | None:
    """The slowest stream's median spacing between its newest samples (up to ``samples``), in seconds (None: too few).

    Bounded reads: the last hour before the newest sample, widened to a day or a week only for sparse data.
    ``newest_times``: each stream's newest sample by collection, when the caller knows them already.
    """
    spacings = []
    try:
        for stream in streams:
            newest = newest_times[stream.collection] if newest_times is not None else newest_sample_time(db, stream, service=service)
            if newest is None:
                continue
            for span in (dt.timedelta(hours=1), dt.timedelta(days=1), dt.timedelta(days=7)):
                found = [
                    d["time_series"].timestamp()
                    for where in service.filters()
                    for d in db[stream.collection].find(
                        {**where, "time_series": {"$gte": newest - span, "$lte": newest}}, {"_id": 0, "time_series": 1}
                    ).sort("time_series", -1).limit(samples)
                ]
                times = np.array(sorted(found, reverse=True)[:samples])
                if len(times) > 2:
                    spacings.append(float(np.median(-np.diff(times))))
                    break
    except PyMongoError as exc:
        raise unavailable(db, exc) from exc
    return max(spacings) if spacings else None


def data_range(
    db: Database, streams: Sequence[Stream] = STREAMS, service: Service = DEFAULT_SERVICE
) -> tuple[dt.datetime, dt.datetime] | None:
    """The span covered by any of ``service``'s ``streams``: (oldest sample, newest sample), or None if empty."""
    lasts = [t for t in newest_sample_times(db, streams=streams, service=service).values() if t is not None]
    if not lasts:
        return None
    firsts = []
    try:
        for s in streams:
            for where in service.filters():
                first = db[s.collection].find_one(where, {"time_series": 1}, sort=[("time_series", 1)])
                if first:
                    firsts.append(first["time_series"])
    except PyMongoError as exc:
        raise unavailable(db, exc) from exc
    return min(firsts).astimezone(UTC), max(lasts)


def read_incidents(
    db: Database, start: dt.datetime | None = None, end: dt.datetime | None = None, service: Service = DEFAULT_SERVICE
) -> list[dict]:
    """Ground-truth incidents (simulator) of ``service`` overlapping ``[start, end)``, oldest first."""
    query: dict[str, Any] = {}
    if start is not None:
        query["end"] = {"$gte": _as_utc(start)}
    if end is not None:
        query["start"] = {"$lt": _as_utc(end)}
    try:
        found = [d for where in service.filters() for d in db[INCIDENTS_COLLECTION].find({**where, **query}, {"_id": 0})]
    except PyMongoError as exc:
        raise unavailable(db, exc) from exc
    return sorted(found, key=lambda d: d["start"])


@dataclass(frozen=True)
class StreamRange:
    """One service's samples of one stream: the oldest, the newest and how many (within the scanned span)."""

    first: dt.datetime
    last: dt.datetime
    samples: int

    def merged(self, other: "StreamRange") -> "StreamRange":
        """The span of both scans (overlapping scans count their common samples twice: ``samples`` is a bound)."""
        return StreamRange(min(self.first, other.first), max(self.last, other.last), self.samples + other.samples)


#: Most services one listing returns (the aggregation's ``$limit``).
MAX_SERVICES_LISTED = 10_000


def list_services(
    db: Database, streams: Sequence[Stream] = STREAMS, *, since: dt.datetime | None = None,
    until: dt.datetime | None = None, limit: int = MAX_SERVICES_LISTED, default_name: str = "default",
) -> dict[str, dict[str, StreamRange]]:
    """Every service with samples in ``[since, until)`` (None: unbounded), with each of its streams' range,
    keyed by service name then collection; samples without a ``service`` field count as ``default_name``'s.

    One aggregation per stream (``$match`` on the time index, ``$group`` by service, ``$limit``). A scan
    without ``since`` reads every sample once (~25 us each on the embedded server): callers scan once,
    then only the span since their last scan (serving/service_directory.py), and merge.
    """
    bounds: dict[str, dt.datetime] = {}
    if since is not None:
        bounds["$gte"] = _as_utc(since)
    if until is not None:
        bounds["$lt"] = _as_utc(until)
    pipeline: list[dict] = [{"$match": {"time_series": bounds}}] if bounds else []
    pipeline += [
        {"$group": {"_id": "$service", "first": {"$min": "$time_series"}, "last": {"$max": "$time_series"}, "samples": {"$sum": 1}}},
        {"$sort": {"_id": 1}},
        {"$limit": int(limit) + 1},  # + the default service's two spellings (no field, its name)
    ]
    out: dict[str, dict[str, StreamRange]] = {}
    try:
        for stream in streams:
            for row in db[stream.collection].aggregate(pipeline):
                name = row["_id"] if isinstance(row["_id"], str) and row["_id"] else default_name
                found = StreamRange(row["first"].astimezone(UTC), row["last"].astimezone(UTC), int(row["samples"]))
                ranges = out.setdefault(name, {})
                ranges[stream.collection] = ranges[stream.collection].merged(found) if stream.collection in ranges else found
    except PyMongoError as exc:
        raise unavailable(db, exc) from exc
    return dict(sorted(out.items())[:limit])
