"""One background loop: a daemon thread that calls ``work`` every ``period_s`` seconds until stopped.

The status refresher, the fleet's round and the model watcher each own one. ``start()`` again after a
fork starts a new thread (a forked child's copy of the thread is not alive). An exception in ``work``
is logged and the loop goes on: a database outage or a bad model file must never end it.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, work: Callable[[], object], period_s: Callable[[], float], *, wait_first: bool = False):
        self.name = name
        self._work = work
        self._period_s = period_s
        self._wait_first = wait_first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        if self._wait_first and self._stop.wait(self._period_s()):
            return
        while not self._stop.is_set():
            try:
                self._work()
            except Exception:  # never let the loop die
                log.exception("%s failed", self.name)
            self._stop.wait(self._period_s())
