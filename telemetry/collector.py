"""The collector: Prometheus -> MongoDB, one document per stream per tick (``pycemaker collect``).

Ticks sit on a fixed grid (multiples of ``collect_interval_s`` since the epoch) and every
query is evaluated *at* its tick time, so the Prometheus sample time is the grid point.
A retried tick, a restarted collector and a ``query_range`` backfill therefore produce the
same ``time_series`` for the same instant, and the unique index drops the repeats.

Nothing is lost (see docs/collector.md):

- Every tick's documents go to a write-ahead file (fsynced, telemetry/wal.py) before the
  database; the file is emptied once the database stored them, and replayed at start.
- Prometheus unreachable: each query is retried with backoff within the tick; a tick that
  still fails opens a gap, backfilled with ``query_range`` as soon as Prometheus answers.
- Database down (or unknown at start): once it answers, the newest stored sample (at most
  ``MAX_CATCH_UP`` back) is looked up *before* the waiting file is written, and everything
  from there is backfilled from Prometheus: a crash mid-outage, or samples the full file
  dropped, leave no hole. A restart resumes the same way.

With targets (setting ``collector_targets``, telemetry/targets.py) one query per stream column
per tick answers for every service: each returned series is mapped to its service, and a
service's documents carry its ``service`` field (none for the default service).

A tick's documents are stored with one ``insert_many`` per stream collection for all services
(the write-ahead file is flushed grouped by collection; duplicates skipped by the unique
``(service, time_series)`` index). After each write (a tick, a replay of the file, a backfill
window) the per-step rollups of the steps the new samples touch are recomputed for every service
at once (telemetry/rollups.py: one read per stream, one bulk upsert): at most one step per tick.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from telemetry import rollups, store
from telemetry.catalogue import Stream, to_document
from telemetry.collector_metrics import CollectorMetrics
from telemetry.frames import cadence_for
from telemetry.prometheus import PrometheusClient, PrometheusUnavailable, QueryError, Sample
from telemetry.services import Service, service_named
from telemetry.settings import Settings
from telemetry.store import DatabaseUnavailable
from telemetry.targets import Target, by_service, combined_query
from telemetry.wal import Item, WriteAheadLog, write_grouped

log = logging.getLogger(__name__)
UTC = dt.timezone.utc

#: Pauses between attempts of one query while Prometheus is unreachable (bounded by the tick).
RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0)
#: Pauses between attempts to reach a database that is down (each attempt costs mongo_timeout_ms).
DB_RETRY_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
#: Oldest point a restarted collector backfills from the newest stored sample.
MAX_CATCH_UP = dt.timedelta(hours=24)
#: Span of one backfill step (its documents are queued before the next step is queried).
BACKFILL_WINDOW = dt.timedelta(hours=6)
#: Columns whose absent series means zero, not missing (see :func:`stream_values`).
ZERO_WHEN_ABSENT = frozenset({"req_fail"})

Document = dict[str, Any]


# --- what to query --------------------------------------------------------------------


@dataclass(frozen=True)
class StreamQuery:
    """The PromQL behind one stream: frame column -> expression (with targets, one query for all of them)."""

    stream: Stream
    exprs: Mapping[str, str]


def stream_queries(settings: Settings, targets: Sequence[Target] | None = None) -> tuple[StreamQuery, ...]:
    """Each configured stream's queries; with targets (default: the settings'), each combined for all of them."""
    targets = settings.targets() if targets is None else targets
    by_column = {
        "cpu": settings.query_cpu,
        "memory": settings.query_memory,
        "req_success": settings.query_success,
        "req_fail": settings.query_fail,
        "response_time": settings.query_response_time,
    }
    if targets:
        by_column = {c: combined_query(expr, targets) for c, expr in by_column.items()}
    return tuple(StreamQuery(s, {c: by_column[c] for c in s.columns}) for s in settings.stream_set)


def stream_values(
    stream: Stream, found: Mapping[str, Sample | None]
) -> tuple[dt.datetime, dict[str, float]] | None:
    """One stream's values at one instant, or None when the stream is missing there.

    Every column must be present, except ``req_fail``: Micrometer creates the
    ``outcome="SERVER_ERROR"`` series only at the first server error, so an app that has not
    failed has no such series and the fail query is empty. Both queries are evaluated at the
    same instant on the same Prometheus, and a present success rate proves the target was
    scraped, so an empty fail result with a present success result is 0 failures/s. A
    missing success rate (or a fail query that errored) is missing data.
    """
    values: dict[str, float] = {}
    at: dt.datetime | None = None
    for column in stream.columns:
        sample = found.get(column)
        if sample is None:
            if column in ZERO_WHEN_ABSENT and column in found:
                values[column] = 0.0
                continue
            return None
        values[column] = sample.value
        at = at or sample.time
    return (at, values) if at is not None else None


# --- the grid -------------------------------------------------------------------------


def _millis(t: dt.datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return round(t.timestamp() * 1000)


def _from_millis(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=ms)


def grid_floor(t: dt.datetime, interval_s: float) -> dt.datetime:
    """The latest grid point at or before ``t``."""
    step = round(interval_s * 1000)
    return _from_millis(_millis(t) // step * step)


def grid_ceil(t: dt.datetime, interval_s: float) -> dt.datetime:
    """The earliest grid point at or after ``t``."""
    step = round(interval_s * 1000)
    return _from_millis(-(-_millis(t) // step) * step)


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time with a zone (``2024-05-01T10:00Z``) -> UTC; a time without a zone is refused."""
    t = dt.datetime.fromisoformat(text.strip())
    if t.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; add Z or +00:00")
    return t.astimezone(UTC)


