"""API processes splitting the fleet: who is alive, who owns which service, and the statuses they share.

With ``replica_split`` on, every API process (each gunicorn worker too: a process is a participant) is a
*replica*. It registers in the ``replicas`` collection and renews a heartbeat there every
``replica_heartbeat_s`` (``{_id, expires, beat_at}``); the live set is every replica whose ``expires`` has
not passed (``replica_timeout_s`` after its last beat). A service is owned by the live replica with the
highest rendezvous hash of (replica, service) (:func:`owner`): every replica computes the same owner from
the same live set, and when a replica dies only its services move (each to the replica that scores next
highest), within ``replica_timeout_s`` plus a round.

An owner writes each status it computes to the ``statuses`` collection (``{_id: service, body, entry,
computed_at, computed_by, model_version}``: ``body`` the status document ``/api/v1/services/<name>/status``
hands out, ``entry`` the row ``/api/v1/fleet`` lists); the others read those rows (without bodies) on the
same heartbeat and serve them. Times here are wall-clock (``expires``, ``computed_at``): liveness is about
processes, not about the data's clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable

from pymongo import UpdateOne
from pymongo.database import Database
from pymongo.errors import PyMongoError

from serving.periodic import Periodic
from telemetry.settings import Settings

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
REPLICAS = "replicas"
STATUSES = "statuses"


def wall_now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _score(replica: str, service: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{replica}\0{service}".encode(), digest_size=8).digest(), "big")


def owner(service: str, replicas: Iterable[str]) -> str | None:
    """The replica that computes ``service``: the highest rendezvous score (None: no replica)."""
    return max(replicas, key=lambda replica: (_score(replica, service), replica), default=None)


def new_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class StoredStatus:
    """A status another replica computed, as read from ``statuses`` (``entry`` as ``/api/v1/fleet`` lists it)."""

    service: str
    entry: dict
    computed_at: dt.datetime
    computed_by: str


class Replicas:
    """This process's membership: its heartbeat, the live set, and the other replicas' statuses (refreshed together)."""

    def __init__(self, db: Database, settings: Settings, *, replica_id: str | None = None,
                 clock: Callable[[], dt.datetime] = wall_now):
        self.db = db
        self.settings = settings
        self.id = replica_id or new_replica_id()
        self._pid = os.getpid()
        self.clock = clock
        self._lock = threading.Lock()
        self._live: tuple[str, ...] = (self.id,)
        self._stored: dict[str, StoredStatus] = {}
        self._written: dict[str, bytes] = {}  # the body last written per service (unchanged ones are not rewritten)
        #: Bumped whenever the stored rows read back change (a fleet listing built from older ones is rebuilt).
        self.version = 0
        #: Called after each heartbeat (the fleet rebuilds its listing there when the rows changed, not in a request).
        self.on_beat: Callable[[], None] | None = None
        self._beater = Periodic("replica-heartbeat", self.beat, lambda: settings.replica_heartbeat_s)

    # --- membership -------------------------------------------------------------
    def beat(self) -> tuple[str, ...]:
        """Renew this replica's heartbeat, then read the live set and the stored statuses."""
        now = self.clock()
        replicas = self.db[REPLICAS]
        replicas.update_one({"_id": self.id}, {"$set": {"expires": now + dt.timedelta(seconds=self.settings.replica_timeout_s),
                                                        "beat_at": now, "pid": os.getpid()}}, upsert=True)
        live = sorted({doc["_id"] for doc in replicas.find({"expires": {"$gt": now}}, {"_id": 1})} | {self.id})
        before = self._stored
        stored = {}
        for doc in self.db[STATUSES].find({}, {"body": 0}):
            kept = before.get(doc["_id"])
            if kept is not None and kept.computed_at == doc["computed_at"] and kept.computed_by == doc["computed_by"]:
                stored[doc["_id"]] = kept  # unchanged: the same object (a fleet listing reuses its rendered row)
            else:
                stored[doc["_id"]] = StoredStatus(doc["_id"], doc["entry"], doc["computed_at"], doc["computed_by"])
        with self._lock:
            if tuple(live) != self._live:
                log.info("replicas: %d live (%s)", len(live), ", ".join(live))
            if tuple(live) != self._live or stored != self._stored:
                self.version += 1
            self._live, self._stored = tuple(live), stored
        if self.on_beat is not None:
            self.on_beat()
        return self._live

    @property
    def live(self) -> tuple[str, ...]:
        return self._live

    def owns(self, service: str) -> bool:
        return owner(service, self._live) == self.id

    def owner_of(self, service: str) -> str | None:
        return owner(service, self._live)

    def start(self) -> None:
        """Beat now (so the first round knows the live set), then every ``replica_heartbeat_s`` in a thread.
        In a process forked after this was made, it is a replica of its own (a new id)."""
        if self._pid != os.getpid():
            self._pid, self.id, self._written = os.getpid(), new_replica_id(), {}
            self._live = (self.id,)
        try:
            self.beat()
        except PyMongoError as exc:
            log.warning("replica heartbeat failed: %s", exc)
        self._beater.start()

    def stop(self, leave: bool = True) -> None:
        """Stop beating; ``leave``: remove the registration, so the others take over at once (not after the timeout)."""
        self._beater.stop()
        if leave:
            try:
                self.db[REPLICAS].delete_one({"_id": self.id})
            except PyMongoError as exc:
                log.warning("replica %s could not deregister: %s", self.id, exc)

    # --- statuses -----------------------------------------------------------------
    def write(self, computed: list[tuple[str, bytes, dict, str | None]]) -> int:
        """Store ``(service, body, entry, model_version)`` of statuses computed here; unchanged bodies are skipped."""
        now = self.clock()
        ops = []
        for service, body, entry, version in computed:
            if self._written.get(service) == body:
                continue
            ops.append(UpdateOne({"_id": service}, {"$set": {"body": body, "entry": entry, "computed_at": now,
                                                             "computed_by": self.id, "model_version": version}}, upsert=True))
        if ops:
            self.db[STATUSES].bulk_write(ops, ordered=False)
            for service, body, _, _ in computed:
                self._written[service] = body
        return len(ops)

    def forget(self, services: Iterable[str]) -> None:
        """Services now owned elsewhere: their next write here (if they come back) is not skipped as unchanged."""
        for service in services:
            self._written.pop(service, None)

    def stored(self, service: str) -> StoredStatus | None:
        """The stored row of ``service`` as of the last heartbeat (None: none yet)."""
        return self._stored.get(service)

    def stored_body(self, service: str) -> bytes | None:
        """The stored status document of ``service``, read now (None: none yet)."""
        doc = self.db[STATUSES].find_one({"_id": service}, {"body": 1})
        return bytes(doc["body"]) if doc else None


__all__ = ["Replicas", "StoredStatus", "owner", "new_replica_id", "REPLICAS", "STATUSES"]
