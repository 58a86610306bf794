"""The embedded default database: SecantusDB on loopback over a local data directory.

SecantusDB locks its data directory, so exactly one process hosts it and every other
process connects by URI. ``pycemaker db`` hosts it in the foreground (what ``make demo``
runs); a lone command on a fresh clone (``pycemaker simulate``) that finds nobody
hosting starts it in-process for its own lifetime.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
from pathlib import Path

from telemetry.settings import Settings

log = logging.getLogger(__name__)
_hosted: dict[int, object] = {}
_lock = threading.Lock()


def open_server(data_dir: Path, port: int = 0, host: str = "127.0.0.1"):
    """A started SecantusDB server (not registered for shutdown: the caller stops it)."""
    from secantus import SecantusDBServer

    data_dir.mkdir(parents=True, exist_ok=True)
    server = SecantusDBServer(host=host, port=port, storage_path=str(data_dir), replica_set_name=None)
    server.start()
    return server


def start_embedded(settings: Settings) -> str:
    """Host the embedded server in this process (stopped at exit); return its URI."""
    with _lock:
        server = _hosted.get(settings.embedded_port)
        if server is None:
            try:
                server = open_server(settings.data_dir, settings.embedded_port)
            except OSError as exc:
                # Another process won the race for the port: connect to it instead.
                log.info("embedded database port %d taken (%s); connecting to it", settings.embedded_port, exc)
                return f"mongodb://127.0.0.1:{settings.embedded_port}/"
            _hosted[settings.embedded_port] = server
            atexit.register(server.stop)
            log.info("embedded SecantusDB at %s (data in %s)", server.uri, settings.data_dir)
        return server.uri


def serve_forever(settings: Settings) -> None:
    """Host the embedded server until SIGINT/SIGTERM (``pycemaker db``)."""
    uri = start_embedded(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("serving the embedded database at %s; Ctrl-C to stop", uri)
    stop.wait()
