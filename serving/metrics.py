"""Prometheus metrics of the API (``GET /metrics``).

Under gunicorn every worker has its own memory, so ``pycemaker serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` before anything imports prometheus_client: request histograms
then add up across workers, and the status gauges report the most recent worker's value.
Without it (the dev server, tests) the process's own registry is exposed.
"""

from __future__ import annotations

import datetime as dt
import math
import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

from serving.status import STATES, Status
from telemetry.catalogue import FLAG_NAMES

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HEALTH = Gauge("pycemaker_health", "Observed health of the newest minute (NaN when unknown).", multiprocess_mode="livemostrecent")
PREDICTED_HEALTH = Gauge(
    "pycemaker_predicted_health", "P50 health the model forecast for the newest minute (NaN without a model).", multiprocess_mode="livemostrecent"
)
# The band around PREDICTED_HEALTH and the per-input flags: the Grafana dashboard's panels (deploy/grafana).
PREDICTED_HEALTH_BAND = Gauge(
    "pycemaker_predicted_health_band",
    "P10 (quantile=0.1) and P90 (quantile=0.9) of the health forecast for the newest minute (NaN without a model).",
    ["quantile"],
    multiprocess_mode="livemostrecent",
)
HEALTH_FLAG = Gauge(
    "pycemaker_health_flag", "Flag 0-3 of each health input in the newest minute (NaN when unknown).", ["input"],
    multiprocess_mode="livemostrecent",
)
TIME_TO_FAILURE = Gauge(
    "pycemaker_time_to_failure_seconds",
    "Seconds until health is forecast to cross the failure threshold: bound=expected (P50 path), earliest (P10),"
    " latest (P90). 0 while failing, +Inf when not within the horizon, NaN when unknown.",
    ["bound"],
    multiprocess_mode="livemostrecent",
)
STATUS_STATE = Gauge("pycemaker_status_state", "1 for the current status state, 0 for the others.", ["state"], multiprocess_mode="livemostrecent")
MODEL_INFO = Gauge("pycemaker_model_info", "1 for the model version being served.", ["version"], multiprocess_mode="livemostrecent")
MODEL_CREATED = Gauge(
    "pycemaker_model_created_timestamp_seconds",
    "When the model being served was trained (Unix time, from its version name; NaN when unknown).",
    multiprocess_mode="livemostrecent",
)
MODEL_PROBLEM = Gauge(
    "pycemaker_model_problem", "1 while the model the registry points at cannot be loaded (the last good one serves).", multiprocess_mode="livemax"
)
DATA_AGE = Gauge("pycemaker_data_age_seconds", "Seconds since the newest sample of any stream.", multiprocess_mode="livemostrecent")
REQUEST_SECONDS = Histogram(
    "pycemaker_http_request_duration_seconds", "HTTP request latency by route.", ["method", "route", "status"], buckets=LATENCY_BUCKETS
)
MODEL_SWAPS = Counter("pycemaker_model_swaps", "Models swapped in without a restart.")
# Per service: labelled for the ``metrics_services`` services soonest to fail (bounded cardinality); counted for all.
SERVICE_HEALTH = Gauge(
    "pycemaker_service_health", "Observed health of a service's newest minute (NaN when unknown); the services soonest to fail.",
    ["service"], multiprocess_mode="livemostrecent",
)
SERVICE_TIME_TO_FAILURE = Gauge(
    "pycemaker_service_time_to_failure_seconds",
    "A service's seconds to failure, as pycemaker_time_to_failure_seconds; the services soonest to fail.",
    ["service", "bound"], multiprocess_mode="livemostrecent",
)
SERVICES = Gauge("pycemaker_services", "Services watched, by the state of their status.", ["state"], multiprocess_mode="livemostrecent")

_versions_seen: set[str] = set()
_services_labelled: set[str] = set()


def observe_status(status: Status | None, model_version: str | None, model_problem: str | None, now=None) -> None:
    """Set the status gauges from a status (None: the status could not be computed)."""
    state = status.state if status else "unknown"
    for name in STATES:
        STATUS_STATE.labels(name).set(1.0 if name == state else 0.0)
    current = status.current if status else None
    predicted = status.predicted_current if status else None
    HEALTH.set(_nan(current.health if current else None))
    PREDICTED_HEALTH.set(_nan(predicted.p50 if predicted else None))
    PREDICTED_HEALTH_BAND.labels("0.1").set(_nan(predicted.p10 if predicted else None))
    PREDICTED_HEALTH_BAND.labels("0.9").set(_nan(predicted.p90 if predicted else None))
    flags = current.flags if current else {}
    for name in FLAG_NAMES:
        HEALTH_FLAG.labels(name).set(_nan(flags.get(name)))
    ttf = status.time_to_failure if status else None
    for bound in ("expected", "earliest", "latest"):
        if ttf is None:
            value = math.nan
        else:
            crossing = getattr(ttf, bound)
            value = math.inf if crossing is None else float(crossing.seconds)
        TIME_TO_FAILURE.labels(bound).set(value)
    latest = status.data.latest_sample if status else None
    DATA_AGE.set((now - latest).total_seconds() if latest is not None and now is not None else math.nan)
    observe_model(model_version, model_problem)


def observe_fleet(ranked: list[tuple[str, Status | None]], limit: int) -> None:
    """Set the per-service gauges from the fleet, soonest failure first: labelled for the first ``limit``
    services only (the others' labels are removed), counted by state for all."""
    global _services_labelled
    counts = dict.fromkeys(STATES, 0)
    for _, status in ranked:
        counts[status.state if status else "unknown"] += 1
    for state, count in counts.items():
        SERVICES.labels(state).set(count)
    kept = ranked[:limit]
    for name, status in kept:
        SERVICE_HEALTH.labels(name).set(_nan(status.current.health if status else None))
        ttf = status.time_to_failure if status else None
        for bound in ("expected", "earliest", "latest"):
            crossing = getattr(ttf, bound) if ttf is not None else None
            value = math.nan if ttf is None else (math.inf if crossing is None else float(crossing.seconds))
            SERVICE_TIME_TO_FAILURE.labels(name, bound).set(value)
    names = {name for name, _ in kept}
    for gone in _services_labelled - names:
        SERVICE_HEALTH.remove(gone)
        for bound in ("expected", "earliest", "latest"):
            SERVICE_TIME_TO_FAILURE.remove(gone, bound)
    _services_labelled = names


def observe_model(version: str | None, problem: str | None) -> None:
    for seen in _versions_seen - {version}:
        MODEL_INFO.labels(seen).set(0.0)
    if version:
        _versions_seen.add(version)
        MODEL_INFO.labels(version).set(1.0)
    MODEL_PROBLEM.set(1.0 if problem else 0.0)
    MODEL_CREATED.set(version_time(version))


def version_time(version: str | None) -> float:
    """Unix time of a version named by ``forecasting.registry.new_version`` (``20261130T120000Z-...``); NaN otherwise."""
    try:
        return dt.datetime.strptime((version or "")[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        return math.nan


def _nan(value) -> float:
    return math.nan if value is None else float(value)


def exposition() -> tuple[bytes, str]:
    """The text exposition, aggregated over gunicorn workers when running multi-process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST
