"""Scheduled retraining: ``pycemaker train --schedule``, in its own process (never in a web worker).

Two APScheduler jobs:

- ``retrain``: every ``train_interval_hours``, the first at start; ``max_instances=1``,
  missed firings coalesced into one, a firing later than :data:`MISFIRE_GRACE_S` skipped;
- ``requests``: every :data:`POLL_SECONDS`, claims the ``POST /api/v1/train`` requests
  (:func:`forecasting.training_runs.take_training_requests`) and runs one training for them.

Both take the registry's training lock first (:class:`training.lock.TrainingLock`), so
two trainings never overlap, in this process or with a ``train --once`` elsewhere. A firing
that finds the lock taken is skipped; requests found while a run is going stay pending
until the next poll after it. SIGINT/SIGTERM stop fitting after the current batch; the run
is recorded as failed and the current model is left as it was.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from typing import Callable

from forecasting import training_runs
from telemetry.settings import Settings

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
POLL_SECONDS = 10.0
#: A retrain firing may start this late (the process was busy or suspended) and still run.
MISFIRE_GRACE_S = 15 * 60


class Retrainer:
    """The two jobs' bodies, around ``train(trigger)`` (default: :func:`training.pipeline.train_once`)."""

    def __init__(
        self,
        settings: Settings,
        db,
        train: Callable[[str], object] | None = None,
        take_requests: Callable[[], int] | None = None,
        stop: threading.Event | None = None,
    ):
        self.settings = settings
        self.db = db
        self.stop = stop or threading.Event()
        self._train = train or self._train_once
        self._take_requests = take_requests or (lambda: training_runs.take_training_requests(db))

    def _train_once(self, trigger: str):
        from training.pipeline import train_once

        return train_once(
            self.settings, self.db, trigger=trigger, progress_bar=False, stop=self.stop, already_locked=True
        )

    def _lock(self):
        from training.lock import TrainingLock

        return TrainingLock(self.settings.models_dir)

    def retrain(self) -> bool:
        """The scheduled job; returns whether a training ran."""
        lock = self._lock()
        if not lock.acquire():
            log.info("scheduled retrain skipped: another training is running")
            return False
        try:
            if not self.stop.is_set():
                self._train("schedule")
                return True
            return False
        finally:
            lock.release()

    def poll_requests(self) -> bool:
        """The polling job: one training for every request filed since the last one."""
        lock = self._lock()
        if not lock.acquire():
            return False  # requests stay pending until the running training ends
        try:
            if self.stop.is_set():
                return False
            taken = self._take_requests()
            if not taken:
                return False
            log.info("training for %d request(s)", taken)
            self._train("request")
            return True
        finally:
            lock.release()

    def clean_abandoned(self) -> None:
        """Runs left ``running`` by a killed trainer become failed (only when no training holds the lock)."""
        lock = self._lock()
        if lock.acquire():
            try:
                count = training_runs.fail_abandoned_runs(self.db, training_runs.registry_of(self.settings.models_dir))
                if count:
                    log.warning("marked %d abandoned training run(s) as failed", count)
            finally:
                lock.release()


def build_scheduler(settings: Settings, retrainer: Retrainer, scheduler_cls=None, poll_seconds: float = POLL_SECONDS):
    """An APScheduler scheduler (default: BlockingScheduler) with the two jobs, not started."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler_cls = scheduler_cls or BlockingScheduler
    scheduler = scheduler_cls(timezone=UTC, executors={"default": ThreadPoolExecutor(max_workers=2)})
    now = dt.datetime.now(UTC)
    scheduler.add_job(
        retrainer.retrain,
        "interval",
        hours=settings.train_interval_hours,
        id="retrain",
        name="retrain",
        next_run_time=now,  # the first run at start
        max_instances=1,
        coalesce=True,
        misfire_grace_time=MISFIRE_GRACE_S,
    )
    scheduler.add_job(
        retrainer.poll_requests,
        "interval",
        seconds=poll_seconds,
        id="requests",
        name="training requests",
        next_run_time=now + dt.timedelta(seconds=poll_seconds),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=max(1, int(poll_seconds)),
    )
    return scheduler


def _stop_scheduler(scheduler) -> None:
    from apscheduler.schedulers import SchedulerNotRunningError

    try:
        scheduler.shutdown(wait=True)
    except SchedulerNotRunningError:  # the signal came before start() or after it returned
        pass


def run_schedule(settings: Settings, db) -> int:
    """``pycemaker train --schedule``: block until SIGINT/SIGTERM."""
    # APScheduler logs every poll at INFO; the runs log their own start and end.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    stop = threading.Event()
    retrainer = Retrainer(settings, db, stop=stop)
    retrainer.clean_abandoned()
    scheduler = build_scheduler(settings, retrainer)

    def shutdown(signum, _frame) -> None:
        if stop.is_set():  # a second signal (Ctrl-C, then the demo's SIGTERM): already stopping
            return
        log.info("signal %d: stopping (a run in progress stops after its current batch)", signum)
        stop.set()
        threading.Thread(target=_stop_scheduler, args=(scheduler,), daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, shutdown)
    log.info(
        "retraining every %.3g h (first now) from the last %.3g days into %s; polling training requests every %.0f s",
        settings.train_interval_hours, settings.train_days, settings.models_dir, POLL_SECONDS,
    )
    scheduler.start()
    return 0
