"""The collector: Prometheus -> MongoDB, one document per stream per tick (``pycemaker collect``).

Ticks sit on a fixed grid (multiples of ``collect_interval_s`` since the epoch) and every
query is evaluated *at* its tick time, so the Prometheus sample time is the grid point.
A retried tick, a restarted collector and a ``query_range`` backfill therefore produce the
same ``time_series`` for the same instant, and the unique index drops the repeats.

Nothing is lost (see docs/collector.md):

- Prometheus unreachable: each query is retried with backoff within the tick; a tick that
  still fails opens a gap, backfilled with ``query_range`` as soon as Prometheus answers.
- Database down: documents wait in a bounded memory buffer that spills to a JSONL file,
  and are flushed (oldest first) once the database answers again; on exit the buffer is
  spilled, and the next run flushes it.
- Restart: the collector resumes from the newest stored sample (at most ``MAX_CATCH_UP`` back).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from telemetry import store
from telemetry.catalogue import STREAMS, Stream, to_document
from telemetry.prometheus import PrometheusClient, PrometheusUnavailable, QueryError, Sample
from telemetry.settings import Settings
from telemetry.store import DatabaseUnavailable

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
Item = tuple[str, Document]  # (collection, document)


# --- what to query --------------------------------------------------------------------


@dataclass(frozen=True)
class StreamQuery:
    """The PromQL behind one stream: frame column -> expression."""

    stream: Stream
    exprs: Mapping[str, str]


def stream_queries(settings: Settings) -> tuple[StreamQuery, ...]:
    by_column = {
        "cpu": settings.query_cpu,
        "memory": settings.query_memory,
        "req_success": settings.query_success,
        "req_fail": settings.query_fail,
        "response_time": settings.query_response_time,
    }
    return tuple(StreamQuery(s, {c: by_column[c] for c in s.columns}) for s in STREAMS)


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


# --- waiting documents ----------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"$date": value.astimezone(UTC).isoformat()}
    raise TypeError(f"cannot spill {type(value).__name__}")


def _decode(obj: dict) -> Any:
    if obj.keys() == {"$date"}:
        return dt.datetime.fromisoformat(obj["$date"])
    return obj


class SpillBuffer:
    """Documents waiting for the database: in memory up to ``capacity``, then appended to a JSONL file.

    Memory never holds more than ``capacity`` documents; the file holds the rest, oldest
    first, and survives a restart. Flushing writes the file (in chunks of ``capacity``)
    before memory. A flush that fails part-way keeps everything: the rewrite is idempotent.
    """

    def __init__(self, path: Path, capacity: int) -> None:
        self.path = Path(path)
        self.capacity = max(1, int(capacity))
        self._memory: list[Item] = []
        self._spilled = self._count_spilled()
        if self._spilled:
            log.info("%d samples spilled by an earlier run wait in %s", self._spilled, self.path)

    def __len__(self) -> int:
        return len(self._memory) + self._spilled

    @property
    def spilled(self) -> int:
        return self._spilled

    def add(self, items: Iterable[Item]) -> None:
        for item in items:
            self._memory.append(item)
            if len(self._memory) >= self.capacity:
                self.spill()

    def spill(self) -> None:
        """Append every in-memory document to the file (fsynced: it exists to survive us)."""
        if not self._memory:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = self._ends_torn()
        with self.path.open("a", encoding="utf-8") as f:
            if torn:
                f.write("\n")  # end a line torn by a crash, or it would swallow our first one
            for collection, doc in self._memory:
                f.write(json.dumps({"collection": collection, "doc": doc}, default=_encode) + "\n")
            f.flush()
            os.fsync(f.fileno())
        log.info(
            "spilled %d samples to %s (%d there now)",
            len(self._memory),
            self.path,
            self._spilled + len(self._memory),
        )
        self._spilled += len(self._memory)
        self._memory.clear()

    def flush(self, write: Callable[[str, list[Document]], int]) -> int:
        """Hand every waiting document to ``write(collection, docs)``; returns what it reports written."""
        written = 0
        if self._spilled:
            with self.path.open(encoding="utf-8") as f:
                for chunk in iter(lambda: list(itertools.islice(f, self.capacity)), []):
                    written += _write_grouped(write, _parse_lines(chunk, self.path))
            self.path.unlink()
            self._spilled = 0
        if self._memory:
            written += _write_grouped(write, self._memory)
            self._memory.clear()
        return written

    def _ends_torn(self) -> bool:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return False
        with self.path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"

    def _count_spilled(self) -> int:
        if not self.path.is_file():
            return 0
        with self.path.open(encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())


def _parse_lines(lines: Sequence[str], path: Path) -> list[Item]:
    items = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_hook=_decode)
            items.append((record["collection"], record["doc"]))
        except (ValueError, KeyError, TypeError):
            # Only a crash mid-append can tear a line; the rest of the file is still good.
            log.warning("skipping an unreadable line in %s: %.80s", path, line)
    return items


def _write_grouped(write: Callable[[str, list[Document]], int], items: Sequence[Item]) -> int:
    written = 0
    for collection in dict.fromkeys(c for c, _ in items):
        written += write(collection, [d for c, d in items if c == collection])
    return written


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
    #: Documents this tick produced (0..4).
    collected: int
    #: New documents stored during this tick (backlog and backfills included).
    written: int
    #: Collections with no data at this tick.
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
        self.queries = stream_queries(settings)
        self.buffer = SpillBuffer(settings.collector_spill_path, settings.collector_buffer_size)
        self._cuts = settings.cuts()
        self._clock = clock
        self._sleep = sleep
        self._retry_delays_s = tuple(retry_delays_s)
        self._db_retry = Backoff(db_retry_delays_s, clock)
        self._indexed = False
        self._gap_since: dt.datetime | None = None
        self._missing: tuple[str, ...] | None = None
        self._reported: set[str] = set()

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), UTC)

    # --- one instant -------------------------------------------------------------------

    def tick(self, at: dt.datetime) -> TickReport:
        """Query every stream at ``at`` (a grid point), queue the documents, flush what waits."""
        deadline = self._clock() + 0.8 * self.interval_s
        try:
            items, missing = self._collect_at(at, deadline)
        except PrometheusUnavailable as exc:
            if self._gap_since is None:
                log.warning("%s; backfilling from %s once it answers", exc, at.isoformat())
                self._gap_since = at
            items, missing = [], tuple(q.stream.collection for q in self.queries)
        else:
            if self._gap_since is not None:
                self._fill_gap(self._gap_since, at)
        self._report_missing(missing)
        self.buffer.add(items)
        written = self.flush()
        return TickReport(at, len(items), written, missing, len(self.buffer))

    def _collect_at(self, at: dt.datetime, deadline: float) -> tuple[list[Item], tuple[str, ...]]:
        items: list[Item] = []
        missing: list[str] = []
        for query in self.queries:
            found: dict[str, Sample | None] = {}
            for column, expr in query.exprs.items():
                try:
                    found[column] = self._query(expr, at, deadline)
                except QueryError as exc:
                    self._report_once(str(exc))
            point = stream_values(query.stream, found)
            if point is None:
                missing.append(query.stream.collection)
            else:
                items.append(self._item(query.stream, *point))
        return items, tuple(missing)

    def _query(self, expr: str, at: dt.datetime, deadline: float) -> Sample | None:
        for delay in (*self._retry_delays_s, None):
            try:
                return self.client.query(expr, at)
            except PrometheusUnavailable:
                if delay is None or self._clock() + delay > deadline:
                    raise
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _item(self, stream: Stream, at: dt.datetime, values: Mapping[str, float]) -> Item:
        return stream.collection, to_document(stream, at, values, self._cuts[stream.flag])

    # --- an interval ---------------------------------------------------------------------

    def backfill(self, start: dt.datetime, end: dt.datetime) -> int:
        """Store every stream over the grid points in ``[start, end)`` with ``query_range``.

        Returns the number of documents found (already stored ones are skipped on write).
        Raises :class:`PrometheusUnavailable` if Prometheus does not answer after retries.
        """
        first = grid_ceil(start, self.interval_s)
        last = _from_millis(_millis(end) - 1)
        found_total = 0
        # Window by window, so a long backfill never holds more than one window in memory.
        while first <= last:
            window_last = min(last, grid_floor(first + BACKFILL_WINDOW, self.interval_s))
            found_total += self._backfill_window(first, window_last)
            first = window_last + dt.timedelta(seconds=self.interval_s)
        return found_total

    def _backfill_window(self, first: dt.datetime, last: dt.datetime) -> int:
        items: list[Item] = []
        for query in self.queries:
            found: dict[str, dict[dt.datetime, Sample]] = {}
            for column, expr in query.exprs.items():
                try:
                    samples = self._range(expr, first, last)
                except QueryError as exc:
                    self._report_once(str(exc))
                    continue
                found[column] = {s.time: s for s in samples}
            primary = query.stream.columns[0]
            for t in sorted(found.get(primary, {})):
                point = stream_values(query.stream, {c: by_time.get(t) for c, by_time in found.items()})
                if point is not None:
                    items.append(self._item(query.stream, *point))
        self.buffer.add(items)
        self.flush()
        return len(items)

    def _range(self, expr: str, first: dt.datetime, last: dt.datetime) -> list[Sample]:
        for delay in (*self._retry_delays_s, None):
            try:
                return self.client.query_range(expr, first, last, self.interval_s)
            except PrometheusUnavailable:
                if delay is None:
                    raise
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _fill_gap(self, since: dt.datetime, until: dt.datetime) -> None:
        try:
            found = self.backfill(since, until)
        except PrometheusUnavailable as exc:
            log.warning("backfill from %s postponed: %s", since.isoformat(), exc)
            return
        log.info("backfilled %d samples from %s to %s", found, since.isoformat(), until.isoformat())
        self._gap_since = None

    def resume_from_store(self) -> None:
        """Backfill from the newest stored sample (``MAX_CATCH_UP`` at most): a restart leaves no hole."""
        try:
            latest = store.newest_sample_times(self.db)
        except DatabaseUnavailable as exc:
            log.info("cannot see where the last run stopped (%s); collecting from now", exc)
            return
        known = [t for t in latest.values() if t is not None]
        now = self.now()
        if not known or now - min(known) <= dt.timedelta(seconds=2 * self.interval_s):
            return
        self._gap_since = max(min(known), now - MAX_CATCH_UP)
        log.info("resuming: backfilling from %s", self._gap_since.isoformat())

    # --- the database --------------------------------------------------------------------

    def flush(self, force: bool = False) -> int:
        """Write waiting documents unless the database is in backoff; returns the new documents stored."""
        if not len(self.buffer) or not (force or self._db_retry.ready()):
            return 0
        try:
            if not self._indexed:
                store.ensure_indexes(self.db)
                self._indexed = True
            written = self.buffer.flush(self._write)
        except (DatabaseUnavailable, PyMongoError) as exc:
            delay = self._db_retry.failed()
            level = logging.WARNING if self._db_retry.failures == 1 else logging.DEBUG
            log.log(
                level,
                "database unavailable (%s): %d samples wait; next try in %.0f s",
                exc,
                len(self.buffer),
                delay,
            )
            return 0
        if self._db_retry.failures:
            log.info(
                "database back after %d failed tries: flushed the waiting samples", self._db_retry.failures
            )
        self._db_retry.reset()
        return written

    def _write(self, collection: str, docs: list[Document]) -> int:
        try:
            return store.insert_idempotent(self.db, collection, docs).inserted
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

    # --- running -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Tick on the grid until ``stop`` is set."""
        self.resume_from_store()
        at = grid_ceil(self.now(), self.interval_s)
        log.info("collecting from %s every %g s", self.client.base_url, self.interval_s)
        # Query a moment after each grid point: a scrape stamped just before it may still be in flight.
        settle_s = min(0.5, 0.1 * self.interval_s)
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
        """Write what waits if the database answers; spill the rest to disk for the next run."""
        self.flush(force=True)
        self.buffer.spill()
        if len(self.buffer):
            log.warning(
                "%d samples wait in %s; the next `pycemaker collect` stores them",
                len(self.buffer),
                self.buffer.path,
            )

    # --- logging -------------------------------------------------------------------------

    def _report_missing(self, missing: tuple[str, ...]) -> None:
        """Log when the set of missing streams changes, not every tick."""
        if missing != self._missing:
            if missing:
                log.info("no data at this tick for: %s", ", ".join(missing))
            elif self._missing is not None:
                log.info("all four streams present again")
            self._missing = missing

    def _report_once(self, message: str) -> None:
        if message not in self._reported:
            self._reported.add(message)
            log.error("%s", message)


__all__ = [
    "Collector",
    "SpillBuffer",
    "StreamQuery",
    "TickReport",
    "grid_ceil",
    "grid_floor",
    "parse_time",
    "stream_queries",
    "stream_values",
]
