"""The simulated serving scenario, shared by the whole session, and apps on a controllable clock.

Its fixtures are registered once, by tests/conftest.py, so the serving, reliability, security
and dashboard tests all read the same database (written once per session, not once per package).

The scenario is 8 simulated hours (seed 5) ending 2026-03-02T00:00Z, written once to a
database on the session's real SecantusDB server. It holds an hourly load peak that fails
on its own, a CPU saturation (17:18-17:29) and a memory leak that starts at 18:36, fails
for good from 19:16 and crashes just before 19:59; the hours after 20:00 are calm between
peaks. Tests replay it by setting the app's clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from serving.app import create_app
from telemetry import simulator
from telemetry.health import minute_health
from telemetry.settings import Settings
from telemetry.store import connect

UTC = dt.timezone.utc
SCENARIO_END = dt.datetime(2026, 3, 2, tzinfo=UTC)
SCENARIO_START = SCENARIO_END - dt.timedelta(hours=8)
SCENARIO_SEED = 5


def at(hhmmss: str) -> dt.datetime:
    """A time on the scenario's day: ``at("19:08:30")``."""
    h, m, *s = (int(x) for x in hhmmss.split(":"))
    return dt.datetime(2026, 3, 1, h, m, s[0] if s else 0, tzinfo=UTC)


class Clock:
    """A settable "now" for the app."""

    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclasses.dataclass(frozen=True)
class Scenario:
    database: str
    simulation: simulator.Simulation
    #: Per-minute health of the whole scenario (telemetry.health.minute_health).
    health: pd.DataFrame

    @property
    def leak(self) -> simulator.Incident:
        return next(i for i in self.simulation.incidents if i.type == "memory_leak")


@pytest.fixture(scope="session")
def scenario(mongo_uri: str) -> Iterator[Scenario]:
    settings = Settings(mongo_uri=mongo_uri, database=f"serving_scenario_{uuid.uuid4().hex[:8]}")
    sim = simulator.simulate(SCENARIO_START, SCENARIO_END, SCENARIO_SEED, settings)
    db = connect(settings, autostart=False)
    simulator.write(db, sim, settings)
    health = minute_health(sim.samples, SCENARIO_START, SCENARIO_END, settings)
    try:
        yield Scenario(settings.database, sim, health)
    finally:
        db.client.drop_database(settings.database)
        db.client.close()


@pytest.fixture
def scenario_settings(scenario: Scenario, mongo_uri: str, tmp_path: Path) -> Settings:
    """Settings reading the scenario (read-only), with this test's own model registry."""
    return Settings(mongo_uri=mongo_uri, database=scenario.database, models_dir=tmp_path / "models", data_dir=tmp_path / "db")


@pytest.fixture
def make_app():
    """``make_app(settings, clock)``: an app without background threads; the status is recomputed on demand."""
    apps = []

    def build(settings: Settings, clock: Clock | None = None, **kwargs):
        kwargs.setdefault("background", False)
        kwargs.setdefault("status_ttl_s", 0.0)
        app = create_app(settings, clock=clock, **kwargs)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["pycemaker"].stop()
