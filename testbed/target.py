"""The demo target: a stand-in for the original form server (Spring Boot), ``pycemaker target``.

Routes are the original's: ``POST /registrar`` (register a user), ``GET /usuarios`` (list
users), ``DELETE /usuario/delete/<id>``. ``/actuator/prometheus`` exposes the Micrometer
names the collector's default queries read:

- ``process_cpu_usage``: this process's CPU over the last >= 0.5 s, 0..1 of all its cores;
- ``jvm_memory_used_bytes`` / ``jvm_memory_max_bytes`` (``area="heap"``): resident memory
  against a configured heap size, the closest thing a Python process has to a JVM heap;
- ``http_server_requests_seconds_count`` / ``_sum`` with Micrometer's labels
  (``method, uri, status, outcome, exception``), ``uri`` being the route template.

Latency and CPU grow with load for real: every request burns ``work_ms`` of CPU time (and a
registration hashes its password), and requests queue for the interpreter. Past
``max_inflight`` concurrent requests the app sheds load with 503 (``SERVER_ERROR``), as a
saturated server does.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import signal
import threading
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CollectorRegistry, Gauge, Summary
from prometheus_client.exposition import choose_encoder
from werkzeug.exceptions import HTTPException

from testbed.config import TargetConfig

log = logging.getLogger(__name__)
ACTUATOR = "/actuator/prometheus"


def outcome(status: int) -> str:
    """Micrometer's ``outcome`` label for an HTTP status."""
    if status < 200:
        return "INFORMATIONAL"
    if status < 300:
        return "SUCCESS"
    if status < 400:
        return "REDIRECTION"
    if status < 500:
        return "CLIENT_ERROR"
    return "SERVER_ERROR"


def uri_template(rule: str | None, status: int) -> str:
    """Micrometer's ``uri`` label: the route template (``/usuario/delete/{user_id}``), never the raw path."""
    if rule is None:
        return "NOT_FOUND" if status == 404 else "UNKNOWN"
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


class CpuUsage:
    """Recent CPU usage of this process as a share of its cores, like Micrometer's ``process_cpu_usage``."""

    def __init__(self, min_window_s: float = 0.5) -> None:
        self.min_window_s = min_window_s
        self.cores = (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        )
        self._lock = threading.Lock()
        self._wall, self._cpu = time.monotonic(), time.process_time()
        self._value = 0.0

    def __call__(self) -> float:
        with self._lock:
            wall, cpu = time.monotonic(), time.process_time()
            # Two scrapes close together would divide by almost nothing: keep the last value.
            if wall - self._wall >= self.min_window_s:
                self._value = min(1.0, (cpu - self._cpu) / ((wall - self._wall) * self.cores))
                self._wall, self._cpu = wall, cpu
            return self._value


def resident_bytes() -> float:
    """Resident set size of this process (Linux /proc; elsewhere the peak, the best available)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return float(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        import resource

        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


class Metrics:
    """The Micrometer-named metrics, in the app's own registry (two apps in one process never clash)."""

    def __init__(self, config: TargetConfig) -> None:
        self.registry = CollectorRegistry()
        self.requests = Summary(
            "http_server_requests_seconds",
            "Duration of HTTP server request handling",
            ["exception", "method", "outcome", "status", "uri"],
            registry=self.registry,
        )
        Gauge(
            "process_cpu_usage", "The recent cpu usage for the process", registry=self.registry
        ).set_function(CpuUsage())
        used = Gauge(
            "jvm_memory_used_bytes", "The amount of used memory", ["area", "id"], registry=self.registry
        )
        used.labels("heap", "resident").set_function(resident_bytes)
        limit = Gauge(
            "jvm_memory_max_bytes", "The maximum amount of memory", ["area", "id"], registry=self.registry
        )
        limit.labels("heap", "resident").set(config.heap_max_bytes)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class Users:
    """The form server's user table, in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._rows: dict[int, dict[str, Any]] = {}

    def add(self, fields: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            row = {"id": next(self._ids), **fields}
            self._rows[row["id"]] = row
            return row

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._rows.values())

    def delete(self, user_id: int) -> bool:
        with self._lock:
            return self._rows.pop(user_id, None) is not None


def burn_cpu(ms: float) -> None:
    """Spend ``ms`` of this thread's CPU time: under contention latency grows, the work does not shrink."""
    deadline = time.thread_time() + ms / 1000.0
    x = 0
    while time.thread_time() < deadline:
        for i in range(200):
            x ^= i * i


