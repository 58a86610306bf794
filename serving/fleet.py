"""Every service's status in one worker: one :class:`StatusService` per service, created when first asked for.

The default service's status is the app's own (``Runtime.status``, with its own refresher, as
before fleets). The others are created lazily, at most ``max_services`` (least recently used
beyond that are dropped, their minutes with them), and kept current by one background thread
that goes round every service the directory lists: a service whose newest samples did not move
keeps its cached body (:meth:`StatusService.refresh` compares keys), so a round costs a few
index lookups per quiet service. The one served model serves every service (inputs are scaled
per window, forecasting/forecaster.py), except a service a fleet run assigned another model
(``ModelWatcher.view``: serving/model_watcher.py). A round recomputes the changed statuses in batches
(serving/batch.py): one network run per model for every service of a batch.

With ``replica_split`` (serving/replicas.py) a round recomputes only the services this process owns
and stores them; the others' rows (:meth:`Fleet.rows`) are the stored ones their owners wrote.

``GET /api/v1/fleet`` is served from a :class:`Listing`: the ranked rows, rebuilt only when a row changed
(each row's entry is built once per computed status), holding its JSON bodies (serving/routes/services.py
renders them once per listing and state filter). While the refresher runs, a request checks a generation
(bumped after each batch of a round, each directory scan, each replica heartbeat, each recomputation of the
default service's status) and hands out the ready bytes: it holds the GIL for microseconds, whatever the
number of services.

:func:`fleet_order` is the order of ``GET /api/v1/fleet``: failing now first, then the soonest
expected failure, then the soonest earliest one, then healthy services by name, unknown last.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from pymongo.database import Database

from serving.batch import refresh_batched
from serving.minute_cache import MinuteCache
from serving.periodic import Periodic
from serving.model_watcher import ModelWatcher
from serving.replicas import Replicas
from serving.service_directory import ServiceData, ServiceDirectory
from serving.status import FAILING_NOW, FAILURE_PREDICTED, NO_FAILURE, UNKNOWN, Status
from serving.status_service import Snapshot, StatusService
from telemetry.frames import Cadence
from telemetry.store import DatabaseUnavailable
from telemetry.services import Service, service_named
from telemetry.settings import Settings

log = logging.getLogger(__name__)
#: Minutes kept per fleet service beyond its recent frame (hour chunks of history, for /health over past hours).
FLEET_CHUNKS = 24
#: Services whose statuses a round recomputes together (one network run per model per batch).
BATCH = 64


@dataclass
class Listing:
    """``GET /api/v1/fleet``'s entries, soonest failure first, and their rendered JSON per state filter (filled by the
    route: serving/routes/services.py). Immutable once built, except for ``bodies``/``dumped`` (caches)."""

    entries: list[dict]
    #: What it was built from while the refresher runs (None: built by a request without the refresher).
    key: tuple | None = None
    #: Rendered bodies by state filter (None: every state), as the route keeps them.
    bodies: dict = dataclasses.field(default_factory=dict)
    #: Each entry's schema dump, by ``id`` of the entry (with the entry, so the id is not reused): carried over to
    #: the next listing, so a rebuild dumps only the rows that changed.
    dumped: dict = dataclasses.field(default_factory=dict)
    #: ``GET /api/v1/services``' rendered body and the directory scan (``ServiceDirectory.scans``) it was rendered
    #: from: it depends only on these entries' states and that scan's ranges (carried over with the entries).
    services_body: tuple[int, bytes] | None = None


@dataclass(frozen=True)
class Row:
    """One service in ``GET /api/v1/fleet`` and ``/api/v1/services``: its entry, and where it came from."""

    entry: dict
    #: None: computed here; otherwise the replica that stored it (serving/replicas.py).
    computed_by: str | None = None

    @property
    def state(self) -> str:
        return self.entry["state"]

    @property
    def reason(self) -> str | None:
        return self.entry["reason"]

    @property
    def order(self) -> tuple:
        return entry_order(self.entry)


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
        replicas: Replicas | None = None,
    ):
        self.db = db
        self.settings = settings
        self.models = models
        self.clock = clock
        self.directory = directory
        self._database_down = False  # the last background round found the database down
        self.default = default
        self._cadence = cadence
        self._recent_minutes = recent_minutes
        self.ttl_s = ttl_s
        #: Called after each round with every service's status, soonest failure first (the /metrics gauges).
        self.on_round = on_round
        #: This process's share of the fleet when ``replica_split`` is on (None: it computes every service).
        self.replicas = replicas
        self._lock = threading.Lock()
        self._statuses: OrderedDict[str, StatusService] = OrderedDict()
        self._refresher = Periodic("fleet-refresh", self._round, lambda: self.ttl_s)
        #: Seconds the last background round took to bring every service's status up to date.
        self.last_round_s: float | None = None
        #: Bumped whenever this process's rows may have changed (after each batch of a round).
        self.generation = 0
        self._entries: dict[str, tuple[Status, dict]] = {}  # each service's entry, built once per computed status
        self._listing: Listing | None = None
        self._listing_lock = threading.Lock()
        #: Called with each new listing while the refresher runs (the app renders its JSON there, off the request path).
        self.on_listing: Callable[[Listing], None] | None = None
        if replicas is not None:
            replicas.on_beat = self._after_beat

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
        """One round: rescan the directory (when due), then bring every status this process computes up to date (in
        batches, serving/batch.py) and store them when the fleet is split; returns its seconds."""
        began = time.perf_counter()
        names = list(self.directory.services(max_age_s=self.directory.refresh_s))
        mine = [name for name in names if self.computes(name)]
        if self.replicas is not None:
            self._forget([name for name in names if name not in set(mine)])
        todo = []
        for name in mine:
            status = self.status(name)
            if status is self.default and self.default.background:
                continue  # kept current by its own thread
            todo.append(status)
        for first in range(0, len(todo), BATCH):
            if self._refresher.stopping:
                break
            snaps = refresh_batched(todo[first : first + BATCH])
            if self.replicas is not None:
                self._store(snaps)
            self.generation += 1
            if self._running():
                self.listing()  # built (and rendered: on_listing) here, not by the next request
        self.last_round_s = time.perf_counter() - began
        if self.on_round is not None:
            self.on_round(self.ranked(mine))
        return self.last_round_s

    # --- the split between replicas --------------------------------------------------
    def computes(self, name: str) -> bool:
        """Whether this process computes ``name``'s status (every one unless the fleet is split; the default service's
        always, it is the app's own status)."""
        return self.replicas is None or name == self.settings.default_service or self.replicas.owns(name)

    def _forget(self, names: list[str]) -> None:
        """Drop the statuses (and minutes) of services another replica now owns."""
        with self._lock:
            for name in names:
                self._statuses.pop(name, None)
        self.replicas.forget(names)

    def _store(self, computed: list[tuple[str, Snapshot]]) -> None:
        rows = [(name, snap.body, fleet_entry(name, snap.status), snap.model.version if snap.model else None)
                for name, snap in computed if snap.error is None and snap.status is not None
                and name != self.settings.default_service]  # every replica computes the default service's
        try:
            self.replicas.write(rows)
        except Exception:  # the statuses are still served here; the others see them at the next write
            log.exception("storing %d statuses failed", len(rows))

    def rows(self, names: list[str]) -> dict[str, Row]:
        """Each of ``names``'s fleet row: the status computed here, else the one its owner stored (split fleet), else
        "not computed yet"."""
        snapshots = self.snapshots([name for name in names if self.computes(name)])
        out: dict[str, Row] = {}
        for name in names:
            snap = snapshots.get(name)
            status = snap.status if snap is not None and snap.error is None else None
            if status is not None:
                out[name] = Row(self._entry(name, status))
                continue
            stored = self.replicas.stored(name) if self.replicas is not None else None
            if stored is not None:
                out[name] = Row(stored.entry, stored.computed_by)
            elif snap is None and self.replicas is not None and not self.computes(name):
                owner = self.replicas.owner_of(name)
                out[name] = Row(missing_entry(name, f"status not computed yet: replica {owner} computes it within a round"))
            else:
                detail = ("status not computed yet: the background refresher gets to it within a round" if snap is None
                          else f"status unavailable: {snap.error or 'not computed'}")
                out[name] = Row(missing_entry(name, detail))
        return out

    def _entry(self, name: str, status: Status) -> dict:
        """``fleet_entry`` of a computed status, built once per status object."""
        memo = self._entries.get(name)
        if memo is not None and memo[0] is status:
            return memo[1]
        entry = fleet_entry(name, status)
        self._entries[name] = (status, entry)
        return entry

    def listing(self) -> Listing:
        """``GET /api/v1/fleet``'s ranked entries. While the refresher runs, the listing of the current generation
        (built at most once per change); otherwise built from the snapshots now (computed if missing), reusing the
        previous listing (and its rendered bodies) when no row changed."""
        running = self._running()
        key = self._key() if running else None
        found = self._listing
        if key is not None and found is not None and found.key == key:
            return found
        with self._listing_lock:
            found = self._listing
            if key is not None and found is not None and found.key == key:
                return found
            names = list(self.directory.names(max_age_s=math.inf if running else None))
            rows = sorted(self.rows(names).values(), key=lambda row: row.order)
            entries = [row.entry for row in rows]
            if found is not None and found.entries == entries:
                listing = Listing(found.entries, key, found.bodies, found.dumped, found.services_body)
            else:
                listing = Listing(entries, key, {}, found.dumped if found is not None else {})
                kept = set(names)
                for name in [name for name in list(self._entries) if name not in kept]:
                    self._entries.pop(name, None)
            self._listing = listing
        if running and listing is not found and self.on_listing is not None:
            self.on_listing(listing)
        return listing

    def _after_beat(self) -> None:
        if self._running():
            try:
                self.listing()  # the other replicas' new rows, built and rendered here rather than by the next request
            except Exception:  # the next request builds it
                log.exception("fleet listing after a heartbeat failed")

    def _key(self) -> tuple:
        """What the rows depend on while the refresher runs: the rounds' batches, the directory's scan, the other
        replicas' stored rows and the default service's status (kept current by its own thread)."""
        default = self.default.current()
        return (self.generation, self.directory.scans, self.replicas.version if self.replicas is not None else 0,
                id(default.status) if default is not None else 0, id(default) if default is not None and default.error else 0)

    def stored_body(self, name: str) -> bytes | None:
        """The status document another replica stored for ``name`` (None: computed here, or none stored yet)."""
        if self.computes(name):
            return None
        return self.replicas.stored_body(name)

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
        """Start the round-robin refresher (again after a fork: serving/periodic.py) and the replica heartbeat."""
        if self.replicas is not None:
            self.replicas.start()
        self._refresher.start()

    def stop(self) -> None:
        self._refresher.stop()
        if self.replicas is not None:
            self.replicas.stop()

    def _round(self) -> None:
        """One background round; a database that is down skips it (logged once per outage, no traceback: routes
        answer 503 meanwhile, and the next round after it answers again catches up)."""
        try:
            self.refresh_all()
        except DatabaseUnavailable as exc:
            if not self._database_down:
                log.warning("fleet round skipped until the database answers: %s", exc)
            self._database_down = True
            return
        if self._database_down:
            log.info("fleet round: the database answers again")
        self._database_down = False