# --- the collector --------------------------------------------------------------------


class Backoff:
    """When the next attempt may start, after consecutive failures."""

    def __init__(self, delays_s: Sequence[float], clock: Callable[[], float]) -> None:
        self.delays_s = tuple(delays_s) or (0.0,)
        self.clock = clock
        self.failures = 0
        self._next = 0.0

    def ready(self) -> bool:
        return self.clock() >= self._next

    def failed(self) -> float:
        delay = self.delays_s[min(self.failures, len(self.delays_s) - 1)]
        self.failures += 1
        self._next = self.clock() + delay
        return delay

    def reset(self) -> None:
        self.failures = 0
        self._next = 0.0


@dataclass(frozen=True)
class TickReport:
    time: dt.datetime
    #: Documents this tick produced (0..4 per service).
    collected: int
    #: New documents stored during this tick (backlog and backfills included).
    written: int
    #: Collections with no data at this tick (with targets: ``service/collection``).
    missing: tuple[str, ...]
    #: Documents still waiting for the database.
    pending: int


class Collector:
    """Queries Prometheus on the tick grid and stores the four streams."""

    def __init__(
        self,
        settings: Settings,
        client: PrometheusClient,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
        db_retry_delays_s: Sequence[float] = DB_RETRY_DELAYS_S,
    ) -> None:
        if settings.collect_interval_s <= 0:
            raise ValueError("collect_interval_s must be positive")
        self.settings = settings
        self.client = client
        self.db = db
        self.interval_s = settings.collect_interval_s
        self.targets: tuple[Target, ...] = settings.targets()
        #: The services collected, keyed by name: the targets', or the default service alone.
        self.services: dict[str, Service] = {
            t.service: service_named(t.service, settings.default_service) for t in self.targets
        } or {settings.default_service: Service(settings.default_service, True)}
        self.queries = stream_queries(settings, self.targets)
        self.wal = WriteAheadLog(settings.collector_spill_path, settings.collector_spill_max_bytes)
        self.metrics = CollectorMetrics()
        self.metrics.wal_max_bytes.set(self.wal.max_bytes)
        self._cuts = settings.cuts()
        self._clock = clock
        self._sleep = sleep
        self._retry_delays_s = tuple(retry_delays_s)
        self._db_retry = Backoff(db_retry_delays_s, clock)
        self._indexed = False
        self._gap_since: dt.datetime | None = None
        #: Look up the newest stored sample at the next write, and backfill from it (start, database back).
        self._check_store = False
        #: Documents backfills have stored (a tick reports its share).
        self._backfill_stored = 0
        self._missing: tuple[str, ...] | None = None
        self._reported: set[str] = set()
        #: Oldest and newest sample stored since the rollups were last updated (None: nothing new).
        #: Per service name (None: the default service), the span of samples stored since its rollups were updated.
        self._rollup_spans: dict[str | None, tuple[dt.datetime, dt.datetime]] = {}
        self._rollup_lock = threading.Lock()
        #: Set while :meth:`run`'s rollup thread works: a write then only wakes it (the tick never waits for rows).
        self._rollup_wake: threading.Event | None = None
        self._cadence = cadence_for(settings.collect_interval_s, settings)
        self._observe()

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), UTC)

    # --- one instant -------------------------------------------------------------------

    def tick(self, at: dt.datetime) -> TickReport:
        """Query every stream at ``at`` (a grid point), write the documents ahead, store what waits, fill gaps."""
        deadline = self._clock() + 0.8 * self.interval_s
        answered = True
        try:
            items, missing = self._collect_at(at, deadline)
        except PrometheusUnavailable as exc:
            answered = False
            if self._gap_since is None:
                log.warning("%s; backfilling from %s once it answers", exc, at.isoformat())
                self._gap_since = at
            items, missing = [], tuple(self._missing_name(n, q.stream) for n in self.services for q in self.queries)
        self._report_missing(missing)
        self._append(items)
        written = self.flush()
        if answered and self._gap_since is not None and not self._db_retry.failures:
            written += self._fill_gap(self._gap_since, at)
        self.metrics.samples.inc(len(items))
        self._count_by_service(items, missing)
        self.metrics.last_tick.set(at.timestamp())
        self._observe()
        return TickReport(at, len(items), written, missing, len(self.wal))

    def _collect_at(self, at: dt.datetime, deadline: float) -> tuple[list[Item], tuple[str, ...]]:
        """One round: one query per stream column (for every service at once), then each service's documents."""
        items: list[Item] = []
        missing: list[str] = []
        for query in self.queries:
            found: dict[str, dict[str, Sample | None]] = {name: {} for name in self.services}
            for column, expr in query.exprs.items():
                try:
                    per_service = self._query(expr, at, deadline)
                except QueryError as exc:
                    self._report_once(str(exc))
                    continue
                for name, sample in per_service.items():
                    found[name][column] = sample
            for name in self.services:
                point = stream_values(query.stream, found[name])
                if point is None:
                    missing.append(self._missing_name(name, query.stream))
                else:
                    items.append(self._item(query.stream, name, *point))
        return items, tuple(missing)

    def _query(self, expr: str, at: dt.datetime, deadline: float) -> dict[str, Sample | None]:
        """Each service's value of ``expr`` at ``at`` (None: no series); a service left out has no usable answer."""
        for delay in (*self._retry_delays_s, None):
            try:
                if not self.targets:
                    return {name: self.client.query(expr, at) for name in self.services}
                return self._per_service(expr, self.client.query_series(expr, at), None)
            except PrometheusUnavailable:
                if delay is None or self._clock() + delay > deadline:
                    raise
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _per_service(self, expr: str, series: Sequence[tuple[Mapping[str, str], Any]], absent: Any) -> dict[str, Any]:
        """A combined query's series -> service -> value (``absent`` for a target with no series)."""
        found, several = by_service(series)
        for name in several:
            self._report_once(
                f"query {expr!r} returned several series for service {name!r}; "
                "aggregate the query (sum(...), avg(...)) or narrow the target's selector"
            )
        return {name: found.get(name, absent) for name in self.services if name not in several}

    def _item(self, stream: Stream, service: str, at: dt.datetime, values: Mapping[str, float]) -> Item:
        doc = to_document(stream, at, values, self._cuts[stream.flag])
        field = self.services[service].field()
        if field is not None:
            doc["service"] = field
        return stream.collection, doc

    def _missing_name(self, service: str, stream: Stream) -> str:
        return f"{service}/{stream.collection}" if self.targets else stream.collection

    def _count_by_service(self, items: Sequence[Item], missing: Sequence[str]) -> None:
        """Per-service metrics (bounded: the configured targets, or the default service)."""
        default = next(iter(self.services))
        counts = dict.fromkeys(self.services, 0)
        for _, doc in items:
            counts[doc.get("service") or default] += 1
        gaps = dict.fromkeys(self.services, 0)
        for name in missing:
            gaps[name.split("/", 1)[0] if self.targets else default] += 1
        for name, count in counts.items():
            self.metrics.service_samples.labels(name).inc(count)
            self.metrics.service_missing.labels(name).set(gaps[name])

    # --- an interval ---------------------------------------------------------------------

    def backfill(self, start: dt.datetime, end: dt.datetime, *, stop_if_db_down: bool = False) -> int:
        """Store every stream over the grid points in ``[start, end)`` with ``query_range``.

        Returns the number of documents found (already stored ones are skipped on write).
        Backfilled documents go straight to the database (Prometheus still holds them), or to
        the write-ahead file while it is down; ``stop_if_db_down`` stops at the first window
        the database refused instead. Raises :class:`PrometheusUnavailable` if Prometheus does
        not answer after retries.
        """
        first = grid_ceil(start, self.interval_s)
        last = _from_millis(_millis(end) - 1)
        found_total = 0
        # Window by window, so a long backfill never holds more than one window in memory.
        while first <= last and not (stop_if_db_down and self._db_retry.failures):
            window_last = min(last, grid_floor(first + BACKFILL_WINDOW, self.interval_s))
            found_total += self._backfill_window(first, window_last)
            first = window_last + dt.timedelta(seconds=self.interval_s)
        return found_total

    def _backfill_window(self, first: dt.datetime, last: dt.datetime) -> int:
        items: list[Item] = []
        for query in self.queries:
            found: dict[str, dict[str, dict[dt.datetime, Sample]]] = {name: {} for name in self.services}
            for column, expr in query.exprs.items():
                try:
                    per_service = self._range(expr, first, last)
                except QueryError as exc:
                    self._report_once(str(exc))
                    continue
                for name, samples in per_service.items():
                    found[name][column] = {s.time: s for s in samples}
            primary = query.stream.columns[0]
            for name, columns in found.items():
                for t in sorted(columns.get(primary, {})):
                    point = stream_values(query.stream, {c: by_time.get(t) for c, by_time in columns.items()})
                    if point is not None:
                        items.append(self._item(query.stream, name, *point))
        self._backfill_stored += self._store_directly(items)
        return len(items)

    def _range(self, expr: str, first: dt.datetime, last: dt.datetime) -> dict[str, list[Sample]]:
        """Each service's samples of ``expr`` over the grid points ``first..last``."""
        for delay in (*self._retry_delays_s, None):
            try:
                if not self.targets:
                    return {name: self.client.query_range(expr, first, last, self.interval_s) for name in self.services}
                series = self.client.query_range_series(expr, first, last, self.interval_s)
                return self._per_service(expr, series, [])
            except PrometheusUnavailable:
                if delay is None:
                    raise
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _fill_gap(self, since: dt.datetime, until: dt.datetime) -> int:
        """Backfill ``[since, until)``; the gap closes only once all of it is stored. Returns the new documents."""
        before = self._backfill_stored
        try:
            found = self.backfill(since, until, stop_if_db_down=True)
        except PrometheusUnavailable as exc:
            log.warning("backfill from %s postponed: %s", since.isoformat(), exc)
            return self._backfill_stored - before
        new = self._backfill_stored - before
        if self._db_retry.failures:
            log.warning("backfill from %s postponed: the database stopped answering", since.isoformat())
            return new
        log.info("backfilled %d samples from %s to %s (%d new)", found, since.isoformat(), until.isoformat(), new)
        self._gap_since = None
        return new

    def resume_from_store(self) -> None:
        """At the next write, find the newest stored sample and backfill from it: a restart leaves no hole."""
        self._check_store = True

    def _newest_stored(self) -> dt.datetime | None:
        """The oldest of the services' streams' newest samples within ``MAX_CATCH_UP`` (None: none that recent)."""
        now = self.now()
        latest = [
            store.newest_sample_time(self.db, q.stream, before=now, after=now - MAX_CATCH_UP, service=service)
            for service in self.services.values()
            for q in self.queries
        ]
        known = [t for t in latest if t is not None]
        return min(known) if known else None

    def _open_gap_from_store(self) -> None:
        since = self._newest_stored()
        self._check_store = False
        if since is None or self.now() - since <= dt.timedelta(seconds=2 * self.interval_s):
            return
        if self._gap_since is None or since < self._gap_since:
            self._gap_since = since
            log.info("backfilling from %s, the newest stored sample, once Prometheus answers", since.isoformat())

    # --- the database --------------------------------------------------------------------

    def flush(self, force: bool = False) -> int:
        """Store the write-ahead file unless the database is in backoff; returns the new documents stored.

        After a failure (and at start), the newest stored sample is looked up first, before the
        file is written: everything after it is backfilled from Prometheus.
        """
        if not (force or self._db_retry.ready()) or not (len(self.wal) or self._check_store):
            return 0
        try:
            self._ensure_indexes()
            if self._check_store:
                self._open_gap_from_store()
            written = self.wal.flush(self._write)
        except (DatabaseUnavailable, PyMongoError) as exc:
            self._database_failed(exc)
            return 0
        self._database_answered()
        self._update_rollups()
        return written

    def _store_directly(self, items: Sequence[Item]) -> int:
        """Backfilled documents: into the database, or into the write-ahead file if it does not answer."""
        if not items:
            return 0
        if not self._db_retry.failures:
            try:
                self._ensure_indexes()
                written = write_grouped(self._write, items)
            except (DatabaseUnavailable, PyMongoError) as exc:
                self._database_failed(exc)
            else:
                self._database_answered()
                self._update_rollups()
                return written
        self._append(items)
        return 0

    def _update_rollups(self) -> None:
        """Recompute the rollup steps the samples stored since the last update touch (telemetry/rollups.py): inline,
        or, while :meth:`run` ticks, by its rollup thread, so that a tick never waits for the rows (at a thousand
        services the first tick of a minute closes a thousand steps)."""
        if not self.settings.rollups:
            with self._rollup_lock:
                self._rollup_spans.clear()
            return
        if self._rollup_wake is not None:
            self._rollup_wake.set()
            return
        self._compute_rollups()

    def _compute_rollups(self) -> None:
        """The pending spans' rows, each service from one interval before its oldest new sample (the first tick of
        a step also closes the step before), every service at once: one read per stream and one bulk upsert for
        all of them at a tick (:func:`telemetry.rollups.update_services`). A failure keeps the spans for the next
        write (the samples are stored; only their rows wait)."""
        with self._rollup_lock:
            pending, self._rollup_spans = self._rollup_spans, {}
        if not pending:
            return
        now = self.now()
        back = dt.timedelta(seconds=self.interval_s)
        spans = [
            rollups.Span(service_named(name, self.settings.default_service), first - back, last, max(now, last))
            for name, (first, last) in pending.items()
        ]
        try:
            rollups.update_services(self.db, self.settings, spans, self._cadence)
        except (DatabaseUnavailable, PyMongoError) as exc:
            oldest = min(first for first, _ in pending.values())
            log.warning("rollups of %d services from %s not updated (%s); retried at the next write", len(spans),
                        oldest.isoformat(), exc)
            for name, (first, last) in pending.items():
                self._note_span(name, first, last)

    def _rollup_loop(self, wake: threading.Event, done: threading.Event) -> None:
        while True:
            wake.wait()
            wake.clear()
            try:
                self._compute_rollups()
            except Exception:  # noqa: BLE001 - the thread must outlive one bad pass; the spans wait for the next
                log.exception("rollup pass failed; retried at the next write")
            if done.is_set():
                return

    def _append(self, items: Sequence[Item]) -> None:
        dropped = self.wal.append(items)
        if dropped:
            self.metrics.wal_dropped.inc(dropped)
            self._check_store = True  # what was dropped is backfilled from the newest stored sample

    def _ensure_indexes(self) -> None:
        if not self._indexed:
            store.ensure_indexes(self.db)
            self._indexed = True

    def _database_failed(self, exc: Exception) -> None:
        delay = self._db_retry.failed()
        self._check_store = True
        self.metrics.database_up.set(0)
        level = logging.WARNING if self._db_retry.failures == 1 else logging.DEBUG
        log.log(level, "database unavailable (%s): %d samples wait in %s; next try in %.0f s", exc, len(self.wal), self.wal.path, delay)

    def _database_answered(self) -> None:
        if self._db_retry.failures:
            log.info("database back after %d failed tries: stored the waiting samples", self._db_retry.failures)
        self._db_retry.reset()
        self.metrics.database_up.set(1)

    def _write(self, collection: str, docs: list[Document]) -> int:
        try:
            written = store.insert_idempotent(self.db, collection, docs).inserted
            self._note_written(docs)
            return written
        except BulkWriteError as exc:
            # Not a duplicate and not an outage: the server refuses these documents, and always will.
            errors = exc.details.get("writeErrors", [])
            log.error(
                "%s refused %d documents (%s); dropping them",
                collection,
                len(errors),
                errors[0].get("errmsg") if errors else exc,
            )
            return int(exc.details.get("nInserted", 0))

    def _note_written(self, docs: Sequence[Document]) -> None:
        for doc in docs:
            at = doc.get("time_series")
            if not isinstance(at, dt.datetime):
                continue
            self._note_span(doc.get("service"), at, at)

    def _note_span(self, name: str | None, first: dt.datetime, last: dt.datetime) -> None:
        with self._rollup_lock:
            span = self._rollup_spans.get(name)
            self._rollup_spans[name] = (first, last) if span is None else (min(first, span[0]), max(last, span[1]))

    def _observe(self) -> None:
        self.metrics.wal_samples.set(len(self.wal))
        self.metrics.wal_bytes.set(self.wal.size_bytes)
        self.metrics.wal_full.set(1 if self.wal.full else 0)

    # --- running -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Tick on the grid until ``stop`` is set."""
        self.resume_from_store()
        self.flush(force=True)  # replay what an earlier run left in the write-ahead file
        self._observe()
        at = grid_ceil(self.now(), self.interval_s)
        log.info("collecting from %s every %g s", self.client.base_url, self.interval_s)
        if self.targets:
            log.info("%d targets: %s", len(self.targets), "; ".join(str(t) for t in self.targets))
        # Query a moment after each grid point: a scrape stamped just before it may still be in flight.
        settle_s = min(0.5, 0.1 * self.interval_s)
        wake, done = threading.Event(), threading.Event()
        worker = threading.Thread(target=self._rollup_loop, args=(wake, done), name="collector-rollups", daemon=True)
        self._rollup_wake = wake
        worker.start()
        try:
            self._tick_until(stop, at, settle_s)
        finally:
            self._rollup_wake = None
            done.set()
            wake.set()
            worker.join(timeout=120)
            self._compute_rollups()  # what the thread's last pass did not see

    def _tick_until(self, stop: threading.Event, at: dt.datetime, settle_s: float) -> None:
        while not stop.is_set():
            wait = (at - self.now()).total_seconds() + settle_s
            if wait > 0 and stop.wait(wait):
                break
            current = grid_floor(self.now(), self.interval_s)
            if current > at:
                # Fell behind (a slow flush, a suspended host): skip ahead, backfill the skipped points.
                self._gap_since = self._gap_since or at
                at = current
            report = self.tick(at)
            log.debug(
                "tick %s: %d collected, %d written, %d pending",
                at.isoformat(),
                report.collected,
                report.written,
                report.pending,
            )
            at += dt.timedelta(seconds=self.interval_s)

    def close(self) -> None:
        """Store what waits if the database answers; the rest stays in the write-ahead file for the next run."""
        self.flush(force=True)
        self._observe()
        if len(self.wal):
            log.warning("%d samples wait in %s; the next `pycemaker collect` stores them", len(self.wal), self.wal.path)

    # --- logging -------------------------------------------------------------------------

    def _report_missing(self, missing: tuple[str, ...]) -> None:
        """Log when the set of missing streams changes, not every tick."""
        if missing != self._missing:
            if missing:
                log.info("no data at this tick for: %s", ", ".join(missing))
            elif self._missing is not None:
                log.info("every stream present again")
            self._missing = missing

    def _report_once(self, message: str) -> None:
        if message not in self._reported:
            self._reported.add(message)
            log.error("%s", message)


__all__ = [
    "Collector",
    "StreamQuery",
    "TickReport",
    "grid_ceil",
    "grid_floor",
    "parse_time",
    "stream_queries",
    "stream_values",
]
