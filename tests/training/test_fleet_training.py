"""One model for the fleet: `train --once` across every service with data (training/pipeline.py, training/data.py),
then the per-service choice: a service that another model serves measurably better gets it (training/pipeline.py
``_assign_services``, ``services.json``: forecasting/registry.py), and serving follows.

One file, so that one xdist worker builds the simulated fleet (tests/training/conftest.py ``fleet_store``) for both."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")

from forecasting import registry  # noqa: E402
from telemetry import store  # noqa: E402
from telemetry.settings import SettingsError, load_settings  # noqa: E402
from tests.training.conftest import FLEET, FLEET_LSTM, SEASONAL, TINY, tiny_fit_config  # noqa: E402
from training.data import only_the_default, training_services  # noqa: E402
from training.datamodule import PooledWindowDataModule, WindowDataModule, capped_stride  # noqa: E402
from training.fit import FitConfig  # noqa: E402
from training.pipeline import pooled_scores, train_once  # noqa: E402
from training.selection import Scores  # noqa: E402

SERVICES = FLEET


def test_a_fleet_run_trains_one_model_across_every_service_and_scores_each(fleet_store, tmp_path):
    """Three services (tests/training/conftest.py); the run reads their last 12 hours, each a pooled LSTM's split long
    at FLEET_LSTM's L and H."""
    settings = dataclasses.replace(fleet_store, models_dir=tmp_path / "models", gate_naive_ratio=3.0, **FLEET_LSTM)
    db = store.connect(settings, autostart=False)
    try:
        assert [s.name for s in training_services(db, settings)] == SERVICES
        result = train_once(settings, db, days=0.5, config=tiny_fit_config(), progress_bar=False)
    finally:
        db.client.close()
    assert result.status == "succeeded" and result.promoted, result.error
    assert result.metrics["services"] == SERVICES and result.metrics["scored_services"] == SERVICES
    current = registry.read_card(settings.models_dir, registry.current_version(settings.models_dir))
    assert set(current.training["services"]) <= set(SERVICES) and current.training["services"]
    cards = registry.list_versions(settings.models_dir)
    lstm = next(c for c in cards if c.kind == "lstm")
    assert lstm.training["services"] == SERVICES  # pooled windows of all three
    candidates = result.metrics["candidates"]
    in_run = {c["version"] for c in candidates}
    # the baselines, the zero-shot base and its fine-tuning: fitted (or calibrated) on the first service
    assert {c.training["services"][0] for c in cards if c.kind != "lstm" and c.version in in_run} == {"svc-01"}
    # Any other version is a per-service choice (svc-03's own baseline: the assignment tests below).
    assigned = {a["version"] for a in result.metrics.get("assignments", {}).values()}
    assert {c.version for c in cards} - in_run == assigned
    # Every candidate was judged on the three held-back blocks: its windows are the three blocks' together.
    naive = next(c for c in candidates if c["kind"] == "seasonal_naive")
    assert naive["scores"]["windows"] > lstm.data_range["test"]["windows"]
    assert all(np.isfinite(c["scores"]["health_rmse"]) for c in candidates)


def test_train_services_picks_the_services_named(fleet_store, monkeypatch):
    db = store.connect(fleet_store, autostart=False)
    try:
        named = dataclasses.replace(fleet_store, train_services="svc-03, default")
        assert [(s.name, s.default) for s in training_services(db, named)] == [("default", True), ("svc-03", False)]
        assert not only_the_default(training_services(db, named))
        assert only_the_default(training_services(db, dataclasses.replace(fleet_store, train_services="default")))
    finally:
        db.client.close()
    monkeypatch.setenv("PYCEMAKER_TRAIN_SERVICES", "svc-01,no good")
    with pytest.raises(SettingsError, match="train_services"):
        load_settings()


def test_the_pooled_module_scales_every_service_alike_and_keeps_the_first_services_parts(two_days_frame):
    other = two_days_frame.copy()
    one = WindowDataModule(two_days_frame, 120, 60, train_stride=2)
    both = PooledWindowDataModule([two_days_frame, other, two_days_frame.iloc[:50]], 120, 60, train_stride=2)
    one.setup()
    both.setup()
    assert both.used == [0, 1]  # the 50-minute frame is too short for the split
    assert len(both.train) == 2 * len(one.train) and len(both.pooled_validation) == 2 * len(one.validation)
    assert np.array_equal(both.test.origins, one.test.origins) and np.array_equal(both.validation.inputs, one.validation.inputs)


