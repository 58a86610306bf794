"""Any service's streams, any cadence, end to end: store -> train -> serve -> status, on the real server.

A three-stream service (no JVM memory: a Python or Go service) and a one-stream service scraped every
15 s: each trains every kind (the LSTM with its missing channels masked), and the API serves forecasts
and a time to failure with the health rule it uses stated in the status.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from forecasting import registry
from telemetry import simulator, store
from telemetry.catalogue import STREAMS_BY_NAME
from tests.scenario import Clock
from tests.training.conftest import RAW_TAIL, TINY, tiny_fit_config

pytest.importorskip("torch")

from training.pipeline import train_once  # noqa: E402

UTC = dt.timezone.utc
END = dt.datetime(2026, 5, 6, tzinfo=UTC)
pytestmark = pytest.mark.slow


def write_service(settings, db, streams: tuple[str, ...], every: int = 1) -> None:
    """One simulated day of ``streams`` only, keeping every ``every``-th sample (``every=3``: a 15-s scrape)."""
    sim = simulator.simulate(END - dt.timedelta(days=1), END, 13, settings)
    wanted = {STREAMS_BY_NAME[n].collection for n in streams}
    sim.samples = {c: frame.iloc[::every] for c, frame in sim.samples.items() if c in wanted}
    simulator.write(db, sim, settings, raw_since=END - RAW_TAIL)  # rollups before the last hour (conftest.py)


@pytest.mark.parametrize(
    ("streams", "every", "formula"),
    [
        (("cpu", "requests", "response_time"), 1, "1 - (cpu + request_rate + response_time flags) / 9"),
        (("cpu",), 3, "1 - (cpu flags) / 3"),
    ],
    ids=["three streams", "one stream every 15 s"],
)
def test_a_service_with_fewer_streams_gets_models_forecasts_and_a_time_to_failure(settings, db, make_app, streams, every, formula):
    service = dataclasses.replace(settings, streams=streams, **TINY)
    write_service(service, db, streams, every)
    result = train_once(service, db, config=tiny_fit_config(max_epochs=3), progress_bar=False)
    assert result.promoted, result.error or result.reason
    card = registry.read_card(service.models_dir, result.version)
    assert card.streams == list(streams) and card.step_minutes == 1
    # The base model zero-shot, alone and blended, too (its missing channels masked); fine-tuning it needs its own H (TINY's is shorter).
    assert {c["kind"] for c in card.selection["candidates"]} == {"seasonal_naive", "ets", "base", "blend", "lstm"}
    if every == 3:  # a 15-s scrape: samples count for 1.5 scrape intervals at the grid points
        assert 20 <= card.tolerance_s <= 25
    lstm = next(registry.read_card(service.models_dir, c["version"]) for c in card.selection["candidates"] if c["kind"] == "lstm")
    assert lstm.metrics["test"]["health_mae"]["model"] < 0.2  # masked channels did not break it

    client = make_app(service, Clock(END + dt.timedelta(seconds=20))).test_client()
    status = client.get("/api/v1/status").get_json()
    assert status["health"] == {"streams": list(streams), "formula": formula, "step_minutes": 1}
    assert status["state"] in ("failure_predicted", "no_failure_within_horizon", "failing_now"), status["detail"]
    assert status["time_to_failure"] is not None and status["model"]["version"] == card.version
    absent = {"cpu", "memory", "request_rate", "response_time"} - {STREAMS_BY_NAME[n].flag for n in streams}
    assert all(status["current"]["flags"][name] is None for name in absent)
    assert 0.0 <= status["current"]["health"] <= 1.0 and status["current"]["coverage"] > 0.5
    forecast = client.get("/api/v1/forecast?horizon=60").get_json()
    assert len(forecast["points"]) == 60 and forecast["input_coverage"] > 0.9


def test_a_configured_stream_that_never_arrives_is_named_never_scored_as_healthy(settings, db, make_app):
    service = dataclasses.replace(settings, streams=("cpu", "response_time"))
    write_service(service, db, ("cpu",))
    status = make_app(service, Clock(END + dt.timedelta(seconds=20))).test_client().get("/api/v1/status").get_json()
    assert (status["state"], status["reason"]) == ("unknown", "no_data")
    assert status["detail"].startswith("no_data: response_time") and status["current"]["health"] is None
    assert store.newest_sample_times(db, streams=service.stream_set)["response_time"] is None