def create_app(config: TargetConfig | None = None) -> Flask:
    config = config or TargetConfig()
    app = Flask(__name__)
    metrics = Metrics(config)
    users = Users()
    inflight = {"count": 0}
    inflight_lock = threading.Lock()
    app.extensions["pycemaker_target"] = {"metrics": metrics, "users": users, "config": config}

    @app.before_request
    def admit() -> Response | None:
        g.started = time.perf_counter()
        g.exception = "None"
        with inflight_lock:
            inflight["count"] += 1
            g.counted = True
            busy = inflight["count"] > config.max_inflight
        # The scrape is exempt, so a saturated app still reports that it is saturated.
        if busy and request.path != ACTUATOR:
            return Response('{"error": "overloaded"}', status=503, mimetype="application/json")
        return None

    @app.after_request
    def observe(response: Response) -> Response:
        started = g.get("started")
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else None
            metrics.requests.labels(
                exception=g.get("exception", "None"),
                method=request.method,
                outcome=outcome(response.status_code),
                status=str(response.status_code),
                uri=uri_template(rule, response.status_code),
            ).observe(time.perf_counter() - started)
        return response

    @app.teardown_request
    def release(_exc: BaseException | None) -> None:
        if g.pop("counted", False):
            with inflight_lock:
                inflight["count"] -= 1

    @app.errorhandler(Exception)
    def failed(exc: Exception):
        if isinstance(exc, HTTPException):
            return exc
        g.exception = type(exc).__name__
        log.exception("request failed")
        return jsonify(error=type(exc).__name__), 500

    @app.post("/registrar")
    def register_user():
        body = request.get_json(silent=True) or {}
        if not body.get("name") or not body.get("email"):
            return jsonify(error="name and email are required"), 400
        salt = os.urandom(16)
        digest = hashlib.pbkdf2_hmac(
            "sha256", str(body.get("password", "")).encode(), salt, config.hash_iterations
        )
        burn_cpu(config.work_ms)
        row = users.add(
            {
                "name": str(body["name"]),
                "email": str(body["email"]),
                "password": salt.hex() + ":" + digest.hex(),
                "cellphoneNumber": body.get("cellphoneNumber"),
            }
        )
        return jsonify(_public(row))

    @app.get("/usuarios")
    def list_users():
        burn_cpu(config.work_ms)
        return jsonify([_public(row) for row in users.all()])

    @app.delete("/usuario/delete/<int:user_id>")
    def delete_user(user_id: int):
        burn_cpu(config.work_ms)
        if not users.delete(user_id):
            return jsonify(error=f"no user {user_id}"), 404
        return jsonify(deleted=user_id)

    @app.get(ACTUATOR)
    def prometheus_metrics():
        body, content_type = metrics.exposition(request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    return app


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "password"}


def serve(host: str, port: int, config: TargetConfig | None = None) -> None:
    """Serve the target (threaded) until SIGINT/SIGTERM."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is noise at 100 req/s
    server = make_server(host, port, create_app(config), threaded=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, name="target-http", daemon=True)
    thread.start()
    log.info("target listening on http://%s:%d (metrics on %s)", host, server.server_port, ACTUATOR)
    try:
        stop.wait()
    finally:
        server.shutdown()
        thread.join(timeout=5)
