"""Soak: sustained load on gunicorn for a minute; errors, and resident memory of the master and workers.

What it does (loopback, bounded in time):

1. hosts a SecantusDB server in this process, writes a few simulated hours up to now and keeps
   appending live samples every 5 s, as ``bench/serve_bench.py`` does;
2. starts ``pycemaker serve`` (gunicorn, 2 workers x 4 threads) with the registry fixture model;
3. warms every route up, then loads the API for ``--duration`` seconds with the serving
   benchmark's load code and connection count (4 keep-alive connections, closed loop, so it
   runs at the benchmark's rate): two on ``/api/v1/status``, one on ``/livez``, one cycling
   through every other read route (a second each);
4. samples the resident memory (``VmRSS`` in ``/proc``) of the gunicorn master and its workers
   every second, and notes any worker that was replaced.

Figures go to ``bench/results/soak.json``. The targets (issue 7): 0 errors, no worker
replaced, resident memory growth < 10% from the end of the warm-up to the end of the run.
``tests/reliability/test_soak.py`` runs the same code for 10 s and asserts those targets.

    PYTHONPATH=. .venv/bin/python bench/soak_bench.py [--duration 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serve_bench import FIXTURE, combine, free_port, run_python_client, run_wrk, stop_process, wait_ready  # noqa: E402
from telemetry import simulator, store  # noqa: E402
from telemetry.embedded import open_server  # noqa: E402
from telemetry.settings import Settings  # noqa: E402

UTC = dt.timezone.utc
RESULTS = REPO / "bench" / "results" / "soak.json"
#: Routes the cycling connection visits, a second each (the hot ones have their own connections).
CYCLED_ROUTES = (
    "/api/v1/health",
    "/api/v1/forecast",
    "/api/v1/models",
    "/readyz",
    "/metrics",
    "/health_data/1",
    "/current_health/1",
    "/predicted_data/1",
    "/api/v1/health?step=5m",
)
#: Connections per dedicated route: 4 in all with the cycling one, as in the serving benchmark.
DEDICATED = {"/api/v1/status": 2, "/livez": 1}
MAX_RSS_GROWTH = 0.10


# --- resident memory ---------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's workers), from /proc."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return sorted(set(out))


def rss_kib(pid: int) -> int:
    """Resident set size of one process in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class MemorySampler:
    """Samples the RSS of a master process and its children every ``every_s`` seconds, in a thread."""

    master: int
    every_s: float = 1.0
    samples: list[dict] = field(default_factory=list)
    workers_seen: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> dict:
        workers = children(self.master)
        self.workers_seen.update(workers)
        per = {pid: rss_kib(pid) for pid in [self.master, *workers]}
        entry = {"t": time.monotonic(), "total_kib": sum(per.values()), "per_process_kib": per}
        self.samples.append(entry)
        return entry

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()

    def summary(self) -> dict:
        first, last = self.samples[0], self.samples[-1]
        totals = [s["total_kib"] for s in self.samples]
        per_process = {}
        for pid in first["per_process_kib"]:
            start, end = first["per_process_kib"][pid], last["per_process_kib"].get(pid, 0)
            per_process[str(pid)] = {
                "role": "master" if pid == self.master else "worker",
                "start_kib": start,
                "end_kib": end,
                "growth": (end - start) / start if start else None,
            }
        return {
            "start_kib": first["total_kib"],
            "end_kib": last["total_kib"],
            "max_kib": max(totals),
            "growth": (last["total_kib"] - first["total_kib"]) / first["total_kib"],
            "max_growth": (max(totals) - first["total_kib"]) / first["total_kib"],
            "samples": len(self.samples),
            "series_kib": totals,
            "per_process": per_process,
        }


# --- load ----------------------------------------------------------------------------------------


def load_function(tool: str) -> tuple[str, Callable[[str, float, int], dict]]:
    """The serving benchmark's load code: wrk when installed (or asked for), else its threaded client."""
    use_wrk = tool == "wrk" or (tool == "auto" and shutil.which("wrk"))
    if not use_wrk:
        return "python", run_python_client
    # wrk refuses fewer connections than threads.
    return "wrk", lambda url, duration, connections: run_wrk(url, duration, connections, threads=min(2, connections))


def cycle_routes(load, base: str, duration_s: float, slice_s: float = 1.0) -> dict[str, list[dict]]:
    """One connection visiting :data:`CYCLED_ROUTES` in turn, ``slice_s`` each, for ``duration_s``."""
    results: dict[str, list[dict]] = {path: [] for path in CYCLED_ROUTES}
    deadline = time.monotonic() + duration_s
    for path in itertools.cycle(CYCLED_ROUTES):
        left = deadline - time.monotonic()
        if left < 0.5:
            break
        results[path].append(load(base + path, max(1.0, min(slice_s, left)), 1))
    return {path: rounds for path, rounds in results.items() if rounds}


def run_load(load, base: str, duration_s: float) -> dict[str, dict]:
    """Every connection group at once for ``duration_s``; per-route figures (serve_bench.combine)."""
    results: dict[str, list[dict]] = {}
    errors: list[BaseException] = []

    def dedicated(path: str, connections: int) -> None:
        try:
            results[path] = [load(base + path, duration_s, connections)]
        except BaseException as exc:  # reported below, never lost in a thread
            errors.append(exc)

    def cycled() -> None:
        try:
            results.update(cycle_routes(load, base, duration_s))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=dedicated, args=item) for item in DEDICATED.items()]
    threads.append(threading.Thread(target=cycled))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return {path: combine(rounds) for path, rounds in results.items()}


