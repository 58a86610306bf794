"""A training run killed mid-fit (SIGKILL: no handler runs): ``current`` is intact, the run ends up recorded as failed."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from forecasting import registry, training_runs
from telemetry import simulator
from tests.conftest import HAS_TORCH, REPO

UTC = dt.timezone.utc
FIXTURE = REPO / "tests" / "fixtures" / "models" / "v1"

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="training needs torch (requirements-train.txt)")


def _snapshot(models_dir) -> dict[str, bytes]:
    return {str(p.relative_to(models_dir)): p.read_bytes() for p in sorted(models_dir.rglob("*")) if p.is_file() and p.name != ".training.lock"}


def _train(*args: str) -> list[str]:
    return [sys.executable, "-m", "pycemaker", "train", "--once", "--quick", "--no-progress", *args]


@pytest.mark.slow
def test_a_run_killed_mid_fit_leaves_current_intact_and_is_recorded_as_failed_by_the_next_start(settings, db, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(FIXTURE, models)
    before = _snapshot(models)
    current = registry.current_version(models)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    simulator.write(db, simulator.simulate(now - dt.timedelta(hours=7), now, 8, settings), settings)

    scratch = tmp_path / "tmp"  # the trainer's temporary files: a checkpoint there means the fit has begun
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MONGO_URI": settings.mongo_uri, "PYCEMAKER_DATABASE": settings.database,
           "PYCEMAKER_MODELS_DIR": str(models), "PYCEMAKER_INPUT_MINUTES": "30", "PYCEMAKER_HORIZON_MINUTES": "15",
           "PYCEMAKER_TRAIN_THREADS": "1", "TMPDIR": str(scratch)}
    trainer = subprocess.Popen(_train("--days", "0.3"), cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list(scratch.glob("pycemaker-ckpt-*/*.ckpt")):  # an epoch has ended: mid-fit
            assert trainer.poll() is None, f"the run ended before it could be killed:\n{trainer.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, "no epoch ended in time"
            time.sleep(0.05)
        trainer.send_signal(signal.SIGKILL)
    finally:
        if trainer.poll() is None:
            trainer.kill()
        trainer.wait(30)
        trainer.stdout.close()
    assert trainer.returncode == -signal.SIGKILL

    assert registry.current_version(models) == current
    assert _snapshot(models) == before, "a killed run changed the registry"
    (killed,) = list(db[training_runs.RUNS].find({}))
    assert killed["status"] == training_runs.RUNNING  # nobody could record the kill

    # The next trainer start (here a run that fails fast: too little data) records the killed run as failed.
    second = subprocess.run(_train("--days", "0.001"), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=240)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "marked 1 abandoned run(s) as failed" in second.stderr
    runs = {str(r["_id"]): r for r in db[training_runs.RUNS].find({})}
    assert len(runs) == 2
    killed = runs.pop(str(killed["_id"]))
    assert killed["status"] == training_runs.FAILED and killed["error"] == "trainer stopped before the run ended"
    assert killed["ended_at"] is not None
    (retry,) = runs.values()
    assert retry["status"] == training_runs.FAILED and "NotEnoughData" in retry["error"]
    assert registry.current_version(models) == current and _snapshot(models) == before
