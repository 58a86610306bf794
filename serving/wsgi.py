"""gunicorn, driven from Python: ``pycemaker serve`` builds :class:`GunicornApp` and runs it.

Workers are forked without preloading the app, so each worker builds its own (database
client, ONNX session, background threads) after the fork. The training scheduler never
runs here: it is its own process (``pycemaker train --schedule``).
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from telemetry.settings import Settings


def child_exit(server, worker) -> None:
    """A worker is gone: drop its live gauges from the shared Prometheus files."""
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


#: How often a thread holding the GIL hands it over to a waiting one, in the API workers (CPython's default: 5 ms).
SWITCH_INTERVAL_S = 0.001


def tune_interpreter() -> None:
    """Requests share each worker with the status refresher thread: hand the GIL over every 1 ms
    (not the default 5 ms), so a request never waits long behind a recomputation."""
    import sys

    sys.setswitchinterval(SWITCH_INTERVAL_S)


def post_worker_init(worker) -> None:
    tune_interpreter()


def worker_exit(server, worker) -> None:
    """A worker stops: with a split fleet, it leaves the replicas now (its services move at the others' next
    heartbeat, not after ``replica_timeout_s``)."""
    rt = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("pycemaker")
    if rt is not None and rt.fleet is not None and rt.fleet.replicas is not None:
        rt.fleet.replicas.stop()


class GunicornApp(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]):
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("child_exit", child_exit)
        self.cfg.set("post_worker_init", post_worker_init)
        self.cfg.set("worker_exit", worker_exit)

    def load(self):
        from serving.app import create_app

        return create_app(self.settings)


def gunicorn_options(settings: Settings, *, threads: int = 4, timeout: int = 60, access_log: bool = False) -> dict[str, Any]:
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": "gthread",
        "threads": threads,
        # Long intervals read from the database can take a while; a stuck worker is still replaced.
        "timeout": timeout,
        "graceful_timeout": 10,
        "keepalive": 5,
        "preload_app": False,
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "proc_name": "pycemaker-api",
        # gunicorn's control socket defaults to one path per user: two instances would collide.
        "control_socket_disable": True,
    }
