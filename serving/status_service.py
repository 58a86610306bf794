"""The status, cached per worker: computed once per change of the data or the model, handed out as ready JSON.

Recomputed (:func:`serving.status.compute_status`) when a new 5-second grid point every stream
has reached arrives, when the model changes, or at least every ``RECOMPUTE_S`` (so staleness
is noticed), by a background thread in production; a request only hands out the cached body.
The :class:`Snapshot` is immutable and swapped whole; the longer forecasts that the
compatibility routes ask of it are kept in a small cache of their own, behind a lock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from forecasting.forecaster import Forecast
from serving.minute_cache import MinuteCache
from serving.model_watcher import ModelState, ModelWatcher, ServiceModel
from serving.periodic import Periodic
from serving.schemas import StatusSchema
from serving.status import Status, compute_status
from telemetry.settings import Settings
from telemetry.store import DatabaseUnavailable

log = logging.getLogger(__name__)
#: Recompute at least this often even without new samples (staleness, seconds to failure).
RECOMPUTE_S = 10.0
#: Longer forecasts kept per worker (the compatibility routes ask for a few horizons).
EXTENDED_KEPT = 8
_SCHEMA = StatusSchema()


@dataclass(frozen=True)
class Snapshot:
    """One computed status: the JSON body requests hand out, and what it was computed from."""

    key: tuple | None
    checked_at: float  # time.monotonic() of the last check that found it current
    body: bytes = b""
    status: Status | None = None
    forecast: Forecast | None = None
    frame: pd.DataFrame | None = None
    model: ModelState | None = None
    now: dt.datetime | None = None
    #: Set when the status could not be computed (the database is down): requests answer 503.
    error: Exception | None = None


@dataclass(frozen=True)
class Pending:
    """A status to compute: what :meth:`StatusService.prepare` read, for :meth:`StatusService.finish`."""

    service: "StatusService"
    key: tuple
    now: dt.datetime
    model: ModelState
    latest: dict[str, dt.datetime | None]
    frame: pd.DataFrame


class StatusService:
    def __init__(
        self,
        settings: Settings,
        cache: MinuteCache,
        models: ModelWatcher | ServiceModel,
        clock: Callable[[], dt.datetime],
        *,
        ttl_s: float = 1.0,
        on_update: Callable[[Snapshot], None] | None = None,
        refreshed_by: Callable[[], bool] | None = None,
    ):
        self.settings = settings
        self.cache = cache
        self.models = models
        self.clock = clock
        self.ttl_s = ttl_s
        self.on_update = on_update
        #: Whether another thread (serving/fleet.py's) keeps this status current, when it has no refresher of its own.
        self.refreshed_by = refreshed_by
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self._extended: OrderedDict[tuple, Forecast] = OrderedDict()
        self._extended_lock = threading.Lock()
        self._refresher = Periodic("status-refresh", self.refresh, lambda: self.ttl_s)

    def snapshot(self) -> Snapshot:
        """The cached status; recomputed here only when none exists yet or it is older than the TTL
        and no background refresher keeps it current."""
        snap = self._snapshot
        if snap is not None:
            age = time.monotonic() - snap.checked_at
            if age < self.ttl_s or (self.background and age < max(15.0, 5 * self.ttl_s)):
                return snap
            if self.refreshed_by is not None and self.refreshed_by():
                return snap  # the fleet's round comes back to it: a request never recomputes (``as_of`` says how old)
        return self.refresh()

    @property
    def background(self) -> bool:
        return self._refresher.running or (self.refreshed_by is not None and self.refreshed_by())

    @property
    def service(self) -> str:
        return self.cache.service.name

    def current(self) -> Snapshot | None:
        """The cached snapshot as it is (None: never computed); never computes."""
        return self._snapshot

    def refresh(self, force: bool = False) -> Snapshot:
        """Recompute when the data, the model or the clock bucket changed; otherwise keep the body."""
        with self._lock:
            step = self._prepare(force)
            snap = step if isinstance(step, Snapshot) else self._finish(step, None)
            self._snapshot = snap
        if self.on_update:
            self.on_update(snap)
        return snap

    # --- the two halves of a refresh (the fleet's batched round runs the model between them) ---
    def prepare(self, force: bool = False) -> "Snapshot | Pending":
        """The first half of :meth:`refresh`: the kept snapshot when nothing changed (stored as current), otherwise
        what a new status is computed from (the frame read up to now), for :meth:`finish`."""
        with self._lock:
            step = self._prepare(force)
            if isinstance(step, Snapshot):
                self._snapshot = step
        if isinstance(step, Snapshot) and self.on_update:
            self.on_update(step)
        return step

    def finish(self, pending: "Pending", forecast_at: Callable[[pd.DataFrame, pd.Timestamp], Forecast] | None) -> Snapshot:
        """The second half: the status from ``pending`` (the forecast from ``forecast_at``, default the model's own).
        A refresh that ran meanwhile (a request's) is replaced: both are computed from data read up to their ``now``."""
        snap = self._finish(pending, forecast_at)
        with self._lock:
            self._snapshot = snap
        if self.on_update:
            self.on_update(snap)
        return snap

    def _prepare(self, force: bool) -> "Snapshot | Pending":
        now = self.clock()
        model = self.models.state
        old = self._snapshot
        try:
            latest = self.cache.latest_sample_times(now)
            key = (scored_until(latest, self.settings.grid_seconds), model.version, model.problem, int(now.timestamp() // RECOMPUTE_S))
            if not force and old is not None and old.error is None and old.key == key:
                return dataclasses.replace(old, checked_at=time.monotonic())
            if model.forecaster is not None:  # the recent frame must hold the model's input window
                self.cache.ensure_recent(model.forecaster.lookback_minutes)
            frame = self.cache.refresh(now)
        except DatabaseUnavailable as exc:
            return self._unavailable(exc, model, now)
        return Pending(self, key, now, model, latest, frame)

    def _finish(self, pending: "Pending", forecast_at) -> Snapshot:
        status, forecast = compute_status(pending.frame, pending.latest, pending.model, pending.now, self.settings,
                                          self.cache.step_minutes, forecast_at)
        body = json.dumps(_SCHEMA.dump(status), separators=(",", ":")).encode()
        return Snapshot(pending.key, time.monotonic(), body, status, forecast, pending.frame, pending.model, pending.now)

    def _unavailable(self, exc: Exception, model: ModelState, now: dt.datetime) -> Snapshot:
        old = self._snapshot
        if old is None or old.error is None:
            log.warning("status unavailable: %s", exc)
        return Snapshot(None, time.monotonic(), error=exc, model=model, now=now)

    def forecast_from_current(self, snap: Snapshot, steps: int) -> Forecast | None:
        """The snapshot's forecast, extended (rolled forward) to ``steps`` frame steps if it is shorter."""
        base = snap.forecast
        if base is None:
            return None
        if steps <= len(base.times):
            return head(base, steps)
        forecaster = snap.model.forecaster if snap.model else None
        if forecaster is None or forecaster.version != base.model_version:
            return head(base, len(base.times))
        key = (base.origin, base.model_version, snap.key, steps)
        with self._extended_lock:
            cached = self._extended.get(key)
        if cached is None:
            cached = forecaster.forecast(snap.frame, base.origin, steps)
            with self._extended_lock:
                self._extended[key] = cached
                while len(self._extended) > EXTENDED_KEPT:
                    self._extended.popitem(last=False)
        return cached

    # --- background refresh ----------------------------------------------------------
    def start(self) -> None:
        """Start the refresher (again after a fork: serving/periodic.py)."""
        self._refresher.start()

    def stop(self) -> None:
        self._refresher.stop()

def scored_until(latest: dict[str, dt.datetime | None], grid_seconds: float) -> tuple:
    """The newest grid point every stream has reached, and which streams ever spoke.

    The four streams arrive unsynchronised (one of them every ~1.4 s), but health changes
    only when a new 5-second grid point can be scored, that is when the slowest stream
    passes it: this is what "new data" means for the status.
    """
    known = [t for t in latest.values() if t is not None]
    newest_common = min(known).timestamp() // grid_seconds if known else None
    return newest_common, tuple(t is not None for t in latest.values())


def head(forecast: Forecast, minutes: int) -> Forecast:
    """The first ``minutes`` of a forecast."""
    return Forecast(forecast.origin, forecast.times[:minutes], forecast.quantiles, forecast.values[:minutes], forecast.model_version)


__all__ = ["Snapshot", "Pending", "StatusService", "RECOMPUTE_S", "scored_until", "head"]
