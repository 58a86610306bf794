"""The fleet's batched round (serving/batch.py): one network run per model, statuses equal to the one-by-one ones."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest

from serving.batch import refresh_batched
from serving.status import FAILURE_PREDICTED
from tests.conftest import REPO
from tests.serving.conftest import Clock
from tests.serving.fleet_data import NOW, SERVICES

FIXTURE = REPO / "tests" / "fixtures" / "models" / "v1"


@pytest.fixture(params=["declining", "fixture-lstm"])
def model_settings(request, fleet_settings):
    if request.param == "fixture-lstm":
        if not (FIXTURE / "current").is_file():
            pytest.skip("the model fixture is not in this checkout")
        shutil.rmtree(fleet_settings.models_dir)
        shutil.copytree(FIXTURE, fleet_settings.models_dir)
    return fleet_settings


def test_a_batched_round_runs_the_model_once_and_equals_the_one_by_one_statuses(model_settings, make_app):
    batched_app = make_app(model_settings, Clock(NOW))
    fleet = batched_app.extensions["pycemaker"].fleet
    forecaster = batched_app.extensions["pycemaker"].models.forecaster
    runs: list[int] = []
    network = forecaster.predict_scaled

    def counted(windows):
        runs.append(len(windows))
        return network(windows)

    forecaster.predict_scaled = counted
    statuses = [fleet.status(name) for name in SERVICES]
    batched = dict(refresh_batched(statuses))
    # Every service with a scored minute was forecast in ONE run (the stale one's window is still built: it has minutes).
    assert runs == [len(SERVICES)]

    single_app = make_app(model_settings, Clock(NOW))
    single = {name: single_app.extensions["pycemaker"].fleet.status(name).refresh(force=True) for name in SERVICES}
    for name in SERVICES:
        assert batched[name].body == single[name].body, name
        assert json.loads(batched[name].body)["state"] == single[name].status.state
    assert any(single[name].status.state == FAILURE_PREDICTED for name in SERVICES)
    # A second batch with nothing new keeps every body and runs nothing.
    again = dict(refresh_batched(statuses))
    assert runs == [len(SERVICES)] and all(again[name].body == batched[name].body for name in SERVICES)


def test_a_round_of_the_fleet_is_batched(fleet_settings, make_app):
    app = make_app(fleet_settings, Clock(NOW))
    rt = app.extensions["pycemaker"]
    runs: list[int] = []
    network = rt.models.forecaster.predict_scaled
    rt.models.forecaster.predict_scaled = lambda windows: runs.append(len(windows)) or network(windows)
    rt.fleet.refresh_all()
    assert max(runs) >= len(SERVICES)  # the default service has its own refresher; the fleet's run together


def test_rounds_after_new_samples_equal_a_cold_recomputation(model_settings, make_app):
    """Each round reads only its statuses' newest minutes (the recent frames are kept and their tails re-read):
    after new samples (the clock moves 5 s a round, across minute boundaries), every status equals the one a
    process computes from nothing at the same moment."""
    clock = Clock(NOW)
    fleet = make_app(model_settings, clock).extensions["pycemaker"].fleet
    fleet.refresh_all()  # cold: every recent frame read whole
    first = {name: fleet.status(name).current().body for name in SERVICES}
    for seconds in (5, 5, 5, 5, 5, 40, 5):  # 00:52:40 -> 00:53:50: two minutes end meanwhile
        clock.now += dt.timedelta(seconds=seconds)
        fleet.refresh_all()
    warm = {name: fleet.status(name).current() for name in SERVICES}
    assert all(snap.now == clock() for snap in warm.values())  # recomputed at the clock's moment, not kept

    cold_fleet = make_app(model_settings, Clock(clock())).extensions["pycemaker"].fleet
    for name in SERVICES:
        cold = cold_fleet.status(name).refresh(force=True)
        assert warm[name].body == cold.body, name
        assert warm[name].frame.equals(cold.frame), name
    assert any(warm[name].body != first[name] for name in SERVICES)  # the new samples changed something
