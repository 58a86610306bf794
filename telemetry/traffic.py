"""Load shapes: how many users a simulated app has at each second (see docs/simulator.md).

``locust``: the original Locust ``LoadTestShape``, repeating every hour on the wall clock
(12 stages of 300 s, targets 10 .. 1000 users, approached at 1 user/s). The others belong to the
app family (:mod:`telemetry.app_family`): ``diurnal`` (a daily cycle with quieter weekends),
``flat`` and ``bursty`` (a base level with sudden surges), each with a slow random wander.
Every shape is a pure function of its parameters, the interval and the generator it is given.
"""

from __future__ import annotations

import numpy as np

STAGE_SECONDS = 300
STAGE_USERS = (10, 50, 100, 200, 400, 800, 1000, 800, 400, 200, 100, 10)
SPAWN_RATE = 1.0  # users per second, up and down
#: The seed app's peak: every shape is scaled from these many users.
PEAK_USERS = 1000.0
TRAFFIC_SHAPES: tuple[str, ...] = ("locust", "diurnal", "flat", "bursty")


def users_profile() -> np.ndarray:
    """Users at each second of the hour: stage targets approached at the spawn rate."""
    targets = np.repeat(STAGE_USERS, STAGE_SECONDS).astype(float)
    users = np.empty(len(targets))
    current = float(STAGE_USERS[-1])  # the previous hour ends at its last stage's target
    for i, target in enumerate(targets):
        current += float(np.clip(target - current, -SPAWN_RATE, SPAWN_RATE))
        users[i] = current
    return users


def users_at(
    shape: str,
    secs: np.ndarray,
    rng: np.random.Generator | None,
    *,
    base_level: float = 0.2,
    peak_hour: float = 14.0,
    weekend_level: float = 0.6,
    bursts_per_hour: float = 1.0,
    wander: float = 0.0,
) -> np.ndarray:
    """Users of the seed-sized app (peak :data:`PEAK_USERS`) at each Unix second in ``secs`` (consecutive).

    ``base_level``: the quiet level, a fraction of the peak (``diurnal``'s night, ``flat``'s level,
    ``bursty``'s floor); ``peak_hour``: UTC hour of the daily peak; ``weekend_level``: Saturday and
    Sunday's factor; ``bursts_per_hour``: mean surges per hour; ``wander``: standard deviation of a
    slow (per-minute, mean-reverting) multiplicative drift.
    """
    if shape == "locust":
        return users_profile()[secs % 3600]
    if rng is None:
        raise ValueError(f"traffic shape {shape!r} needs a random generator")
    if shape == "diurnal":
        hour = (secs % 86400) / 3600.0
        daily = (0.5 + 0.5 * np.cos(2 * np.pi * (hour - peak_hour) / 24.0)) ** 1.5
        weekday = (secs // 86400 + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
        week = np.where(weekday >= 5, weekend_level, 1.0)
        level = (base_level + (1 - base_level) * daily) * week
    elif shape == "flat":
        level = np.full(len(secs), base_level)
    elif shape == "bursty":
        level = np.full(len(secs), base_level) + _bursts(len(secs), bursts_per_hour, rng)
    else:
        raise ValueError(f"unknown traffic shape {shape!r}: use one of {', '.join(TRAFFIC_SHAPES)}")
    return PEAK_USERS * level * _wander(len(secs), wander, rng)


def _bursts(n: int, per_hour: float, rng: np.random.Generator) -> np.ndarray:
    """Surges: a 30-s rise to 0.3-1.0 of the peak, held 1-10 min, then a 2-min decay."""
    out = np.zeros(n)
    for _ in range(int(rng.poisson(per_hour * n / 3600.0))):
        at = int(rng.integers(0, n))
        hold = int(rng.uniform(60, 600))
        height = float(rng.uniform(0.3, 1.0))
        t = np.arange(min(n - at, hold + 600))
        surge = height * np.minimum(t / 30.0, 1.0) * np.where(t < hold, 1.0, np.exp(-(t - hold) / 120.0))
        out[at : at + len(t)] = np.maximum(out[at : at + len(t)], surge)
    return out


def _wander(n: int, sd: float, rng: np.random.Generator) -> np.ndarray:
    """A mean-reverting multiplicative drift, per minute, interpolated to seconds (1 when ``sd`` is 0)."""
    if sd <= 0:
        return np.ones(n)
    minutes = n // 60 + 2
    steps = rng.normal(0, sd * np.sqrt(1 - 0.95**2), minutes)
    walk = np.empty(minutes)
    walk[0] = rng.normal(0, sd)
    for i in range(1, minutes):
        walk[i] = 0.95 * walk[i - 1] + steps[i]
    return np.exp(np.interp(np.arange(n) / 60.0, np.arange(minutes), walk))
