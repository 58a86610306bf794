"""``pycemaker demo``: the whole product on the embedded database with simulated data.

This process hosts the embedded database; everything else runs as child processes that find
it on its loopback port: the live simulator, the training scheduler and the API (gunicorn).
Nothing special happens on a fresh install: the scheduler's first run fits every candidate kind,
and on an empty registry its best baseline serves within seconds while the LSTM trains
(docs/model.md). Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request

from telemetry.settings import Settings

log = logging.getLogger(__name__)
UTC = dt.timezone.utc


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the product on the embedded database with simulated data")
    p.add_argument("--days", type=float, default=2.0, help="days of history to simulate (default 2)")
    p.add_argument("--no-train", action="store_true", help="do not start the training scheduler")
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from telemetry import simulator, store
    from telemetry.commands import format_health_summary
    from telemetry.health import minute_health

    db = store.connect(settings)  # hosts the embedded server in this process unless MONGO_URI is set
    now = dt.datetime.now(UTC)
    span = store.data_range(db)
    if span is None or now - span[1] > dt.timedelta(minutes=10) or now - span[0] < dt.timedelta(days=args.days) * 0.9:
        log.info("simulating %.0f days of metrics into %s", args.days, settings.data_dir)
        simulator.backfill(db, args.days, settings, seed=settings.simulator_seed, end=now)
    start = now - dt.timedelta(hours=2)
    table = minute_health(store.read_samples(db, start, now), start, now, settings)
    sys.stdout.write(format_health_summary(table, settings))

    command = [sys.executable, "-m", "pycemaker"] + (["--config", args.config] if getattr(args, "config", None) else [])
    children = Children()
    stop = _stop_on_signals()
    try:
        children.start("simulator", command + ["simulate", "--days", "0", "--live"])
        if args.no_train:
            log.info("--no-train: the training scheduler is not started")
        elif "train" in _commands():
            children.start("scheduler", command + ["train", "--schedule"])
        else:
            log.warning("no `train` command in this installation: the training scheduler is not started")
        children.start("api", command + ["serve"])

        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        base = f"http://{host}:{settings.port}"
        if _wait_for(base + "/livez", stop, children, timeout=120):
            sys.stdout.write(
                f"\nDashboard:  {base}/\nAPI:        {base}/api/v1/status\nSwagger UI: {base}/docs\n"
                "Live simulator, training scheduler and API are running; Ctrl-C stops everything.\n\n"
            )
            sys.stdout.flush()
        while not stop.is_set():
            ended = children.ended()
            if ended:
                name, code = ended
                log.error("%s exited with code %s: stopping the demo", name, code)
                return 1
            stop.wait(1.0)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        children.stop_all()


class Children:
    """The demo's child processes, stopped in reverse order of starting."""

    def __init__(self) -> None:
        self.processes: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        log.info("starting %s: %s", name, " ".join(command[2:]))
        process = subprocess.Popen(command, env=os.environ.copy())
        self.processes.append((name, process))
        return process

    def ended(self) -> tuple[str, int] | None:
        for name, process in self.processes:
            if process.poll() is not None:
                return name, process.returncode
        return None

    def stop_all(self, timeout: float = 20.0) -> None:
        for name, process in reversed(self.processes):
            if process.poll() is None:
                log.info("stopping %s", name)
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, process in reversed(self.processes):
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", name, timeout)
                process.kill()
                process.wait()
        self.processes.clear()


def _stop_on_signals():
    import threading

    stop = threading.Event()

    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _commands() -> set[str]:
    from pycemaker.cli import build_parser

    parser = build_parser()
    return set(parser._subparsers._group_actions[0].choices)


def _wait_for(url: str, stop, children: Children, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        if children.ended():
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        stop.wait(0.5)
    log.warning("the API did not answer %s within %.0f s", url, timeout)
    return False
