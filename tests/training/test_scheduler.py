"""The retraining scheduler: job options, first run at start, requests, and never two trainings at once."""

import dataclasses
import datetime as dt
import threading
import time

import pytest
from bson import ObjectId

from forecasting import training_runs
from training.lock import TrainingLock
from training.scheduler import MISFIRE_GRACE_S, Retrainer, build_scheduler

pytest.importorskip("apscheduler")
UTC = dt.timezone.utc


class FakeTraining:
    """Stands in for a training run: takes ``seconds``, records overlaps and triggers."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.running = 0
        self.most_at_once = 0
        self.triggers: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, trigger: str) -> None:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.triggers.append(trigger)
        time.sleep(self.seconds)
        with self._lock:
            self.running -= 1


def test_jobs_are_configured_for_one_instance_coalesced_and_first_run_at_start(settings, db):
    from apscheduler.schedulers.background import BackgroundScheduler

    retrainer = Retrainer(settings, db, train=FakeTraining(0))
    scheduler = build_scheduler(settings, retrainer, scheduler_cls=BackgroundScheduler)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"retrain", "requests"}
    retrain = jobs["retrain"]
    assert retrain.max_instances == 1 and retrain.coalesce is True and retrain.misfire_grace_time == MISFIRE_GRACE_S
    assert retrain.trigger.interval == dt.timedelta(hours=settings.train_interval_hours) == dt.timedelta(hours=3)
    assert abs((retrain.next_run_time - dt.datetime.now(UTC)).total_seconds()) < 5  # the first run is at start
    assert jobs["requests"].max_instances == 1 and jobs["requests"].trigger.interval == dt.timedelta(seconds=10)


def test_the_scheduler_never_runs_two_trainings_at_once(settings, db):
    from apscheduler.schedulers.background import BackgroundScheduler

    fast = dataclasses.replace(settings, train_interval_hours=0.3 / 3600)  # a retrain due every 0.3 s
    training = FakeTraining(0.5)
    retrainer = Retrainer(fast, db, train=training)
    scheduler = build_scheduler(fast, retrainer, scheduler_cls=BackgroundScheduler, poll_seconds=0.1)
    scheduler.start()
    try:
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            training_runs.request_training(db, requested_by="test")  # requests keep arriving meanwhile
            time.sleep(0.2)
    finally:
        scheduler.shutdown(wait=True)
    assert training.most_at_once == 1
    assert len(training.triggers) >= 4
    assert {"schedule", "request"} <= set(training.triggers)


def test_another_process_training_makes_both_jobs_skip_and_requests_wait(settings, db):
    training = FakeTraining(0)
    retrainer = Retrainer(settings, db, train=training)
    request_id = training_runs.request_training(db)
    other = TrainingLock(settings.models_dir)  # e.g. a `pycemaker train --once` running now
    assert other.acquire()
    try:
        assert retrainer.retrain() is False
        assert retrainer.poll_requests() is False
        assert db[training_runs.REQUESTS].find_one({"taken_at": None}) is not None  # still pending
    finally:
        other.release()
    assert retrainer.poll_requests() is True
    assert training.triggers == ["request"]
    assert db[training_runs.REQUESTS].count_documents({"taken_at": None}) == 0
    assert retrainer.poll_requests() is False  # nothing pending: no training
    assert retrainer.retrain() is True and training.triggers == ["request", "schedule"]
    assert request_id


def test_a_stopping_scheduler_starts_nothing(settings, db):
    training = FakeTraining(0)
    retrainer = Retrainer(settings, db, train=training)
    training_runs.request_training(db)
    retrainer.stop.set()
    assert retrainer.retrain() is False and retrainer.poll_requests() is False and training.triggers == []


def test_abandoned_runs_are_failed_at_start_unless_a_training_is_running(settings, db):
    run_id = training_runs.start_run(db, "schedule", registry=training_runs.registry_of(settings.models_dir))
    # Another registry's trainer sharing the database: its running run is not ours to fail.
    other = training_runs.start_run(db, "schedule", registry="other-host:/srv/models")
    retrainer = Retrainer(settings, db, train=FakeTraining(0))
    held = TrainingLock(settings.models_dir)
    assert held.acquire()
    retrainer.clean_abandoned()  # someone is training: that run is not abandoned
    assert db[training_runs.RUNS].find_one({"_id": ObjectId(run_id)})["status"] == training_runs.RUNNING
    held.release()
    retrainer.clean_abandoned()
    run = db[training_runs.RUNS].find_one({"_id": ObjectId(run_id)})
    assert run["status"] == training_runs.FAILED and run["error"] == "trainer stopped before the run ended"
    assert db[training_runs.RUNS].find_one({"_id": ObjectId(other)})["status"] == training_runs.RUNNING
