"""Whole runs against the real store: promotion, refusal, failures, and the training_runs record."""

import dataclasses
import datetime as dt
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from bson import ObjectId

pytest.importorskip("torch")

from forecasting import registry, training_runs  # noqa: E402
from telemetry import simulator, store  # noqa: E402
from telemetry.settings import Settings  # noqa: E402
from tests.training.conftest import TINY, tiny_fit_config  # noqa: E402
from training import pipeline  # noqa: E402
from training.data import load_training_frame  # noqa: E402
from training.lock import LOCK_FILE, TrainingBusy, TrainingLock  # noqa: E402
from training.pipeline import train_once  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
V1 = REPO / "tests" / "fixtures" / "models" / "v1"


@pytest.fixture(scope="module")
def stored(mongo_uri, one_day_simulation):
    """A database holding one simulated day (written once for the module)."""
    base = Settings(mongo_uri=mongo_uri, database=f"train_{uuid.uuid4().hex[:10]}")
    db = store.connect(base, autostart=False)
    simulator.write(db, one_day_simulation, base)
    db.client.close()
    # Not dropped after: the name is unique and the server's data dies with the session (dropping costs ~8 s).
    return base


@pytest.fixture(scope="module")
def stored_frame(stored):
    """The frame a run reads from the store, read once: the failure-path tests below patch the
    read to return it (the first test reads the store for real)."""
    db = store.connect(stored, autostart=False)
    try:
        return load_training_frame(db, dataclasses.replace(stored, **TINY), days=7)
    finally:
        db.client.close()


@pytest.fixture
def cached_read(monkeypatch, stored_frame):
    monkeypatch.setattr(pipeline, "load_training_frame", lambda *args, **kwargs: stored_frame)


@pytest.fixture
def run_settings(stored, tmp_path):
    # One simulated day leaves ~37 held-back test windows, over hours where seasonal naive repeats the
    # previous hour almost exactly: the 0.8 x seasonal naive bar cannot be judged on so few. These tests
    # are about the run's flow; the bar is tested on known numbers (test_gates.py) and met at full size
    # (`make evaluate`, docs/evaluation.md).
    return dataclasses.replace(stored, models_dir=tmp_path / "models", keep_versions=3, gate_naive_ratio=3.0, **TINY)


@pytest.fixture
def db(run_settings):
    database = store.connect(run_settings, autostart=False)
    yield database
    database.client.close()


def runs_of(db, result):
    return db[training_runs.RUNS].find_one({"_id": ObjectId(result.run_id)})


def with_v1_current(settings: Settings) -> str:
    shutil.copytree(V1, settings.models_dir)
    return registry.current_version(settings.models_dir)


