"""Shared data for the training tests: small simulated frames and a tiny, fast fit configuration."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from telemetry import simulator
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
