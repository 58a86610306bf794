"""Training past one process: Lightning DDP with 2 CPU processes (gloo), through the real command.

The run goes through ``pycemaker train --once --strategy ddp --devices 2 --accelerator cpu``:
Lightning starts the second process by re-running the command; only rank zero locks, records,
exports and writes the registry (docs/scaling.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import subprocess
import sys
import uuid

import pytest

pytest.importorskip("torch")
pytest.importorskip("lightning")

from forecasting import registry, training_runs  # noqa: E402
from telemetry import simulator, store  # noqa: E402
from telemetry.settings import Settings  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.training.conftest import RAW_TAIL  # noqa: E402
from training import distributed, pipeline  # noqa: E402
from training.lock import LOCK_FILE  # noqa: E402
from training.fit import FitConfig  # noqa: E402

UTC = dt.timezone.utc
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS",
                  distributed.DATA_END_ENV)


@pytest.fixture
def no_launcher(monkeypatch):
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_one_device_is_not_distributed_and_ddp_is():
    assert not FitConfig().distributed
    assert FitConfig(strategy="ddp", devices=2).distributed
    assert FitConfig(devices="auto").distributed  # Lightning may take every GPU
    assert FitConfig(num_nodes=2).distributed
    assert FitConfig(strategy="ddp", devices=2).to_dict()["strategy"] == "ddp"  # recorded in the card


@pytest.mark.parametrize(
    ("variables", "zero", "outside"),
    [
        ({}, True, False),  # a plain command; also rank zero of Lightning's own launcher
        ({"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}, False, True),  # a process Lightning started
        ({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "8", "GROUP_RANK": "0"}, True, True),  # torchrun, rank 0
        ({"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "GROUP_RANK": "1"}, False, True),  # torchrun, node 1
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, True, False),  # inside a one-task SLURM job
        ({"SLURM_PROCID": "3", "SLURM_NTASKS": "8"}, False, True),  # srun, task 3
        ({"NODE_RANK": "1"}, False, True),  # Lightning's launcher on a second machine
    ],
)
def test_rank_zero_is_read_from_every_launcher_s_variables(no_launcher, variables, zero, outside):
    for name, value in variables.items():
        no_launcher.setenv(name, value)
    assert distributed.process_is_rank_zero() is zero
    assert distributed.launched_from_outside() is outside


def test_processes_started_from_outside_must_share_the_data_end(no_launcher, settings):
    no_launcher.setenv("RANK", "1")
    no_launcher.setenv("WORLD_SIZE", "2")
    with pytest.raises(distributed.DistributedSetupError, match=distributed.DATA_END_ENV):
        pipeline.train_once(settings, config=FitConfig(strategy="ddp", devices=2))
    assert not (settings.models_dir / LOCK_FILE).exists()  # a follower never touches the registry


def test_the_data_end_is_a_zoned_time(no_launcher):
    no_launcher.setenv(distributed.DATA_END_ENV, "2026-03-01T12:00:30Z")
    assert distributed.pinned_data_end() == dt.datetime(2026, 3, 1, 12, tzinfo=UTC)  # whole minutes
    no_launcher.setenv(distributed.DATA_END_ENV, "2026-03-01T12:00")
    with pytest.raises(distributed.DistributedSetupError, match="zone"):
        distributed.pinned_data_end()


def test_the_scheduler_refuses_distributed_flags():
    done = subprocess.run(
        [sys.executable, "-m", "pycemaker", "train", "--schedule", "--strategy", "ddp", "--devices", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2 and "--once" in done.stderr, done.stderr[-2000:]


@pytest.fixture(scope="module")
def twelve_hours(mongo_uri):
    """Twelve simulated hours in their own database (enough for L=60, H=30 and a 70/15/15 split)."""
    base = Settings(mongo_uri=mongo_uri, database=f"ddp_{uuid.uuid4().hex[:10]}")
    end = dt.datetime(2026, 5, 4, 12, tzinfo=UTC)
    db = store.connect(base, autostart=False)
    simulator.write(db, simulator.simulate(end - dt.timedelta(hours=12), end, seed=5, settings=base), base, raw_since=end - RAW_TAIL)
    try:
        yield base
    finally:
        db.client.drop_database(db.name)
        db.client.close()


@pytest.mark.slow
def test_a_ddp_run_on_two_cpu_processes_trains_once_and_writes_the_registry_once(twelve_hours, tmp_path, no_launcher):
    settings = dataclasses.replace(twelve_hours, models_dir=tmp_path / "models")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MONGO_URI": settings.mongo_uri,
        "PYCEMAKER_DATABASE": settings.database,
        "PYCEMAKER_MODELS_DIR": str(settings.models_dir),
        "PYCEMAKER_INPUT_MINUTES": "60",
        "PYCEMAKER_HORIZON_MINUTES": "30",
        "PYCEMAKER_TRAIN_THREADS": "1",
        "PYCEMAKER_LOG_LEVEL": "INFO",
    }
    command = [sys.executable, "-m", "pycemaker", "train", "--once", "--quick", "--max-epochs", "2", "--days", "1",
               "--no-progress", "--strategy", "ddp", "--devices", "2", "--accelerator", "cpu"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    log = done.stdout[-3000:] + done.stderr[-6000:]
    assert done.returncode in (0, 4), log  # 4: trained and exported, but a baseline (or nothing new) serves
    # Both processes joined (the second one's output comes through the same pipe), and read the same minutes.
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in done.stderr, log
    reads = re.findall(r"reading (\S+ \.\. \S+) from the store", done.stderr)
    assert len(reads) == 2 and reads[0] == reads[1], reads

    cards = registry.list_versions(settings.models_dir)
    lstms = [c for c in cards if c.kind == "lstm"]
    assert len(lstms) == 1, ([c.version for c in cards], log)  # one LSTM version, written by rank zero only
    # and the run's baselines and the base model zero-shot, alone and blended, once each (fine-tuning: one device only)
    assert sorted(c.kind for c in cards) == ["base", "blend", "ets", "lstm", "seasonal_naive"]
    card = lstms[0]
    assert card.training["world_size"] == 2
    assert card.training["config"]["strategy"] == "ddp" and card.training["config"]["devices"] == 2
    assert card.training["epochs"] >= 1 and card.onnx["parity_max_abs_diff"] <= card.onnx["parity_tolerance"]
    db = store.connect(settings, autostart=False)
    try:
        runs = list(db[training_runs.RUNS].find({}))
    finally:
        db.client.close()
    assert len(runs) == 1 and runs[0]["status"] == training_runs.SUCCEEDED, runs  # recorded once, by rank zero
    assert runs[0]["version"] in {c.version for c in cards}
    assert sorted(c["kind"] for c in runs[0]["metrics"]["candidates"]) == ["base", "blend", "ets", "lstm", "seasonal_naive"]
    assert {f["kind"]: f["verdict"] for f in runs[0]["metrics"]["failed"]} == {"finetuned": "skipped"}
