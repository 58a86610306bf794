"""What a worker holds: settings, the database handle, the minute cache, the model watcher, the status, the fleet.

One per Flask app (``app.extensions["pycemaker"]``); routes reach it with :func:`runtime`.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Callable

from flask import current_app
from pymongo.database import Database

from serving.fleet import Fleet
from serving.minute_cache import MinuteCache
from serving.model_watcher import ModelWatcher
from serving.status_service import StatusService
from telemetry.settings import Settings

UTC = dt.timezone.utc


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    cache: MinuteCache
    models: ModelWatcher
    status: StatusService
    clock: Callable[[], dt.datetime]
    background: bool
    #: Every service's status (the default service's is ``status``) and the directory of services.
    fleet: Fleet | None = None
    pid: int = 0

    def now(self) -> dt.datetime:
        return self.clock()

    def ensure_background(self) -> None:
        """Start (or, after a fork, restart) the model watcher and the status refresher in this process."""
        if not self.background:
            return
        self.pid = os.getpid()
        self.models.start()  # after a fork the parent's threads are not alive here: each starts its own
        self.status.start()
        if self.fleet is not None:
            self.fleet.start()

    def stop(self) -> None:
        self.models.stop()
        self.status.stop()
        if self.fleet is not None:
            self.fleet.stop()


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["pycemaker"]
    return rt
