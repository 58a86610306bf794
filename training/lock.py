"""One training at a time per registry: an exclusive ``flock`` on a file in ``models_dir``.

Held for a whole run by ``pycemaker train --once`` and by the scheduler alike.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

LOCK_FILE = ".training.lock"


class TrainingBusy(RuntimeError):
    """Another training run holds this registry's lock."""


class TrainingLock:
    """An exclusive, non-blocking ``flock`` on ``models_dir/.training.lock``.

    Each instance opens its own file description, so two threads of one process exclude each
    other as two processes do. The kernel drops the lock when the holder dies (no stale locks).
    """

    def __init__(self, models_dir: Path):
        self.path = Path(models_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "TrainingLock":
        if not self.acquire():
            raise TrainingBusy(f"another training run holds {self.path}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
