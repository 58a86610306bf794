"""Which services there are, with each one's streams and data range: scanned once, then only the newest span.

:func:`telemetry.store.list_services` reads the last ``services_scan_hours`` (24 h) of samples on the
first scan, a window of ``SCAN_WINDOW`` at a time, newest first, for ``SCAN_BUDGET_S`` per scan (a day of a
fleet's samples in one read would outlast the database's operation timeout; where the span takes longer than the
budget, a service silent since is listed, and each service's ``first`` sample moves back, as the next scans
reach the older windows); later scans read only
the samples since the last one (less ``OVERLAP``, for samples written late) and merge the ranges,
so keeping the list current costs a few seconds of samples per scan. A scan is done at most every
``services_refresh_s`` (by the fleet's background thread in production), or when a request names
a service not seen yet (at most once a second).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from pymongo.database import Database

from telemetry import store
from telemetry.services import Service, service_named
from telemetry.settings import Settings

log = logging.getLogger(__name__)
#: How far before the last scan's end the next one starts (samples written late: the collector's replays).
OVERLAP = dt.timedelta(minutes=2)
#: A request naming an unknown service rescans at most this often (seconds).
UNKNOWN_RESCAN_S = 1.0
#: The first scan's span is read a window at a time, newest first: one aggregation over a day of a fleet's samples
#: outlasts the database's operation timeout (20 services: about 70,000 samples a stream an hour).
SCAN_WINDOW = dt.timedelta(hours=1)
#: A scan reads older windows of the first scan's span until it has spent this long (seconds); the next scans go on.
SCAN_BUDGET_S = 5.0


@dataclass(frozen=True)
class ServiceData:
    """One service as the directory knows it."""

    service: Service
    #: Per collection: the oldest and newest sample seen.
    streams: dict[str, store.StreamRange]

    @property
    def first(self) -> dt.datetime:
        return min(r.first for r in self.streams.values())

    @property
    def last(self) -> dt.datetime:
        return max(r.last for r in self.streams.values())


class ServiceDirectory:
    def __init__(self, db: Database, settings: Settings, clock: Callable[[], dt.datetime], *, refresh_s: float | None = None):
        self.db = db
        self.settings = settings
        self.clock = clock
        self.refresh_s = settings.services_refresh_s if refresh_s is None else refresh_s
        self._lock = threading.Lock()
        self._ranges: dict[str, dict[str, store.StreamRange]] = {}
        self._until: dt.datetime | None = None  # the ``now`` the last scan read up to
        self._scanned_at = -float("inf")
        #: The part of the first scan's span not read yet: (oldest, until).
        self._backlog: tuple[dt.datetime, dt.datetime] | None = None
        #: Scans done (a fleet listing built from an older scan is rebuilt).
        self.scans = 0

    @property
    def scanned(self) -> bool:
        return self._until is not None

    def services(self, max_age_s: float | None = None) -> dict[str, ServiceData]:
        """Every service with samples (at most ``max_services``), by name; rescanned when older than ``max_age_s``
        (default ``services_refresh_s``), and always if never scanned."""
        self.refresh(max_age_s=self.refresh_s if max_age_s is None or not self.scanned else max_age_s)
        default = self.settings.default_service
        return {name: ServiceData(service_named(name, default), dict(ranges)) for name, ranges in self._ranges.items()}

    def names(self, max_age_s: float | None = None) -> list[str]:
        """The names :meth:`services` lists (rescanned alike), without copying their ranges."""
        self.refresh(max_age_s=self.refresh_s if max_age_s is None or not self.scanned else max_age_s)
        return list(self._ranges)

    def knows(self, name: str) -> bool:
        """Whether ``name`` has samples (a recent scan is redone once a second at most for a name not seen yet)."""
        if name in self._ranges:
            return True
        self.refresh(max_age_s=UNKNOWN_RESCAN_S)
        return name in self._ranges

    def refresh(self, max_age_s: float = 0.0) -> None:
        """Scan for services when the last scan is older than ``max_age_s`` seconds: the first time (or when the
        clock went back) the last ``services_scan_hours`` up to now, afterwards only the samples since the last scan."""
        if time.monotonic() - self._scanned_at < max_age_s:
            return
        with self._lock:
            if time.monotonic() - self._scanned_at < max_age_s:
                return  # another thread scanned meanwhile
            now = self.clock()
            full = self._until is None or now < self._until
            since = now - dt.timedelta(hours=self.settings.services_scan_hours) if full else self._until - OVERLAP
            ranges = {} if full else {name: dict(streams) for name, streams in self._ranges.items()}
            if full:
                self._backlog = (since, now)
            else:
                self._merge(ranges, self._list(since, now))
            began = time.monotonic()
            while self._backlog is not None:  # the first scan's span, newest window first, a few seconds' worth a scan
                oldest, until = self._backlog
                start = max(oldest, until - SCAN_WINDOW)
                self._merge(ranges, self._list(start, until))
                self._backlog = (oldest, start) if start > oldest else None
                if time.monotonic() - began > SCAN_BUDGET_S:
                    break
            self._ranges, self._until, self._scanned_at = ranges, now, time.monotonic()
            self.scans += 1

    def _list(self, since: dt.datetime, until: dt.datetime) -> dict[str, dict[str, store.StreamRange]]:
        return store.list_services(self.db, self.settings.stream_set, since=since, until=until,
                                   limit=self.settings.max_services, default_name=self.settings.default_service)

    def _merge(self, ranges: dict[str, dict[str, store.StreamRange]], found: dict[str, dict[str, store.StreamRange]]) -> None:
        for name, streams in found.items():
            if name not in ranges and len(ranges) >= self.settings.max_services:
                log.warning("more than max_services=%d services: %s and later ones are not watched", self.settings.max_services, name)
                break
            known = ranges.setdefault(name, {})
            for collection, span in streams.items():
                old = known.get(collection)
                known[collection] = span if old is None else old.merged(span)
