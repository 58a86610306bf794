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

    @property
    def state(self) -> ModelState:
        return self._state

    @property
    def forecaster(self) -> OnnxForecaster | None:
        return self._state.forecaster

    def poll(self) -> bool:
        """Check the pointer once; returns True when a new model was swapped in."""
        with self._lock:
            return self._poll()

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