def fleet_order(name: str, status: Status | None) -> tuple:
    """Sort key of ``GET /api/v1/fleet``: failing now (by name), failure predicted (by expected, then earliest
    seconds; a missing bound sorts after every known one), no failure within the horizon (by name), unknown (by name)."""
    ttf = status.time_to_failure if status is not None else None
    expected = ttf.expected.seconds if ttf and ttf.expected else math.inf
    earliest = ttf.earliest.seconds if ttf and ttf.earliest else math.inf
    return _order(name, status.state if status is not None else None, expected, earliest)


def fleet_entry(name: str, status: Status) -> dict:
    """The ``/api/v1/fleet`` entry of a computed status (plain values: stored as it is by a split fleet)."""
    ttf = status.time_to_failure
    return {
        "service": name,
        "state": status.state,
        "reason": status.reason,
        "detail": status.detail,
        "health": status.current.health,
        "minute": status.current.minute,
        "time_to_failure": dataclasses.asdict(ttf) if ttf is not None else None,
        "driver": status.driver,
        "as_of": status.as_of,
    }


def missing_entry(name: str, detail: str) -> dict:
    return {"service": name, "state": UNKNOWN, "reason": None, "detail": detail,
            "health": None, "minute": None, "time_to_failure": None, "driver": None, "as_of": None}


def entry_order(entry: dict) -> tuple:
    """:func:`fleet_order` of a fleet entry (computed here or stored by another replica)."""
    ttf = entry.get("time_to_failure") or {}
    expected, earliest = ttf.get("expected"), ttf.get("earliest")
    return _order(entry["service"], entry["state"], expected["seconds"] if expected else math.inf,
                  earliest["seconds"] if earliest else math.inf)


def _order(name: str, state: str | None, expected: float, earliest: float) -> tuple:
    if state == FAILING_NOW:
        return (0, 0.0, 0.0, name)
    if state == FAILURE_PREDICTED:
        return (1, expected, earliest, name)
    if state == NO_FAILURE:
        return (2, 0.0, 0.0, name)
    return (3, 0.0, 0.0, name)