def test_a_window_cap_thins_every_services_windows_alike_and_leaves_the_first_services_judging_parts(two_days_frame):
    frames = [two_days_frame, two_days_frame.copy(), two_days_frame.copy(), two_days_frame.copy()]
    full = PooledWindowDataModule(frames, 120, 60, train_stride=2)
    capped = PooledWindowDataModule(frames, 120, 60, train_stride=2, max_train_windows=400)
    full.setup()
    capped.setup()
    origins = 4 * len(full.split.train)
    assert capped.train_stride == capped_stride(origins, 2, 400) == -(-origins // 400) > 2
    # One stride for every service: each keeps the same share, at most the cap in all (one more a service at most).
    kept = capped.split.train[:: capped.train_stride]
    assert len(capped.train) == 4 * len(kept) <= 400 + 4
    assert np.array_equal(capped.train.origins, np.tile(kept, 4))
    alone = WindowDataModule(two_days_frame, 120, 60, train_stride=capped.train_stride, scaling=capped.scaling)
    alone.setup()
    assert np.array_equal(capped.train.inputs[: len(kept)], alone.train.inputs, equal_nan=True)
    assert np.array_equal(capped.train.targets[-len(kept):], alone.train.targets, equal_nan=True)
    # Early stopping's pool keeps the split's proportion (15/70 of the cap); the first service's own validation
    # and test windows (calibration, judging) are all kept.
    assert len(capped.pooled_validation) <= round(400 * 15 / 70) + 4 < len(full.pooled_validation)
    assert np.array_equal(capped.validation.origins, full.validation.origins)
    assert np.array_equal(capped.test.inputs, full.test.inputs, equal_nan=True)
    # A single frame is capped exactly; no cap, or a cap above the windows, changes nothing.
    one = WindowDataModule(two_days_frame, 120, 60, train_stride=2, max_train_windows=100)
    one.setup()
    assert len(one.train) <= 100 < len(full.split.train) // 2
    assert capped_stride(1000, 2, None) == capped_stride(1000, 2, 500) == 2 and capped_stride(1000, 2, 499) == 3
    # The setting reaches the fit (0: no cap).
    assert FitConfig.from_settings(load_settings(environ={})).max_train_windows == 150_000
    assert FitConfig.from_settings(load_settings(environ={"PYCEMAKER_TRAIN_MAX_WINDOWS": "0"})).max_train_windows is None


def test_pooled_scores_sum_counts_and_average_errors_over_services():
    a = Scores(10, 60, 0.1, 0.8, episodes=2, warned=1, false_alarms=1, healthy_hours=5.0, stream_error=0.2, health_mae=0.05)
    b = Scores(20, 30, 0.3, 0.6, episodes=1, warned=1, false_alarms=0, healthy_hours=7.0, stream_error=float("nan"),
               health_mae=0.15)
    pooled = pooled_scores([a, b])
    assert (pooled.windows, pooled.horizon_minutes, pooled.episodes, pooled.warned, pooled.false_alarms) == (30, 30, 3, 2, 1)
    assert pooled.health_rmse == pytest.approx(0.2) and pooled.health_mae == pytest.approx(0.1)
    assert pooled.coverage == pytest.approx(0.7)
    assert pooled.healthy_hours == 12.0 and pooled.stream_error == pytest.approx(0.2)
    assert pooled_scores([a]) is a


def test_a_store_with_only_the_default_service_trains_as_before(one_day_store, tmp_path):
    db = store.connect(one_day_store, autostart=False)
    try:
        settings = dataclasses.replace(one_day_store, models_dir=tmp_path / "models", candidate_kinds=("seasonal_naive", "ets"), **TINY)
        assert [(s.name, s.default) for s in training_services(db, settings)] == [("default", True)]
        result = train_once(settings, db, progress_bar=False)
        named = train_once(dataclasses.replace(settings, models_dir=tmp_path / "named", train_services="default"), db,
                           progress_bar=False)
    finally:
        db.client.close()
    assert result.status == "succeeded" and result.promoted, result.error
    assert "services" not in result.metrics and "scored_services" not in result.metrics
    assert all("services" not in c.training for c in registry.list_versions(settings.models_dir))
    # The one-service run, whatever train_services says: the same windows, the same scores.
    scores = [{c["kind"]: c["scores"] for c in r.metrics["candidates"]} for r in (result, named)]
    assert scores[0] == scores[1] and scores[0]["ets"]["windows"] > 0


# --- per-service assignments ------------------------------------------------------


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
    assert choice["serving"] == version and scores[version]["health_mae"] < scores[current]["health_mae"] - 1e-6
    assert scores[version]["health_mae"] < 0.02
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
