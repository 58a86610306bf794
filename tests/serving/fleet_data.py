"""Three simulated services beside the default one, in their own database (module-scoped fixtures for the fleet tests)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from telemetry import simulator
from telemetry.settings import Settings
from telemetry.store import connect
from tests.serving.onnx_models import declining_model

UTC = dt.timezone.utc
END = dt.datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
START = END - dt.timedelta(hours=2, minutes=20)
NOW = dt.datetime(2026, 3, 2, 0, 52, 40, tzinfo=UTC)  # recovering from the hourly peak: each service at its own pace
PEAK = dt.datetime(2026, 3, 2, 0, 40, 40, tzinfo=UTC)  # the peak's last minutes: failing now
SERVICES = ("svc-01", "svc-02", "svc-03")
STALE = "svc-03"  # its samples stop an hour early: unknown (stale data)


@pytest.fixture(scope="module")
def fleet_database(mongo_uri: str):
    settings = Settings(mongo_uri=mongo_uri, database=f"fleet_{uuid.uuid4().hex[:8]}")
    db = connect(settings, autostart=False)
    for index, name in enumerate(SERVICES, start=1):
        _, seed, scale = simulator.fleet_service(11, index, len(SERVICES))
        end = END - dt.timedelta(hours=1) if name == STALE else END
        sim = simulator.simulate(START, end, seed, settings, capacity_scale=scale)
        simulator.write(db, sim, settings, service=name)
    default = simulator.simulate(START, END, 5, settings)  # the seed's shape: no service field
    simulator.write(db, default, settings)
    try:
        yield settings.database
    finally:
        db.client.drop_database(settings.database)
        db.client.close()


@pytest.fixture
def fleet_settings(fleet_database: str, mongo_uri: str, tmp_path) -> Settings:
    settings = Settings(mongo_uri=mongo_uri, database=fleet_database, models_dir=tmp_path / "models", data_dir=tmp_path / "db")
    declining_model(settings.models_dir, rate=0.01, H=60)  # health falls 0.01/min: crosses 0.3 within an hour below 0.9
    return settings