def test_a_run_promotes_a_good_model_then_refuses_an_identical_retrain(run_settings, db, monkeypatch, stored_frame):
    db[training_runs.RUNS].insert_one({"status": training_runs.RUNNING, "trigger": "schedule", "started_at": dt.datetime.now(dt.timezone.utc)})
    first = train_once(run_settings, db, config=tiny_fit_config(), progress_bar=False)
    assert first.status == training_runs.SUCCEEDED and first.promoted and first.error is None
    assert registry.current_version(run_settings.models_dir) == first.version
    card = registry.read_card(run_settings.models_dir, first.version)
    assert card.status == registry.STATUS_PROMOTED
    assert card.metrics["health_mae"]["model"] < card.metrics["health_mae"]["seasonal_naive"]
    assert card.metrics["gates"]["current_model"] is None and "no current model" in card.reason
    gate = card.metrics["gates"]
    assert gate["horizon_minutes"] == 60 and gate["health_rmse"] <= 3.0 * gate["seasonal_naive_health_rmse"]
    assert 0.7 <= gate["coverage"] <= 0.9 and gate["coverage"] == card.metrics["test"]["gate"]["coverage"]
    # The health quantiles are calibrated on the validation windows: one offset per lead and quantile.
    offsets = card.calibration["health"]["offsets"]
    assert len(offsets) == 60 and all(len(row) == 3 for row in offsets)
    assert card.calibration["health"]["validation_windows"] == card.metrics["validation_windows"]
    # The store holds one day; the run asked for 7 and trimmed the empty minutes before the first sample.
    assert card.data_range["start"] == "2026-05-04T00:01:00+00:00" and card.data_range["end"] == "2026-05-04T23:59:00+00:00"
    assert card.training["run_seconds"] > 0 and card.training["quick"] is False
    assert set(card.metrics["test"]["health_mae"]) >= {"model", "seasonal_naive", "persistence"}
    record = runs_of(db, first)
    assert record["status"] == training_runs.SUCCEEDED and record["promoted"] is True and record["version"] == first.version
    assert record["metrics"]["health_mae"]["model"] == pytest.approx(card.metrics["health_mae"]["model"])
    assert record["duration_s"] > 0 and record["error"] is None and record["trigger"] == "cli"
    # the run left running by a "killed" trainer was failed when this one started
    assert db[training_runs.RUNS].count_documents({"status": training_runs.RUNNING}) == 0
    assert db[training_runs.RUNS].count_documents({"status": training_runs.FAILED, "trigger": "schedule"}) == 1

    # Same data, same seed: the same model. Not better than the current one, so refused.
    monkeypatch.setattr(pipeline, "load_training_frame", lambda *args, **kwargs: stored_frame)
    second = train_once(run_settings, db, config=tiny_fit_config(), progress_bar=False)
    assert second.status == training_runs.SUCCEEDED and not second.promoted and second.version != first.version
    assert registry.current_version(run_settings.models_dir) == first.version
    rejected = registry.read_card(run_settings.models_dir, second.version)
    assert rejected.status == registry.STATUS_REJECTED
    assert f"not below the current model {first.version}'s" in rejected.reason
    assert rejected.metrics["gates"]["current_model"]["health_rmse"] == pytest.approx(
        rejected.metrics["gates"]["current_model"]["candidate_health_rmse"], abs=1e-6
    )
    assert runs_of(db, second)["promoted"] is False and runs_of(db, second)["reason"] == rejected.reason


def test_a_model_failing_parity_is_rejected_and_current_stays(run_settings, db, monkeypatch, cached_read):
    current = with_v1_current(run_settings)
    monkeypatch.setattr("training.export.parity", lambda *a, **k: 0.5)
    result = train_once(run_settings, db, config=tiny_fit_config(max_epochs=2), progress_bar=False)
    assert result.status == training_runs.SUCCEEDED and not result.promoted
    card = registry.read_card(run_settings.models_dir, result.version)
    assert card.status == registry.STATUS_REJECTED and card.reason.startswith("ONNX parity 5.00e-01 > 1e-04")
    assert registry.current_version(run_settings.models_dir) == current
    # The current model (L=120, H=180) was compared with the candidate (H=60) on the 60 minutes both forecast.
    assert card.metrics["gates"]["current_model"]["horizon_minutes_compared"] == 60


def test_a_failed_run_leaves_current_untouched(run_settings, db, monkeypatch, cached_read):
    current = with_v1_current(run_settings)
    before = sorted(p.name for p in run_settings.models_dir.iterdir() if not p.name.startswith("."))

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(pipeline, "export_and_verify", disk_full)
    result = train_once(run_settings, db, config=tiny_fit_config(max_epochs=1), progress_bar=False)
    assert result.status == training_runs.FAILED and "No space left on device" in result.error
    assert registry.current_version(run_settings.models_dir) == current
    after = sorted(p.name for p in run_settings.models_dir.iterdir() if p.name != LOCK_FILE)
    assert after == before  # no version, no staging directory left behind
    record = runs_of(db, result)
    assert record["status"] == training_runs.FAILED and "OSError: No space left on device" in record["error"]


