"""Per-service choice after a fleet run: a service that another model serves measurably better gets it
(training/pipeline.py ``_assign_services``, ``services.json``: forecasting/registry.py), and serving follows."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from forecasting import registry
from telemetry import store
from tests.training.conftest import FLEET, SEASONAL, TINY
from training.pipeline import train_once

SERVICES = FLEET


@pytest.fixture(scope="module")
def assigned_run(fleet_store, tmp_path_factory):
    """The fleet (tests/training/conftest.py) trained once with the baselines only."""
    models = tmp_path_factory.mktemp("assign") / "models"
    settings = dataclasses.replace(fleet_store, models_dir=models, candidate_kinds=("seasonal_naive", "ets"), **TINY)
    db = store.connect(settings, autostart=False)
    try:
        result = train_once(settings, db, progress_bar=False)
    finally:
        db.client.close()
    assert result.status == "succeeded" and result.promoted, result.error
    return settings, result


def test_the_pure_seasonal_service_is_served_by_its_own_baseline_the_others_by_the_champion(assigned_run):
    settings, result = assigned_run
    models = settings.models_dir
    current = registry.current_version(models)
    found = registry.read_assignments(models)
    assert found is not None and found.champion == current and found.run_id == result.run_id
    assert result.metrics["assignments"] == found.services
    assert set(found.services) == {SEASONAL}, found.services  # the simulated services keep the fleet's model
    version = found.services[SEASONAL]["version"]
    card = registry.read_card(models, version)
    assert card.kind in ("seasonal_naive", "ets") and card.training["services"] == [SEASONAL]
    assert card.metrics["season"]["minutes"] == 60  # detected on its own history
    assert registry.read_card(models, current).metrics["season"]["minutes"] is None  # svc-01's: none
    assert registry.service_assignments(models) == {SEASONAL: version}
    # Why, in numbers: on svc-03's held-back block it beats the fleet's model by the selection rules.
    choice = result.metrics["service_choices"][SEASONAL]
    scores = {c["version"]: c["scores"] for c in choice["candidates"]}
    assert choice["serving"] == version and scores[version]["health_rmse"] < scores[current]["health_rmse"] - 1e-6
    assert scores[version]["health_rmse"] < 0.02
    for name in ("svc-01", "svc-02"):
        assert result.metrics["service_choices"][name]["serving"] == current
    # Kept by pruning while assigned, even when it is not among the newest (on a copy: the other tests read the registry).
    copy = models.parent / "pruned"
    shutil.copytree(models, copy)
    pruned = registry.prune(copy, keep=0)
    assert pruned and version not in pruned and current not in pruned and (copy / version).is_dir()


def test_assignments_hold_only_while_current_names_their_champion(assigned_run, tmp_path):
    settings, _ = assigned_run
    models = tmp_path / "copy"
    shutil.copytree(settings.models_dir, models)
    other = registry.service_assignments(models)[SEASONAL]
    registry.activate(models, other)  # another version activated (a rollback): every service on it
    assert registry.service_assignments(models) == {} and registry.read_assignments(models) is not None
    (models / registry.ASSIGNMENTS).write_text("{not json")
    assert registry.read_assignments(models) is None and registry.service_assignments(models) == {}
    data = json.loads((settings.models_dir / registry.ASSIGNMENTS).read_text())
    assert data["format_version"] == registry.FORMAT_VERSION and np.isfinite(len(data["services"]))


def test_a_one_service_run_writes_no_assignments(one_day_store, tmp_path):
    db = store.connect(one_day_store, autostart=False)
    try:
        settings = dataclasses.replace(one_day_store, models_dir=tmp_path / "models", candidate_kinds=("seasonal_naive", "ets"), **TINY)
        result = train_once(settings, db, progress_bar=False)
    finally:
        db.client.close()
    assert result.status == "succeeded" and "assignments" not in result.metrics
    assert not (settings.models_dir / registry.ASSIGNMENTS).exists() and registry.service_assignments(settings.models_dir) == {}
