"""Every service's status in one worker: one :class:`StatusService` per service, created when first asked for.

The default service's status is the app's own (``Runtime.status``, with its own refresher, as
before fleets). The others are created lazily, at most ``max_services`` (least recently used
beyond that are dropped, their minutes with them), and kept current by one background thread
that goes round every service the directory lists: a service whose newest samples did not move
keeps its cached body (:meth:`StatusService.refresh` compares keys), so a round costs a few
index lookups per quiet service. The one served model serves every service (inputs are scaled
per window, forecasting/forecaster.py), except a service a fleet run assigned another model
(``ModelWatcher.view``: serving/model_watcher.py).

:func:`fleet_order` is the order of ``GET /api/v1/fleet``: failing now first, then the soonest
expected failure, then the soonest earliest one, then healthy services by name, unknown last.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections import OrderedDict
from typing import Callable

from pymongo.database import Database

from serving.minute_cache import MinuteCache
from serving.periodic import Periodic
from serving.model_watcher import ModelWatcher
from serving.service_directory import ServiceData, ServiceDirectory
from serving.status import FAILING_NOW, FAILURE_PREDICTED, NO_FAILURE, Status
from serving.status_service import Snapshot, StatusService
from telemetry.frames import Cadence
from telemetry.services import Service, service_named
from telemetry.settings import Settings

log = logging.getLogger(__name__)
#: Minutes kept per fleet service beyond its recent frame (hour chunks of history, for /health over past hours).
FLEET_CHUNKS = 24


class Fleet:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        models: ModelWatcher,
        clock: Callable[[], dt.datetime],
        directory: ServiceDirectory,
        default: StatusService,
        *,
        cadence: Callable[[Service], Cadence],
        recent_minutes: Callable[[], int],
        ttl_s: float = 1.0,
        on_round: Callable[[list[tuple[str, Status | None]]], None] | None = None,
    ):
        self.db = db
        self.settings = settings
        self.models = models
        self.clock = clock
        self.directory = directory
        self.default = default
        self._cadence = cadence
        self._recent_minutes = recent_minutes
        self.ttl_s = ttl_s
        #: Called after each round with every service's status, soonest failure first (the /metrics gauges).
        self.on_round = on_round
        self._lock = threading.Lock()
        self._statuses: OrderedDict[str, StatusService] = OrderedDict()
        self._refresher = Periodic("fleet-refresh", self._round, lambda: self.ttl_s)
        #: Seconds the last background round took to bring every service's status up to date.
        self.last_round_s: float | None = None

    # --- one service's status ---------------------------------------------------
    def status(self, name: str) -> StatusService:
        """The status service of ``name`` (created on first use; the default service's is the app's own)."""
        if name == self.settings.default_service:
            return self.default
        with self._lock:
            found = self._statuses.get(name)
            if found is not None:
                self._statuses.move_to_end(name)
                return found
        created = self._create(service_named(name, self.settings.default_service))
        with self._lock:
            found = self._statuses.setdefault(name, created)
            self._statuses.move_to_end(name)
            while len(self._statuses) > self.settings.max_services:
                dropped, _ = self._statuses.popitem(last=False)
                log.info("status of %s dropped (more than max_services=%d)", dropped, self.settings.max_services)
        return found

    def _create(self, service: Service) -> StatusService:
        cache = MinuteCache(self.db, self.settings, recent_minutes=self._recent_minutes(), overlap_minutes=2,
                            max_chunks=FLEET_CHUNKS, cadence=self._cadence(service), service=service)
        return StatusService(self.settings, cache, self.models.view(service.name), self.clock, ttl_s=self.ttl_s, refreshed_by=self._running)

    def set_cadence(self, cadence: Cadence) -> None:
        """A model made for another cadence was swapped in: every service's frames follow it."""
        with self._lock:
            statuses = list(self._statuses.values())
        for status in statuses:
            status.cache.set_cadence(cadence)

    # --- every service ---------------------------------------------------------
    def snapshots(self, names: list[str]) -> dict[str, Snapshot | None]:
        """The snapshot of each of ``names``. While the background refresher runs, as it last left it (None: not
        computed yet; a request never waits for a round); without it, computed here if missing or expired."""
        if self._running():
            return {name: self.status(name).current() for name in names}
        return {name: self.status(name).snapshot() for name in names}

    def services(self) -> dict[str, ServiceData]:
        """The directory's services: as the refresher last scanned them while it runs (scanned here if never)."""
        return self.directory.services(max_age_s=math.inf if self._running() else None)

    def refresh_all(self) -> float:
        """One round: rescan the directory (when due), then bring every service's status up to date; returns its seconds."""
        began = time.perf_counter()
        names = list(self.directory.services(max_age_s=self.directory.refresh_s))
        for name in names:
            if self._refresher.stopping:
                break
            status = self.status(name)
            if status is self.default and self.default.background:
                continue  # kept current by its own thread
            try:
                status.refresh()
            except Exception:  # one service's failure never stops the others'
                log.exception("status refresh of %s failed", name)
        self.last_round_s = time.perf_counter() - began
        if self.on_round is not None:
            self.on_round(self.ranked(names))
        return self.last_round_s

    def ranked(self, names: list[str]) -> list[tuple[str, Status | None]]:
        """``names`` with their cached statuses (None: not computed, or the database was down), soonest failure first."""
        rows = []
        for name in names:
            snap = self.status(name).current()
            rows.append((name, snap.status if snap is not None else None))
        return sorted(rows, key=lambda row: fleet_order(*row))

    def _running(self) -> bool:
        return self._refresher.running

    def start(self) -> None:
        """Start the round-robin refresher (again after a fork: serving/periodic.py)."""
        self._refresher.start()

    def stop(self) -> None:
        self._refresher.stop()

    def _round(self) -> None:
        self.refresh_all()

def fleet_order(name: str, status: Status | None) -> tuple:
    """Sort key of ``GET /api/v1/fleet``: failing now (by name), failure predicted (by expected, then earliest
    seconds; a missing bound sorts after every known one), no failure within the horizon (by name), unknown (by name)."""
    state = status.state if status is not None else None
    if state == FAILING_NOW:
        return (0, 0.0, 0.0, name)
    if state == FAILURE_PREDICTED:
        ttf = status.time_to_failure
        expected = ttf.expected.seconds if ttf and ttf.expected else math.inf
        earliest = ttf.earliest.seconds if ttf and ttf.earliest else math.inf
        return (1, expected, earliest, name)
    if state == NO_FAILURE:
        return (2, 0.0, 0.0, name)
    return (3, 0.0, 0.0, name)