def warm_up(port: int, requests_per_route: int = 10) -> None:
    """A few requests on every route, so each worker's caches and code paths are warm before measuring."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for path in (*DEDICATED, *CYCLED_ROUTES):
        for _ in range(requests_per_route):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"warm-up: {path} answered {response.status}")
    conn.close()


# --- the run ---------------------------------------------------------------------------------------


def soak(
    duration_s: float,
    *,
    workers: int = 2,
    threads: int = 4,
    tool: str = "auto",
    history_hours: float = 3.0,
    warmup_s: float = 4.0,
    models_dir: Path | None = None,
) -> dict:
    """Run the soak for ``duration_s`` seconds and return its figures (see the module doc)."""
    tool_name, load = load_function(tool)
    work = Path(tempfile.mkdtemp(prefix="pycemaker-soak-"))
    server = open_server(work / "db", port=free_port())
    settings = Settings(mongo_uri=server.uri, database="soak", models_dir=work / "models", onnx_threads=1)
    stop_live = threading.Event()
    api = None
    output = work / "serve.log"
    try:
        db = store.connect(settings, autostart=False)
        now = dt.datetime.now(UTC).replace(microsecond=0)
        simulator.write(db, simulator.simulate(now - dt.timedelta(hours=history_hours), now, 11, settings), settings)
        live = threading.Thread(target=simulator.run_live, args=(db, settings, 12),
                                kwargs={"interval_s": 5.0, "stop": stop_live.is_set}, daemon=True)
        live.start()
        shutil.copytree(models_dir or FIXTURE, settings.models_dir)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "MONGO_URI": server.uri, "PYCEMAKER_DATABASE": "soak",
               "PYCEMAKER_MODELS_DIR": str(settings.models_dir), "PYCEMAKER_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with output.open("w") as log_file:
            api = subprocess.Popen(
                [sys.executable, "-m", "pycemaker", "serve", "--port", str(port), "--workers", str(workers), "--threads", str(threads)],
                cwd=work, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            )
        wait_ready(base, api)
        # The live writer simulates a day before its first write: let it, so the data moves during the run.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and max(t for t in store.newest_sample_times(db).values() if t) <= now:
            time.sleep(0.5)

        warm_up(port)
        run_load(load, base, warmup_s)

        memory = MemorySampler(api.pid)
        memory.start()
        began = time.monotonic()
        routes = run_load(load, base, duration_s)
        elapsed = time.monotonic() - began
        memory.stop()
        alive = api.poll() is None
    finally:
        stop_live.set()
        stop_process(api)
        server.stop()
        log_text = output.read_text(errors="replace") if output.exists() else ""
        shutil.rmtree(work, ignore_errors=True)

    rss = memory.summary()
    replaced = sorted(memory.workers_seen - set(children_at_start(memory)))
    total_requests = sum(r["requests"] for r in routes.values())
    total_errors = sum(r["errors"] for r in routes.values())
    return {
        "duration_s": round(elapsed, 2),
        "load_tool": tool_name,
        "connections": sum(DEDICATED.values()) + 1,
        "gunicorn": f"{workers} workers x {threads} threads",
        "requests": total_requests,
        "rps": total_requests / elapsed,
        "errors": total_errors,
        "routes": {path: {k: r[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "errors")} for path, r in routes.items()},
        "rss": rss,
        "workers_replaced": replaced,
        "server_alive_at_end": alive,
        "tracebacks_in_log": log_text.count("Traceback"),
        "targets": {
            "zero_errors": total_errors == 0,
            "no_worker_replaced": not replaced and alive,
            "rss_growth_below_10_percent": rss["growth"] < MAX_RSS_GROWTH,
        },
    }


def children_at_start(memory: MemorySampler) -> list[int]:
    return [pid for pid in memory.samples[0]["per_process_kib"] if pid != memory.master]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sustained load (default 60)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--models-dir", type=Path, help="a registry to serve (default: tests/fixtures/models/v1)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    result = soak(args.duration, workers=args.workers, threads=args.threads, tool=args.tool, models_dir=args.models_dir)
    serve = REPO / "bench" / "results" / "serve.json"
    reference = None
    if serve.is_file():
        figures = json.loads(serve.read_text())
        reference = {"status_rps": figures["http"]["status"]["rps"], "livez_rps": figures["http"]["livez"]["rps"],
                     "connections": figures["setup"]["connections"]}
    output = {
        "benchmark": "soak",
        "when": dt.datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "setup": {
            "server": f"pycemaker serve (gunicorn gthread, {result['gunicorn']}), loopback, the fixture LSTM",
            "load": "closed loop, 4 keep-alive connections: 2 on /api/v1/status, 1 on /livez, 1 cycling the other read routes",
            "data": "3 h simulated history + live samples every 5 s during the run",
            "rss": "VmRSS of the gunicorn master + workers, every second, from the end of the warm-up",
        },
        "serve_benchmark_reference": reference,
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(output, indent=2) + "\n")
    rss = result["rss"]
    print(json.dumps(result["targets"], indent=2))
    print(f"{result['duration_s']:.0f} s, {result['requests']} requests ({result['rps']:.0f} req/s), {result['errors']} errors; "
          f"RSS {rss['start_kib'] / 1024:.1f} -> {rss['end_kib'] / 1024:.1f} MiB ({rss['growth']:+.1%}, max {rss['max_growth']:+.1%}); "
          f"workers replaced: {len(result['workers_replaced'])} -> {args.out}")
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
