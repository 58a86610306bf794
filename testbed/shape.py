"""The original load shape as a pure function (Locust-free, so it can be tested without gevent's patching).

The numbers are the simulator's (``telemetry/simulator.py``): 12 stages of 300 s with 10, 50,
100, 200, 400, 800, 1000, 800, 400, 200, 100, 10 users and a spawn rate of 1 user/s, the
cycle repeating every hour.
"""

from __future__ import annotations

from telemetry.simulator import SPAWN_RATE, STAGE_SECONDS, STAGE_USERS

CYCLE_SECONDS = STAGE_SECONDS * len(STAGE_USERS)


def stage_at(run_time: float, time_scale: float = 1.0, user_scale: float = 1.0) -> tuple[int, float]:
    """(users, spawn rate) after ``run_time`` seconds of the shape.

    ``time_scale`` compresses time (60: one cycle per minute) and ``user_scale`` shrinks every
    stage (at least 1 user); the spawn rate scales with both, so a ramp keeps its share of a stage.
    """
    if time_scale <= 0 or user_scale <= 0:
        raise ValueError("time_scale and user_scale must be positive")
    stage_seconds = STAGE_SECONDS / time_scale
    stage = int((run_time % (CYCLE_SECONDS / time_scale)) // stage_seconds)
    users = max(1, round(STAGE_USERS[stage] * user_scale))
    return users, SPAWN_RATE * time_scale * user_scale
