"""Follows the registry's ``current`` pointer: loads a newly promoted model and swaps it in atomically.

Each worker polls every ``model_poll_seconds``. A request takes the forecaster once and keeps
that reference, so a swap never disturbs a request in flight. A pointed model that is missing
or corrupt (unreadable card, a file onnxruntime refuses, outputs of the wrong shape) is never
swapped in: the last good model keeps serving, the problem is logged once and reported by
``/readyz``, and the load is retried when the version's files change. The served version's own
files are watched too: changed in place, they are reloaded, or reported if they no longer load.

A fresh install (no ``current`` pointer, nothing served yet) serves the pretrained base model zero-shot
(``Settings.base_models_dir``, ``pycemaker pretrain``) from the first lookback window; the first
promoted version replaces it, and it never comes back once a registry model has been served.

Per-service assignments (``services.json``, decided by a fleet run against the ``current`` model:
forecasting/registry.py) are polled alike: each assigned version is loaded and proved, and
:meth:`ModelWatcher.for_service` answers a service's model: its assigned one, else the ``current``
model (no assignment, an assignment decided against another champion, or an assigned model that
does not load, which is logged and reported in its state's ``problem``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from forecasting import registry
from forecasting.contract import FEATURES, TARGETS
from forecasting.forecaster import OnnxForecaster
from serving.periodic import Periodic
from telemetry.settings import Settings

log = logging.getLogger(__name__)
UTC = dt.timezone.utc


@dataclass(frozen=True)
class ModelState:
    """What a worker serves, replaced as a whole (never mutated)."""

    forecaster: OnnxForecaster | None = None
    #: The version ``current`` points at (None: no pointer yet).
    wanted: str | None = None
    #: Why ``wanted`` is not what is served (None when all is well).
    problem: str | None = None
    loaded_at: dt.datetime | None = None
    #: True: the base model zero-shot (the registry has no model yet), from ``base_models_dir``.
    zero_shot: bool = False
    #: True: a service's own model (``services.json``), not the fleet's ``current`` one.
    assigned: bool = False

    @property
    def version(self) -> str | None:
        return self.forecaster.version if self.forecaster else None


def load_forecaster(models_dir: Path, version: str, settings: Settings, step_minutes: int | None = None) -> OnnxForecaster:
    """Load a version and prove it honours the contract with one inference on a blank window.

    ``step_minutes``: the frame step this worker must serve (setting ``frame_minutes``); a model made
    for another step is refused.
    """
    forecaster = OnnxForecaster(models_dir, version, settings)
    card = forecaster.card
    if tuple(card.features) != FEATURES or tuple(card.targets) != TARGETS:
        raise registry.RegistryError(f"model {version} was built for other channels ({card.features} -> {card.targets})")
    if step_minutes is not None and card.step_minutes != step_minutes:
        raise registry.RegistryError(f"model {version} forecasts {card.step_minutes}-minute steps; this service's frames "
                                     f"are {step_minutes}-minute (frame_minutes)")
    blank = np.zeros((1, forecaster.input_steps, len(FEATURES)), np.float32)
    out = forecaster.predict_scaled(blank)
    expected = (1, forecaster.horizon_steps, len(TARGETS), len(forecaster.quantiles))
    if out.shape != expected:
        raise registry.RegistryError(f"model {version} outputs {out.shape}, its card promises {expected}")
    if not np.isfinite(out).all():
        raise registry.RegistryError(f"model {version} outputs non-finite values")
    return forecaster


def _signature(models_dir: Path, version: str) -> tuple:
    """Changes when a version's files change (so a repaired model is retried)."""
    out = []
    for name in (registry.CARD, registry.MODEL):
        try:
            st = (models_dir / version / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


class ModelWatcher:
    def __init__(self, settings: Settings, on_swap: Callable[[ModelState], None] | None = None, step_minutes: int | None = None):
        self.settings = settings
        #: The frame step this worker serves (None: any model's).
        self.step_minutes = step_minutes
        self.models_dir = settings.models_dir
        self.on_swap = on_swap
        self._state = ModelState()
        self._lock = threading.Lock()
        self._failed: tuple[str, tuple] | None = None
        #: The files the served model was loaded from (a change is reloaded, or reported if it no longer loads).
        self._served_signature: tuple | None = None
        self._logged_problem: str | None = None
        self._poller = Periodic("model-watcher", self.poll, lambda: self.settings.model_poll_seconds, wait_first=True)
        #: service -> its assigned model's state, replaced whole; and what each assigned version last loaded as.
        self._assigned: dict[str, ModelState] = {}
        self._loaded: dict[str, tuple[tuple, OnnxForecaster | None, str | None]] = {}

    @property
    def state(self) -> ModelState:
        return self._state

    @property
    def forecaster(self) -> OnnxForecaster | None:
        return self._state.forecaster

    def for_service(self, name: str) -> ModelState:
        """The model that serves ``name``: its assignment if it has one that loads, else the ``current`` model's state."""
        return self._assigned.get(name) or self._state

    def view(self, name: str) -> "ServiceModel":
        """What a service's status reads its model from (:class:`ServiceModel`)."""
        return ServiceModel(self, name)

    @property
    def assigned(self) -> dict[str, ModelState]:
        return self._assigned

    def poll(self) -> bool:
        """Check the pointer (and the assignments) once; returns True when a new model was swapped in."""
        with self._lock:
            swapped = self._poll()
            return self._poll_assignments() or swapped

    def _poll_assignments(self) -> bool:
        """Load every assigned version not loaded yet (or whose files changed); replace the assignments whole."""
        try:
            wanted = registry.service_assignments(self.models_dir)
        except OSError as exc:
            log.warning("cannot read the assignments: %s", exc)
            return False
        current = self._state
        loaded: dict[str, tuple[tuple, OnnxForecaster | None, str | None]] = {}
        assigned: dict[str, ModelState] = {}
        for name, version in sorted(wanted.items()):
            if version == current.version:
                continue  # the fleet's model: nothing of its own
            if version not in loaded:
                signature = _signature(self.models_dir, version)
                known = self._loaded.get(version)
                if known is not None and known[0] == signature:
                    loaded[version] = known
                else:
                    try:
                        loaded[version] = (signature, load_forecaster(self.models_dir, version, self.settings, self.step_minutes), None)
                        log.info("model %s loaded for its assigned service(s)", version)
                    except Exception as exc:  # the service keeps the fleet's model
                        problem = f"model {version} assigned to {name} cannot be loaded: {exc}; serving {current.version}"
                        log.warning("%s", problem)
                        loaded[version] = (signature, None, problem)
            _, forecaster, problem = loaded[version]
            old = self._assigned.get(name)
            if forecaster is None:
                assigned[name] = ModelState(current.forecaster, version, problem, current.loaded_at, current.zero_shot)
            elif old is not None and old.forecaster is forecaster and old.problem is None:
                assigned[name] = old
            else:
                assigned[name] = ModelState(forecaster, version, None, dt.datetime.now(UTC), assigned=True)
        changed = assigned != self._assigned
        self._loaded = loaded
        if changed:
            self._assigned = assigned  # one reference assignment, as for ``current``
        return changed

    def _poll(self) -> bool:
        state = self._state
        try:
            wanted = registry.current_version(self.models_dir)
        except OSError as exc:
            self._set(state, state.wanted, f"cannot read the registry pointer ({exc})")
            return False
        if wanted is None:
            if state.version is None or state.zero_shot:
                return self._serve_base(state)
            self._set(state, None, f"the registry has no current pointer; still serving {state.version}")
            return False
        signature = _signature(self.models_dir, wanted)
        if wanted == state.version and signature == self._served_signature:
            self._set(state, wanted, None)
            return False
        if self._failed == (wanted, signature):
            return False  # already tried these very files
        try:
            forecaster = load_forecaster(self.models_dir, wanted, self.settings, self.step_minutes)
        except Exception as exc:  # a corrupt model must never take a worker down
            self._failed = (wanted, signature)
            if wanted == state.version:
                # The served version's files changed under it (damaged in place): its session is in memory and
                # keeps serving, but a worker started now could not load it.
                loaded = state.loaded_at.isoformat(timespec="seconds") if state.loaded_at else "start-up"
                problem = f"model {wanted} changed on disk and cannot be loaded: {exc}; still serving the copy loaded at {loaded}"
            else:
                serving = f"still serving {state.version}" if state.version else "no model loaded"
                problem = f"model {wanted} cannot be loaded: {exc}; {serving}"
            self._set(state, wanted, problem)
            return False
        self._failed = None
        self._served_signature = signature
        new = ModelState(forecaster, wanted, None, dt.datetime.now(UTC))
        self._state = new  # one reference assignment: requests see the old model or the new one
        log.info("serving model %s (was %s)", wanted, state.version)
        self._logged_problem = None
        if self.on_swap:
            self.on_swap(new)
        return True

    def _serve_base(self, state: ModelState) -> bool:
        """An empty registry: the base model zero-shot, if one is shipped and loads (else nothing, as before)."""
        base_dir = Path(self.settings.base_models_dir)
        try:
            version = registry.current_or_newest(base_dir)
        except OSError:
            version = None
        if version is None:
            self._set(state, None, None)
            return False
        signature = ("base",) + _signature(base_dir, version)
        if state.zero_shot and version == state.version and signature == self._served_signature:
            self._set(state, None, None)
            return False
        if self._failed == (version, signature):
            return False
        try:
            forecaster = load_forecaster(base_dir, version, self.settings, self.step_minutes)
        except Exception as exc:  # no base model is no worse than before it existed: the status says no_model
            self._failed = (version, signature)
            self._set(state, None, f"the base model {version} in {base_dir} cannot be loaded: {exc}")
            return False
        self._failed = None
        self._served_signature = signature
        new = ModelState(forecaster, None, None, dt.datetime.now(UTC), zero_shot=True)
        self._state = new
        log.info("the registry is empty: serving the base model %s zero-shot", version)
        self._logged_problem = None
        if self.on_swap:
            self.on_swap(new)
        return True

    def _set(self, state: ModelState, wanted: str | None, problem: str | None) -> None:
        if (state.wanted, state.problem) != (wanted, problem):
            self._state = ModelState(state.forecaster, wanted, problem, state.loaded_at, state.zero_shot)
        if problem and problem != self._logged_problem:
            log.warning("%s", problem)
        self._logged_problem = problem

    # --- background polling -------------------------------------------------------
    def start(self) -> None:
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop()


class ServiceModel:
    """One service's model, as its status reads it: ``state`` and ``forecaster`` like the watcher's, but the service's
    (its assignment, else the ``current`` model)."""

    def __init__(self, watcher: ModelWatcher, service: str):
        self.watcher = watcher
        self.service = service

    @property
    def state(self) -> ModelState:
        return self.watcher.for_service(self.service)

    @property
    def forecaster(self) -> OnnxForecaster | None:
        return self.state.forecaster
