"""Shared data for the training tests: small simulated frames and a tiny, fast fit configuration."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import numpy as np
import pandas as pd
import pytest

from telemetry import simulator, store
from telemetry.frames import minute_frame
from telemetry.settings import Settings

UTC = dt.timezone.utc
START = dt.datetime(2026, 5, 4, tzinfo=UTC)
#: L and H small enough for two days of data and seconds of training (the contract is the same).
TINY = dict(input_minutes=120, horizon_minutes=60)


def tiny_fit_config(**changes):
    from training.fit import FitConfig

    values = dict(hidden_size=16, batch_size=64, max_epochs=10, patience=4, train_stride=2, learning_rate=5e-3, seed=7, threads=1)
    values.update(changes)
    return FitConfig(**values)


def tiny(settings: Settings, **changes) -> Settings:
    return dataclasses.replace(settings, **{**TINY, **changes})


@pytest.fixture(scope="session")
def two_days_simulation():
    """Two simulated days (seed 11): 2880 minutes, incidents in every split part."""
    end = START + dt.timedelta(days=2)
    return simulator.simulate(START, end, seed=11, settings=Settings())


@pytest.fixture(scope="session")
def two_days_frame(two_days_simulation):
    return minute_frame(two_days_simulation.samples, START, START + dt.timedelta(days=2), Settings())


@pytest.fixture(scope="session")
def one_day_simulation():
    """One simulated day (seed 11), for runs that go through the store (writing and reading cost seconds)."""
    return simulator.simulate(START, START + dt.timedelta(days=1), seed=11, settings=Settings())


@pytest.fixture(scope="session")
def one_day_store(mongo_uri, one_day_simulation) -> Settings:
    """A database holding :func:`one_day_simulation` as the default service's, written once per session. Shared:
    tests read it and keep their registries in their own ``models_dir``. Raw samples for the last :data:`RAW_TAIL`
    only, the rollups for the whole day (simulator.write ``raw_since``): training reads the rows either way, and
    writing a day's raw samples costs ten seconds a service (the rollups' equality with the raw frames:
    tests/telemetry/test_rollups.py)."""
    base = Settings(mongo_uri=mongo_uri, database=f"train_{uuid.uuid4().hex[:10]}")
    db = store.connect(base, autostart=False)
    end = one_day_simulation.samples["cpu_usage"].index[-1].to_pydatetime()
    simulator.write(db, one_day_simulation, base, raw_since=end - RAW_TAIL)
    db.client.close()
    # Not dropped after: the name is unique and the server's data dies with the session (dropping costs ~8 s).
    return base


#: The span of raw samples the stores below keep (before it: rollups only).
RAW_TAIL = dt.timedelta(hours=1)
FLEET = ["svc-01", "svc-02", "svc-03"]
#: The fleet's span. The per-service choice (test_fleet_training.py) needs a day: on 12 hours svc-01's
#: stretched pattern still shows a 60-minute season.
FLEET_HOURS = 24
#: L and H for the pooled LSTM (test_fleet_training.py): smaller windows train faster (its split needs
#: (L + H) / 0.15 minutes: 10 h).
FLEET_LSTM = dict(input_minutes=60, horizon_minutes=30)
SEASONAL = "svc-03"
#: svc-03 repeats one hour all day (with a little noise): its own baselines find the hourly season and forecast it
#: closely. svc-01, the primary service a run's baselines are fitted on, is the same app slowed down in time (a
#: 60-minute pattern becomes a 77-minute one, no season the detector tries), so those baselines find no season and
#: cannot; svc-02 is svc-01's twin, so its own baselines are svc-01's.
PERIOD = dt.timedelta(hours=1)
STRETCH = 60 / 47


def stretched(sim: simulator.Simulation, start: dt.datetime, end: dt.datetime) -> simulator.Simulation:
    """Time slowed by :data:`STRETCH` from ``start`` (cut at ``end``)."""
    out = {}
    for name, frame in sim.samples.items():
        moved = frame.copy()
        moved.index = (start + (frame.index - start) * STRETCH).round("ms")
        out[name] = moved[moved.index < end]
    return simulator.Simulation(out, [])


def pure_seasonal(sim: simulator.Simulation, start: dt.datetime, end: dt.datetime, seed: int = 3) -> simulator.Simulation:
    """Every stream's samples of the first hour repeated from ``start`` to ``end``, each value times 1 + N(0, 3%)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, frame in sim.samples.items():
        piece = frame[frame.index < start + PERIOD]
        copies = []
        k = 0
        while start + k * PERIOD < end:
            shifted = piece * (1 + 0.03 * rng.standard_normal(piece.shape))
            shifted.index = piece.index + k * PERIOD
            copies.append(shifted[shifted.index < end])
            k += 1
        out[name] = pd.concat(copies)
    return simulator.Simulation(out, [])


@pytest.fixture(scope="session")
def fleet_store(mongo_uri) -> Settings:
    """Three services of :data:`FLEET_HOURS` and nothing for the default service, written once per session for the
    fleet tests (test_fleet_training.py): svc-01 and its twin svc-02 (one simulated app,
    time stretched), svc-03 (that app's first hour repeated: purely seasonal)."""
    base = Settings(mongo_uri=mongo_uri, database=f"fleet_{uuid.uuid4().hex[:10]}")
    db = store.connect(base, autostart=False)
    end = START + dt.timedelta(hours=FLEET_HOURS)
    _, seed, scale = simulator.fleet_service(42, 1, 3)
    sim = simulator.simulate(START, end, seed, base, capacity_scale=scale)
    raw_since = end - RAW_TAIL  # as one_day_store
    simulator.write(db, stretched(sim, START, end), base, service="svc-01", raw_since=raw_since)
    simulator.write(db, stretched(sim, START, end), base, service="svc-02", raw_since=raw_since)
    simulator.write(db, pure_seasonal(sim, START, end), base, service=SEASONAL, raw_since=raw_since)
    db.client.close()
    return base