def test_a_run_failing_after_registration_is_marked_rejected_not_current(run_settings, db, monkeypatch, cached_read):
    current = with_v1_current(run_settings)
    v1_model = registry.model_path(run_settings.models_dir, current)

    def copy_v1(model, path, *args, **kwargs):  # the export is not what this test is about
        shutil.copyfile(v1_model, path)
        return pipeline.ExportReport(18, 0.0, 1, path.stat().st_size, "test")

    monkeypatch.setattr(pipeline, "export_and_verify", copy_v1)
    monkeypatch.setattr(pipeline.gates, "decide", lambda *a, **k: pipeline.gates.Decision(True, "forced", {}))

    def crash(*args, **kwargs):
        raise RuntimeError("killed while activating")

    monkeypatch.setattr(registry, "activate", crash)
    result = train_once(run_settings, db, config=tiny_fit_config(max_epochs=1), progress_bar=False)
    assert result.status == training_runs.FAILED and result.version
    assert registry.current_version(run_settings.models_dir) == current
    card = registry.read_card(run_settings.models_dir, result.version)
    assert card.status == registry.STATUS_REJECTED and "killed while activating" in card.reason


def test_a_stopped_run_is_recorded_failed(run_settings, db, cached_read):
    stop = threading.Event()
    stop.set()
    result = train_once(run_settings, db, config=tiny_fit_config(), progress_bar=False, stop=stop)
    assert result.status == training_runs.FAILED and "RunStopped" in result.error
    assert registry.current_version(run_settings.models_dir) is None
    assert registry.list_versions(run_settings.models_dir) == []


def test_one_training_at_a_time_per_registry(run_settings, db):
    runs_before = db[training_runs.RUNS].count_documents({})
    with TrainingLock(run_settings.models_dir):
        with pytest.raises(TrainingBusy):
            train_once(run_settings, db, config=tiny_fit_config(), progress_bar=False)
        assert not TrainingLock(run_settings.models_dir).acquire()
    assert db[training_runs.RUNS].count_documents({}) == runs_before  # a refused run is not a run
    lock = TrainingLock(run_settings.models_dir)
    assert lock.acquire()
    lock.release()


def test_too_little_data_fails_the_run_with_a_reason(run_settings, db):
    short = dataclasses.replace(run_settings, train_days=0.5)
    result = train_once(short, db, config=tiny_fit_config(), progress_bar=False)
    assert result.status == training_runs.FAILED
    assert "NotEnoughData" in result.error and "at least 1201 are needed" in result.error
    assert runs_of(db, result)["status"] == training_runs.FAILED


def cli(settings: Settings, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MONGO_URI": settings.mongo_uri,
        "PYCEMAKER_DATABASE": settings.database,
        "PYCEMAKER_MODELS_DIR": str(settings.models_dir),
        "PYCEMAKER_INPUT_MINUTES": str(settings.input_minutes),
        "PYCEMAKER_HORIZON_MINUTES": str(settings.horizon_minutes),
    }
    return subprocess.run(
        [sys.executable, "-m", "pycemaker", *args], env=env, cwd=settings.models_dir.parent,
        capture_output=True, text=True, timeout=timeout,
    )


def test_the_train_and_models_commands(run_settings, db):
    """`pycemaker train --once --quick` on a fresh registry promotes a model; `models list` shows it."""
    done = cli(run_settings, "train", "--once", "--quick", "--max-epochs", "2", "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    version = registry.current_version(run_settings.models_dir)
    assert version and f"version {version}: promoted" in done.stdout
    assert "validation health MAE: model" in done.stdout and "seasonal naive" in done.stdout
    card = registry.read_card(run_settings.models_dir, version)
    assert card.training["quick"] is True and card.training["config"]["hidden_size"] == 32
    assert card.training["epochs"] <= 2
    assert db[training_runs.RUNS].find_one({"version": version})["status"] == training_runs.SUCCEEDED

    listed = cli(run_settings, "models", "list")
    assert listed.returncode == 0
    line = next(row for row in listed.stdout.splitlines() if version in row)
    assert line.startswith("*") and "promoted" in line
