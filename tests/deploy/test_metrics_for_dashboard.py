"""The series the dashboard and the alerts read beyond the status gauges: the forecast band, each
input's flag, and the served model's training time (serving/metrics.py)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace

from prometheus_client import REGISTRY

from serving import metrics
from serving.eta import Crossing
from serving.status import CurrentHealth, HealthRule, DataFreshness, ModelInfo, PredictedCurrent, Status, TimeToFailure
from telemetry.catalogue import FLAG_NAMES

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def status(**changes) -> Status:
    flags = dict.fromkeys(FLAG_NAMES, 0.0) | {"response_time": 2.0, "request_rate": None}
    minute = NOW.replace(second=0)
    out = Status(
        state="failure_predicted", reason=None, detail="", as_of=NOW, threshold=0.3,
        current=CurrentHealth(minute, 0.75, 1.0, flags),
        predicted_current=PredictedCurrent(minute, 0.5, 0.667, 0.833),
        time_to_failure=TimeToFailure(Crossing(minute, 600.0), Crossing(minute, 300.0), None),
        data=DataFreshness(NOW - dt.timedelta(seconds=4), False, None, []),
        model=ModelInfo("20260301T090000Z-abc123", "20260301T090000Z-abc123", None),
        health=HealthRule(["cpu", "memory", "requests", "response_time"], "1 - (...) / 12", 1),
    )
    return replace(out, **changes)


def test_the_band_flags_and_model_time_follow_the_status():
    metrics.observe_status(status(), "20260301T090000Z-abc123", None, NOW)
    assert sample("pycemaker_predicted_health") == 0.667
    assert sample("pycemaker_predicted_health_band", quantile="0.1") == 0.5
    assert sample("pycemaker_predicted_health_band", quantile="0.9") == 0.833
    assert sample("pycemaker_health_flag", input="response_time") == 2.0
    assert sample("pycemaker_health_flag", input="cpu") == 0.0
    assert math.isnan(sample("pycemaker_health_flag", input="request_rate"))  # unknown, never 0
    assert sample("pycemaker_model_created_timestamp_seconds") == dt.datetime(2026, 3, 1, 9, tzinfo=UTC).timestamp()
    assert sample("pycemaker_time_to_failure_seconds", bound="latest") == math.inf


def test_without_a_status_or_a_model_everything_is_unknown():
    metrics.observe_status(None, None, None, NOW)
    for quantile in ("0.1", "0.9"):
        assert math.isnan(sample("pycemaker_predicted_health_band", quantile=quantile))
    for name in FLAG_NAMES:
        assert math.isnan(sample("pycemaker_health_flag", input=name))
    assert math.isnan(sample("pycemaker_model_created_timestamp_seconds"))


def test_a_version_not_named_by_the_registry_has_no_time():
    assert math.isnan(metrics.version_time("v1"))
    assert math.isnan(metrics.version_time(None))
    assert metrics.version_time("20261130T120000Z") == dt.datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp()
