"""Subcommands of the serving side: ``serve`` (the API) and ``openapi`` (the OpenAPI artifact).

Only argparse here: the handlers import the app, so ``pycemaker --help`` stays light and
``PROMETHEUS_MULTIPROC_DIR`` is set before prometheus_client is first imported.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from telemetry.settings import Settings, override

log = logging.getLogger(__name__)
OPENAPI_PATH = Path("docs/openapi.json")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the API (gunicorn; --dev for the Flask dev server)")
    p.add_argument("--host", help="address to bind (default: $PYCEMAKER_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: $PYCEMAKER_PORT or 5000)")
    p.add_argument("--workers", type=int, help="gunicorn worker processes (default: $PYCEMAKER_WORKERS or 2)")
    p.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    p.add_argument("--timeout", type=int, default=60, help="seconds before a silent worker is replaced (default 60)")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    p.add_argument("--dev", action="store_true", help="the Flask dev server (one process, no gunicorn)")
    p.set_defaults(handler=run_serve)

    p = sub.add_parser("openapi", help="write the OpenAPI document (docs/openapi.json), or --check it")
    p.add_argument("path", nargs="?", default=str(OPENAPI_PATH), help=f"output file (default {OPENAPI_PATH})")
    p.add_argument("--check", action="store_true", help="exit 1 if the file differs from the code's document")
    p.set_defaults(handler=run_openapi)


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    settings = override(settings, host=args.host, port=args.port, workers=args.workers)
    database = _host_database_if_needed(settings, getattr(args, "config", None))
    try:
        if args.dev:
            from serving.app import create_app

            # SIGTERM ends the dev server like Ctrl-C, so the database child is stopped too.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

            log.info("Flask dev server on http://%s:%d (Swagger UI at /docs)", settings.host, settings.port)
            create_app(settings).run(host=settings.host, port=settings.port, threaded=True, use_reloader=False)
            return 0
        metrics_dir = _multiprocess_metrics_dir()
        try:
            from serving.wsgi import GunicornApp, gunicorn_options

            options = gunicorn_options(settings, threads=args.threads, timeout=args.timeout, access_log=args.access_log)
            log.info("gunicorn: %d workers x %d threads on http://%s:%d (Swagger UI at /docs)",
                     settings.workers, args.threads, settings.host, settings.port)
            GunicornApp(settings, options).run()
        finally:
            if metrics_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)
        return 0
    finally:
        if database is not None:
            database.terminate()
            try:
                database.wait(15)
            except subprocess.TimeoutExpired:
                database.kill()


def _multiprocess_metrics_dir() -> str | None:
    """Workers share Prometheus metrics through files; returns a directory to delete at exit (None: given)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return None
    path = tempfile.mkdtemp(prefix="pycemaker-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    log.info("workers share Prometheus metrics through %s (removed at exit)", path)
    return path


def _host_database_if_needed(settings: Settings, config: str | None) -> subprocess.Popen | None:
    """Without MONGO_URI and with nobody hosting the embedded database, host it in a child process
    (web workers must not: the embedded server locks its data directory)."""
    if settings.mongo_uri or _port_open(settings.embedded_port):
        return None
    command = [sys.executable, "-m", "pycemaker"] + (["--config", config] if config else []) + ["db"]
    log.info("nobody hosts the embedded database on port %d: starting `pycemaker db`", settings.embedded_port)
    child = subprocess.Popen(command)
    deadline = time.monotonic() + 60
    while not _port_open(settings.embedded_port):
        if child.poll() is not None or time.monotonic() > deadline:
            log.warning("the embedded database did not start; the API answers 503 until a database is reachable")
            break
        time.sleep(0.2)
    return child


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def openapi_text() -> str:
    from serving.app import openapi_document

    return json.dumps(openapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def run_openapi(args: argparse.Namespace, settings: Settings) -> int:
    text = openapi_text()
    path = Path(args.path)
    if args.check:
        if not path.is_file() or path.read_text() != text:
            log.error("%s is out of date: run `pycemaker openapi %s`", path, path)
            return 1
        log.info("%s is up to date", path)
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    log.info("wrote %s", path)
    return 0
