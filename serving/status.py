"""The current status: health now, what the model expected for now, time to failure and its driver.

Computed once per change of the data (a new 5-second grid point every stream has reached),
of the model, or at least every ``RECOMPUTE_S`` (so staleness is noticed), then cached per
worker as a ready-made JSON body: a request only hands that body out. :func:`compute_status` is the pure part;
:class:`StatusService` the caching and the background refresh. Semantics: docs/api.md.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from serving import eta
from serving.minute_cache import MinuteCache
from serving.model_watcher import ModelState, ModelWatcher
from serving.schemas import StatusSchema
from telemetry.catalogue import FLAG_NAMES
from telemetry.forecaster import Forecast
from telemetry.health import floor_minute, staleness
from telemetry.settings import Settings
from telemetry.store import DatabaseUnavailable
from telemetry.windows import MAX_FILL_MINUTES

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
#: Recompute at least this often even without new samples (staleness, seconds to failure).
RECOMPUTE_S = 10.0
_SCHEMA = StatusSchema()


def _num(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _in(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours} h " if hours else "") + f"{minutes} min {secs} s"


def compute_status(
    frame: pd.DataFrame,
    latest: dict[str, dt.datetime | None],
    model: ModelState,
    now: dt.datetime,
    settings: Settings,
) -> tuple[dict, Forecast | None]:
    """The status document (plain Python, before serialisation) and the forecast behind it.

    ``frame``: the recent minute frame (telemetry.frames) up to ``now``; ``latest``: newest
    sample per stream at or before ``now``.
    """
    threshold = settings.failure_threshold
    now_ts = pd.Timestamp(now)
    fresh = staleness(latest, now, settings)
    known_times = [t for t in latest.values() if t is not None]
    out: dict = {
        "state": "unknown",
        "reason": None,
        "detail": "",
        "as_of": now,
        "threshold": threshold,
        "current": {"minute": floor_minute(now), "health": None, "coverage": 0.0, "flags": dict.fromkeys(FLAG_NAMES)},
        "predicted_current": None,
        "time_to_failure": None,
        "horizon": None,
        "driver": None,
        "driver_minute": None,
        "drivers": [],
        "data": {
            "latest_sample": max(known_times) if known_times else None,
            "stale": fresh.stale,
            "stale_since": fresh.since,
            "stale_streams": list(fresh.streams),
        },
        "model": {"version": model.version, "wanted": model.wanted, "problem": model.problem},
    }

    if not known_times:
        hours = f"{settings.max_interval_hours:g}"
        return _unknown(out, "no_data", f"no samples in the database within the last {hours} h (max_interval_hours)"), None
    if fresh.stale:
        since = f" since {fresh.since.isoformat()}" if fresh.since else ""
        return _unknown(out, "stale_data", f"stale data: {', '.join(fresh.streams)} silent{since}; current health is unknown"), None

    observed = frame[(frame.index <= now_ts) & frame["health"].notna()]
    if observed.empty:
        detail = ("no minute could be scored recently: at every recent grid point some stream had no usable value"
                  " (no sample within the tolerance, NaN or not a number)")
        return _unknown(out, "no_data", detail), None
    minute = observed.index[-1]
    row = observed.iloc[-1]
    health = float(row["health"])
    flags_now = eta.observed_flags(row)
    out["current"] = {"minute": minute.to_pydatetime(), "health": _r(health), "coverage": _r(row["coverage"]), "flags": flags_now}

    forecaster = model.forecaster
    forecast = None
    if forecaster is not None:
        try:
            forecast = forecaster.forecast(frame, minute, forecaster.horizon_minutes)
        except Exception as exc:  # a model that fails at run time must not take the status down
            log.exception("forecast failed with model %s", forecaster.version)
            out["model"]["problem"] = f"forecast failed: {exc}"
            if health > threshold:
                return _unknown(out, "model_error", f"the model failed to forecast: {exc}"), None
        if forecast is not None:
            health_bands = eta.bands(forecast, "health")
            out["predicted_current"] = {"minute": minute.to_pydatetime(), **{k: _r(v) for k, v in zip(eta.BANDS, health_bands[0])}}
            out["horizon"] = {"minutes": len(forecast.times), "end": (forecast.times[-1] + pd.Timedelta(minutes=1)).to_pydatetime()}

    if health <= threshold:
        streak_start, before = _failing_streak(frame, minute, threshold)
        at = {"at": streak_start.to_pydatetime(), "seconds": 0.0}
        out.update(state="failing_now", time_to_failure={"expected": at, "earliest": at, "latest": at})
        out["detail"] = f"failing now: health {health:.3f} <= {threshold} since {streak_start.isoformat()}"
        _set_drivers(out, before, flags_now, minute)
        return out, forecast
    if forecast is None:
        return _unknown(out, "no_model", "no model has been promoted yet; current health is known, forecasts are not"), None

    times = forecast.times
    expected = eta.crossing(times, health_bands[:, 1], threshold, now_ts)
    earliest = eta.crossing(times, health_bands[:, 0], threshold, now_ts)
    latest_ = eta.crossing(times, health_bands[:, 2], threshold, now_ts)
    out["time_to_failure"] = {
        "expected": expected.as_dict() if expected else None,
        "earliest": earliest.as_dict() if earliest else None,
        "latest": latest_.as_dict() if latest_ else None,
    }
    if expected is not None:
        index = times.get_loc(expected.at)
        out["state"] = "failure_predicted"
        out["detail"] = f"health is expected to cross {threshold} at {expected.at.isoformat()} (in {_in(expected.seconds)})"
    else:
        index = int(np.argmin(health_bands[1:, 1])) + 1 if len(times) > 1 else 0
        out["state"] = "no_failure_within_horizon"
        out["detail"] = f"no failure expected within the {len(times)}-minute horizon (to {out['horizon']['end'].isoformat()})"
        if earliest is not None:
            out["detail"] += f"; the pessimistic band crosses at {earliest.at.isoformat()}"
    _set_drivers(out, flags_now, eta.forecast_flags(forecast, index, settings), times[index])
    return out, forecast


def _unknown(out: dict, reason: str, detail: str) -> dict:
    out.update(state="unknown", reason=reason, detail=detail)
    return out


def _set_drivers(out: dict, before: dict, at: dict, minute: pd.Timestamp) -> None:
    driver, rows = eta.drivers(before, at)
    out["driver"], out["drivers"], out["driver_minute"] = driver, rows, minute.to_pydatetime()
    for row in rows:
        for key in ("contribution", "change"):
            row[key] = _r(row[key])


def _failing_streak(frame: pd.DataFrame, minute: pd.Timestamp, threshold: float) -> tuple[pd.Timestamp, dict]:
    """Start of the run of failing minutes that ends at ``minute``, and the flags of the healthy minute before it."""
    known = frame[(frame.index <= minute) & frame["health"].notna()]
    healthy = known[known["health"] > threshold]
    if healthy.empty:
        return known.index[0], dict.fromkeys(FLAG_NAMES)
    last_ok = healthy.index[-1]
    after = known[known.index > last_ok]
    return after.index[0], eta.observed_flags(healthy.iloc[-1])


@dataclass(frozen=True)
class Snapshot:
    """One computed status: the JSON body requests hand out, and what it was computed from."""

    key: tuple | None
    checked_at: float  # time.monotonic() of the last check that found it current
    body: bytes = b""
    payload: dict = field(default_factory=dict)
    forecast: Forecast | None = None
    frame: pd.DataFrame | None = None
    model: ModelState | None = None
    now: dt.datetime | None = None
    #: Set when the status could not be computed (the database is down): requests answer 503.
    error: Exception | None = None
    #: Longer forecasts from the same origin, computed on demand (compatibility routes).
    extended: dict = field(default_factory=dict)


class StatusService:
    def __init__(
        self,
        settings: Settings,
        cache: MinuteCache,
        models: ModelWatcher,
        clock: Callable[[], dt.datetime],
        *,
        ttl_s: float = 1.0,
        on_update: Callable[[Snapshot], None] | None = None,
    ):
        self.settings = settings
        self.cache = cache
        self.models = models
        self.clock = clock
        self.ttl_s = ttl_s
        self.on_update = on_update
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> Snapshot:
        """The cached status; recomputed here only when none exists yet or it is older than the TTL
        and no background refresher keeps it current."""
        snap = self._snapshot
        if snap is not None:
            age = time.monotonic() - snap.checked_at
            if age < self.ttl_s or (self.background and age < max(15.0, 5 * self.ttl_s)):
                return snap
        return self.refresh()

    @property
    def background(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def refresh(self, force: bool = False) -> Snapshot:
        """Recompute when the data, the model or the clock bucket changed; otherwise keep the body."""
        with self._lock:
            now = self.clock()
            model = self.models.state
            old = self._snapshot
            try:
                latest = self.cache.latest_sample_times(now)
                key = (scored_until(latest, self.settings.grid_seconds), model.version, model.problem, int(now.timestamp() // RECOMPUTE_S))
                if not force and old is not None and old.error is None and old.key == key:
                    snap = dataclasses.replace(old, checked_at=time.monotonic())
                else:
                    if model.forecaster is not None:  # the recent frame must hold the model's input window
                        needed = model.forecaster.input_minutes + MAX_FILL_MINUTES + 10
                        self.cache.recent_minutes = max(self.cache.recent_minutes, needed)
                    frame = self.cache.refresh(now)
                    payload, forecast = compute_status(frame, latest, model, now, self.settings)
                    dumped = _SCHEMA.dump(payload)
                    body = json.dumps(dumped, separators=(",", ":")).encode()
                    snap = Snapshot(key, time.monotonic(), body, payload, forecast, frame, model, now)
            except DatabaseUnavailable as exc:
                if old is None or old.error is None:
                    log.warning("status unavailable: %s", exc)
                snap = Snapshot(None, time.monotonic(), error=exc, model=model, now=now)
            self._snapshot = snap
        if self.on_update:
            self.on_update(snap)
        return snap

    def forecast_from_current(self, snap: Snapshot, horizon_minutes: int) -> Forecast | None:
        """The snapshot's forecast, extended (rolled forward) to ``horizon_minutes`` if it is shorter."""
        base = snap.forecast
        if base is None:
            return None
        if horizon_minutes <= len(base.times):
            return _head(base, horizon_minutes)
        cached = snap.extended.get(horizon_minutes)
        if cached is None:
            forecaster = snap.model.forecaster if snap.model else None
            if forecaster is None or forecaster.version != base.model_version:
                return _head(base, len(base.times))
            cached = forecaster.forecast(snap.frame, base.origin, horizon_minutes)
            snap.extended[horizon_minutes] = cached
        return cached

    # --- background refresh ----------------------------------------------------------
    def start(self) -> None:
        if self.background:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="status-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # never let the refresher die
                log.exception("status refresh failed")
            self._stop.wait(self.ttl_s)


def scored_until(latest: dict[str, dt.datetime | None], grid_seconds: float) -> tuple:
    """The newest grid point every stream has reached, and which streams ever spoke.

    The four streams arrive unsynchronised (one of them every ~1.4 s), but health changes
    only when a new 5-second grid point can be scored, that is when the slowest stream
    passes it: this is what "new data" means for the status.
    """
    known = [t for t in latest.values() if t is not None]
    newest_common = min(known).timestamp() // grid_seconds if known else None
    return newest_common, tuple(t is not None for t in latest.values())


def _head(forecast: Forecast, minutes: int) -> Forecast:
    return Forecast(forecast.origin, forecast.times[:minutes], forecast.quantiles, forecast.values[:minutes], forecast.model_version)
