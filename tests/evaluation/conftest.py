"""Small simulated ranges shared by the evaluation tests (simulated in memory: about 0.2 s a day)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from evaluation import series
from telemetry.settings import Settings

UTC = dt.timezone.utc
FIXTURE_MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "v1"
START = dt.datetime(2026, 7, 6, tzinfo=UTC)


@pytest.fixture(scope="session")
def fixture_settings() -> Settings:
    """Settings whose registry is the committed format-1 fixture model (L=120, H=180, P10/P50/P90)."""
    return dataclasses.replace(Settings(), models_dir=FIXTURE_MODELS)


@pytest.fixture(scope="session")
def two_days(fixture_settings: Settings) -> series.EvalSeries:
    return series.from_simulation(31, START, START + dt.timedelta(days=2), fixture_settings)
