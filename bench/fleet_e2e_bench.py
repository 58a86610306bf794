"""Issue 17's done-when, end to end, with the real commands: a fleet simulated, trained, served, measured.

What it runs (each a ``pycemaker`` process, as a user would; one embedded SecantusDB hosted by ``pycemaker db``
in a fresh directory, an empty registry so the shipped base model serves until the first run):

1. ``pycemaker simulate --days 1 --services 20 --live``: a day of 20 services (svc-01..svc-20, each its own
   app), then samples appended every 5 s for all of them for the rest of the run (production's steady state:
   every status has a new minute every minute);
2. ``pycemaker train --once`` once the backfill is written (one model across the fleet; per-service champions);
3. ``pycemaker serve`` (gunicorn, its default workers and threads), and, once every service's status is
   known: ``GET /api/v1/services`` (how many), ``GET /api/v1/fleet`` (how many, their states, whether the
   order is the documented one: :func:`serving.fleet.fleet_order`), every ``/api/v1/services/{name}/status``
   (HTTP status), the default service's routes (``/api/v1/status``, ``/health``, ``/forecast`` and the
   original ``/health_data/1``, ``/predicted_data/1``, ``/current_health/1``: HTTP status; the default service has
   no samples here), and ``GET /api/v1/fleet`` latency over one keep-alive connection for ``--seconds`` while
   the statuses keep refreshing, with the oldest status seen (now - ``as_of``) along the way.

Figures go to ``bench/results/fleet_e2e.json`` and docs/scaling.md (between its ``figures:fleet_e2e`` markers).

    PYTHONPATH=. .venv/bin/python bench/fleet_e2e_bench.py [--services 20] [--days 1] [--seconds 120]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.docblock import replace_block  # noqa: E402

UTC = dt.timezone.utc
DOC = REPO / "docs" / "scaling.md"
DEFAULT_ROUTES = ("/api/v1/status", "/api/v1/health", "/api/v1/forecast", "/health_data/1", "/predicted_data/1",
                  "/current_health/1")
log = logging.getLogger("fleet_e2e")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(child: subprocess.Popen, name: str) -> bool:
    if child.poll() is not None:
        raise RuntimeError(f"`pycemaker {name}` exited with {child.returncode}: see its log")
    return True


def wait_for(check, timeout_s: float, what: str, interval_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(interval_s)


class Api:
    """One keep-alive connection to the API (reopened after an error)."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            self.conn.request("GET", path)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            return 0, b""

    def json(self, path: str) -> tuple[int, object]:
        status, body = self.get(path)
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, None


def percentiles(ms: list[float]) -> dict:
    arr = np.asarray(ms)
    return {"requests": len(ms), "p50_ms": round(float(np.percentile(arr, 50)), 2),
            "p99_ms": round(float(np.percentile(arr, 99)), 2), "max_ms": round(float(arr.max()), 2)}


def known_fleet(api: Api, count: int):
    status, body = api.json("/api/v1/fleet")
    if status != 200 or not isinstance(body, dict):
        return None
    services = body.get("services", [])
    return body if len(services) == count and all(s["state"] != "unknown" for s in services) else None


