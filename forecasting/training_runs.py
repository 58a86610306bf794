"""The ``training_runs`` and ``training_requests`` collections.

Every training run is recorded (status, metrics, duration, version, error) with the registry it
trains for (host and ``models_dir``): one training at a time holds that registry's lock, so a
trainer that holds it may fail the runs its registry left ``running``, and only those: trainers
of other registries sharing the database are left alone. The API never
trains (no torch there): ``POST /api/v1/train`` files a request that the scheduler process
picks up on its next poll.
"""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import PyMongoError

from telemetry.store import unavailable

UTC = dt.timezone.utc
RUNS = "training_runs"
REQUESTS = "training_requests"

RUNNING = "running"
SUCCEEDED = "succeeded"  # trained; promoted or rejected by the gates (see ``promoted``)
FAILED = "failed"


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def registry_of(models_dir: Path | str) -> str:
    """The registry a run trains for: ``host:/absolute/models_dir`` (what the training lock guards)."""
    return f"{socket.gethostname()}:{Path(models_dir).resolve()}"


def start_run(db: Database, trigger: str, params: dict[str, Any] | None = None, registry: str | None = None) -> str:
    doc = {"status": RUNNING, "trigger": trigger, "started_at": _now(), "params": params or {}, "registry": registry}
    try:
        return str(db[RUNS].insert_one(doc).inserted_id)
    except PyMongoError as exc:
        raise unavailable(db, exc) from exc


def finish_run(
    db: Database,
    run_id: str,
    status: str,
    *,
    version: str | None = None,
    promoted: bool = False,
    metrics: dict[str, Any] | None = None,
    reason: str = "",
    error: str | None = None,
) -> None:
    ended = _now()
    run = db[RUNS].find_one({"_id": ObjectId(run_id)}, {"started_at": 1}) or {}
    started = run.get("started_at", ended)
    db[RUNS].update_one(
        {"_id": ObjectId(run_id)},
        {
            "$set": {
                "status": status,
                "ended_at": ended,
                "duration_s": (ended - started).total_seconds(),
                "version": version,
                "promoted": promoted,
                "metrics": metrics or {},
                "reason": reason,
                "error": error,
            }
        },
    )


def fail_abandoned_runs(db: Database, registry: str, reason: str = "trainer stopped before the run ended") -> int:
    """Mark the runs of ``registry`` left ``running`` by a killed trainer as failed.

    Call it holding that registry's training lock (then none of its runs is alive). Runs
    recorded without a registry (before it was recorded) count as this one's.
    """
    mine = {"status": RUNNING, "$or": [{"registry": registry}, {"registry": None}]}
    result = db[RUNS].update_many(mine, {"$set": {"status": FAILED, "error": reason, "ended_at": _now()}})
    return result.modified_count


def recent_runs(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    try:
        runs = list(db[RUNS].find({}).sort("started_at", DESCENDING).limit(limit))
    except PyMongoError as exc:
        raise unavailable(db, exc) from exc
    for run in runs:
        run["id"] = str(run.pop("_id"))
    return runs


def request_training(db: Database, requested_by: str = "api") -> str:
    """File a training request for the scheduler; returns its id."""
    try:
        doc = {"requested_at": _now(), "requested_by": requested_by, "taken_at": None}
        return str(db[REQUESTS].insert_one(doc).inserted_id)
    except PyMongoError as exc:
        raise unavailable(db, exc) from exc


def take_training_requests(db: Database) -> int:
    """Claim every pending request (atomically, one by one); returns how many were pending."""
    taken = 0
    while db[REQUESTS].find_one_and_update(
        {"taken_at": None}, {"$set": {"taken_at": _now()}}, sort=[("requested_at", ASCENDING)],
        return_document=ReturnDocument.AFTER,
    ):
        taken += 1
    return taken
