"""Which services there are, with each one's streams and data range: scanned once, then only the newest span.

:func:`telemetry.store.list_services` reads the last ``services_scan_hours`` (24 h) of samples on the
first scan (so a service's ``first`` sample is the oldest within that span); later scans read only
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
            found = store.list_services(self.db, self.settings.stream_set, since=since, until=now,
                                        limit=self.settings.max_services, default_name=self.settings.default_service)
            ranges = {} if full else {name: dict(streams) for name, streams in self._ranges.items()}
            for name, streams in found.items():
                if name not in ranges and len(ranges) >= self.settings.max_services:
                    log.warning("more than max_services=%d services: %s and later ones are not watched", self.settings.max_services, name)
                    break
                known = ranges.setdefault(name, {})
                for collection, span in streams.items():
                    old = known.get(collection)
                    known[collection] = span if old is None else old.merged(span)
            self._ranges, self._until, self._scanned_at = ranges, now, time.monotonic()
            self.scans += 1