def run(args, work: Path) -> dict:
    from serving.fleet import entry_order

    port, db_port = free_port(), free_port()
    env = dict(os.environ, PYCEMAKER_DATA_DIR=str(work / "db"), PYCEMAKER_EMBEDDED_PORT=str(db_port),
               PYCEMAKER_MODELS_DIR=str(work / "models"), PYCEMAKER_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
    env.pop("MONGO_URI", None)
    pycemaker = [sys.executable, "-m", "pycemaker"]
    logs = work / "logs"
    logs.mkdir()
    children: list[subprocess.Popen] = []

    def start(name: str, *argv: str) -> subprocess.Popen:
        out = open(logs / f"{name}.log", "w")
        child = subprocess.Popen(pycemaker + list(argv), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                 start_new_session=True)
        children.append(child)
        return child

    figures: dict = {"services": args.services, "days": args.days}
    try:
        start("db", "db")
        wait_for(lambda: port_open(db_port), 60, "the embedded database", interval_s=0.2)
        began = time.perf_counter()
        simulate = start("simulate", "simulate", "--days", str(args.days), "--services", str(args.services), "--live",
                         "--no-progress")
        wait_for(lambda: alive(simulate, "simulate") and "appending live samples" in (logs / "simulate.log").read_text(),
                 3600, "the backfill")
        figures["simulate_s"] = round(time.perf_counter() - began, 1)
        log.info("simulated %d services x %g days in %.0f s", args.services, args.days, figures["simulate_s"])

        began = time.perf_counter()
        train = start("train", "train", "--once", "--no-progress")
        figures["train_rc"] = train.wait(timeout=3600)
        figures["train_s"] = round(time.perf_counter() - began, 1)
        log.info("train --once: rc %d in %.0f s", figures["train_rc"], figures["train_s"])
        services_json = work / "models" / "services.json"
        figures["assigned_services"] = len(json.loads(services_json.read_text()).get("services", {})) \
            if services_json.is_file() else 0
        current = work / "models" / "current"
        figures["model"] = current.read_text().strip() if current.is_file() else None

        began = time.perf_counter()
        serve = start("serve", "serve", "--port", str(port))
        api = Api(port)
        wait_for(lambda: alive(serve, "serve") and api.get("/livez")[0] == 200, 120, "the API")
        body = wait_for(lambda: known_fleet(api, args.services), 600, "every service's status known", interval_s=2.0)
        figures["all_known_after_s"] = round(time.perf_counter() - began, 1)

        status, services = api.json("/api/v1/services")
        figures["services_route"] = {"http": status, "listed": len(services.get("services", [])) if isinstance(services, dict) else 0}
        rows = body["services"]
        figures["fleet_route"] = {
            "listed": len(rows),
            "states": {state: sum(r["state"] == state for r in rows) for state in sorted({r["state"] for r in rows})},
            "documented_order": [r["service"] for r in rows] == [r["service"] for r in sorted(rows, key=entry_order)],
        }
        codes = [api.get(f"/api/v1/services/{r['service']}/status")[0] for r in rows]
        figures["service_status_200"] = sum(code == 200 for code in codes)
        figures["default_routes"] = {path: api.get(path)[0] for path in DEFAULT_ROUTES}

        times, oldest = [], 0.0
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            status, payload = api.get("/api/v1/fleet")
            times.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise RuntimeError(f"/api/v1/fleet answered {status}: {payload[:300]!r}")
            if len(times) % 50 == 0:
                now = dt.datetime.now(UTC)
                ages = [(now - dt.datetime.fromisoformat(r["as_of"])).total_seconds()
                        for r in json.loads(payload)["services"] if r.get("as_of")]
                oldest = max([oldest, *ages])
            time.sleep(args.pause_ms / 1000)
        figures["fleet_latency"] = percentiles(times) | {"seconds": args.seconds, "pause_ms": args.pause_ms}
        figures["oldest_status_s"] = round(oldest, 1)
        return figures
    finally:
        for child in reversed(children):
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        if args.keep_logs:
            shutil.copytree(logs, args.keep_logs, dirs_exist_ok=True)


def render(results: dict) -> str:
    """The docs/scaling.md block, from the JSON."""
    f = results["figures"]
    lat, fleet = f["fleet_latency"], f["fleet_route"]
    states = ", ".join(f"{n} {s}" for s, n in fleet["states"].items())
    defaults = ", ".join(f"`{p}` {c}" for p, c in f["default_routes"].items())
    return "\n".join([
        f"Measured by `bench/fleet_e2e_bench.py` ({results['machine']}, {results['when']}; the real commands, one",
        "embedded SecantusDB, an empty registry at the start, live samples every 5 s throughout):",
        "",
        f"- `pycemaker simulate --days {f['days']:g} --services {f['services']} --live`: backfill written in {f['simulate_s']:.0f} s; "
        f"`pycemaker train --once`: exit {f['train_rc']} in {f['train_s']:.0f} s (served: `{f['model']}`, "
        f"{f['assigned_services']} services assigned a model of their own);",
        f"- `pycemaker serve`: every status known {f['all_known_after_s']:.0f} s after the start; `/api/v1/services` "
        f"lists {f['services_route']['listed']}, `/api/v1/fleet` lists {fleet['listed']} ({states}), "
        f"{'in' if fleet['documented_order'] else 'NOT in'} the documented order; "
        f"{f['service_status_200']} of {fleet['listed']} `/api/v1/services/{{service}}/status` answer 200;",
        f"- the default service's routes (no samples of its own here): {defaults};",
        f"- `GET /api/v1/fleet` over {lat['seconds']} s of live refreshing ({lat['requests']} requests, one keep-alive "
        f"client, {lat['pause_ms']} ms apart): p50 {lat['p50_ms']:.1f} ms, **p99 {lat['p99_ms']:.1f} ms**, "
        f"max {lat['max_ms']:.1f} ms; the oldest status seen was {f['oldest_status_s']:.0f} s old.",
    ]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to time /api/v1/fleet (default 120)")
    parser.add_argument("--pause-ms", type=float, default=20.0, help="pause between two requests (default 20)")
    parser.add_argument("--keep-logs", type=Path, help="copy the commands' logs here")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "fleet_e2e.json")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/scaling.md's figures")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = Path(tempfile.mkdtemp(prefix="pycemaker-fleet-e2e-"))
    try:
        figures = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "benchmark": "bench/fleet_e2e_bench.py",
        "when": dt.datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "figures": figures,
    }
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_docs:
        replace_block(DOC, "fleet_e2e", render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
