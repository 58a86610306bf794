"""The demo target's knobs (no Flask import, so the CLI can build its parser anywhere)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TargetConfig:
    #: CPU time each request burns (ms): sets the app's capacity (about 1000 / work_ms req/s per core).
    work_ms: float = 5.0
    #: Concurrent requests beyond which the app answers 503.
    max_inflight: int = 64
    #: The "heap" memory usage is measured against (jvm_memory_max_bytes).
    heap_max_bytes: int = 512 * 2**20
    #: PBKDF2 iterations for a registration's password hash.
    hash_iterations: int = 2_000
