"""Soak: the serving benchmark's load on gunicorn for 10 minutes; errors, and resident memory per process.

What it does (loopback, bounded in time):

1. hosts a SecantusDB server in this process, writes a few simulated hours up to now and keeps
   appending live samples every 5 s, as ``bench/serve_bench.py`` does;
2. starts ``pycemaker serve`` (gunicorn, 2 workers x 4 threads) with the registry fixture model;
3. warms every route up, then measures the **baseline**: the serving benchmark's load alone
   (wrk, 2 threads, 4 keep-alive connections on ``/api/v1/status``) for ``--baseline`` seconds;
4. **soaks** for ``--duration`` seconds: the same 4 connections on ``/api/v1/status`` (so it runs
   at the benchmark's rate) plus one keep-alive connection visiting every other route in turn,
   ``/livez`` included, a request every 0.1 s, so every route is exercised the whole time;
5. samples the resident memory (``VmRSS`` in ``/proc``) of the gunicorn master and each worker
   every second and fits a line per process: its slope (KiB/min) and what the line grows over
   the run, against the scatter around it (the noise), and notes any worker that was replaced.

Figures go to ``bench/results/soak.json`` and, rendered from it, docs/operations.md ("Load").
Targets (issues 7, 18): 0 errors, no worker replaced, ``/api/v1/status`` at >= 90% of the
baseline's rate, and each worker's memory flat within noise: its fitted growth over the run at
most 1% of its size, or within 3 standard deviations of the scatter around the line.
``tests/reliability/test_soak.py`` runs the same code for 10 s and asserts the targets that apply.

    PYTHONPATH=. .venv/bin/python bench/soak_bench.py [--duration 600] [--baseline 20]
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.docblock import replace_block  # noqa: E402
from bench.serve_bench import FIXTURE, KeepAlive, combine, free_port, run_python_client, run_wrk, stop_process, wait_ready  # noqa: E402
from telemetry import simulator, store  # noqa: E402
from telemetry.embedded import open_server  # noqa: E402
from telemetry.settings import Settings  # noqa: E402

UTC = dt.timezone.utc
RESULTS = REPO / "bench" / "results" / "soak.json"
DOC = REPO / "docs" / "operations.md"
#: Routes the cycling connection visits, a second each (the status has its own connections).
CYCLED_ROUTES = (
    "/livez",
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
#: The other routes are visited at this pace (one request every 0.1 s, round robin): each stays under
#: load the whole run while the status gets the benchmark's rate.
CYCLE_EVERY_S = 0.1
#: The serving benchmark's load (bench/serve_bench.py): 4 keep-alive connections on the status.
DEDICATED = {"/api/v1/status": 4}
MAX_RSS_GROWTH = 0.10
#: A worker's memory is flat when its fitted growth over the run is at most this share of its size...
FLAT_SHARE = 0.01
#: ...or within this many standard deviations of the scatter around the fitted line (noise).
FLAT_SIGMAS = 3.0
#: The soak's status throughput, against the baseline's (the benchmark's load alone).
MIN_RATE_SHARE = 0.9


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
            points = [(s["t"], s["per_process_kib"][pid]) for s in self.samples if s["per_process_kib"].get(pid)]
            per_process[str(pid)] = {
                "role": "master" if pid == self.master else "worker",
                "start_kib": start,
                "end_kib": end,
                "growth": (end - start) / start if start else None,
                **memory_trend(points),
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


def memory_trend(points: list[tuple[float, int]]) -> dict:
    """A least-squares line through (monotonic seconds, KiB): slope, growth over the span, scatter, flat or not."""
    t = np.array([p[0] for p in points], dtype=float)
    kib = np.array([p[1] for p in points], dtype=float)
    if len(points) < 3 or t[-1] <= t[0]:
        return {"slope_kib_per_min": None, "fitted_growth_kib": None, "noise_kib": None, "flat": None}
    minutes = (t - t[0]) / 60.0
    slope, intercept = np.polyfit(minutes, kib, 1)
    noise = float(np.std(kib - (slope * minutes + intercept)))
    growth = float(slope * minutes[-1])
    return {
        "slope_kib_per_min": float(slope),
        "fitted_growth_kib": growth,
        "noise_kib": noise,
        "flat": bool(growth <= max(FLAT_SHARE * kib[0], FLAT_SIGMAS * noise)),
    }


# --- load ----------------------------------------------------------------------------------------


def load_function(tool: str) -> tuple[str, Callable[[str, float, int], dict]]:
    """The serving benchmark's load code: wrk when installed (or asked for), else its threaded client."""
    use_wrk = tool == "wrk" or (tool == "auto" and shutil.which("wrk"))
    if not use_wrk:
        return "python", run_python_client
    # wrk refuses fewer connections than threads.
    return "wrk", lambda url, duration, connections: run_wrk(url, duration, connections, threads=min(2, connections))


def cycle_routes(base: str, duration_s: float, every_s: float = CYCLE_EVERY_S) -> dict[str, list[dict]]:
    """One keep-alive connection visiting :data:`CYCLED_ROUTES` in turn, one request every ``every_s``."""
    host, port = base.split("//", 1)[1].split(":")
    latencies: dict[str, list[float]] = {path: [] for path in CYCLED_ROUTES}
    errors = dict.fromkeys(CYCLED_ROUTES, 0)
    conn = KeepAlive(host, int(port), timeout=10)
    began = time.monotonic()
    next_at = began
    for path in itertools.cycle(CYCLED_ROUTES):
        if time.monotonic() - began >= duration_s:
            break
        ms = conn.get(path)
        if ms is None:
            errors[path] += 1
        else:
            latencies[path].append(ms)
        next_at += every_s
        time.sleep(max(0.0, next_at - time.monotonic()))
    conn.close()
    elapsed = time.monotonic() - began
    out = {}
    for path, values in latencies.items():
        if values or errors[path]:
            arr = np.asarray(values or [np.nan])
            out[path] = [{"requests": len(values), "rps": len(values) / elapsed, "p50_ms": float(np.nanpercentile(arr, 50)),
                          "p99_ms": float(np.nanpercentile(arr, 99)), "errors": errors[path]}]
    return out


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
            results.update(cycle_routes(base, duration_s))
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
    baseline_s: float = 20.0,
    models_dir: Path | None = None,
) -> dict:
    """Run the soak for ``duration_s`` seconds and return its figures (see the module doc).

    ``baseline_s``: seconds of the serving benchmark's load alone first (0: none, no rate target)."""
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
        status = "/api/v1/status"
        baseline = load(base + status, baseline_s, DEDICATED[status]) if baseline_s else None

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
    workers_flat = [p["flat"] for p in rss["per_process"].values() if p["role"] == "worker"]
    share = routes[status]["rps"] / baseline["rps"] if baseline else None
    targets = {
        "zero_errors": total_errors == 0 and (baseline is None or baseline["errors"] == 0),
        "no_worker_replaced": not replaced and alive,
        "rss_growth_below_10_percent": rss["growth"] < MAX_RSS_GROWTH,
        "worker_memory_flat_within_noise": all(flag is not False for flag in workers_flat),
    }
    if share is not None:
        targets["status_at_the_benchmark_rate"] = share >= MIN_RATE_SHARE
    return {
        "duration_s": round(elapsed, 2),
        "load_tool": tool_name,
        "connections": sum(DEDICATED.values()) + 1,
        "gunicorn": f"{workers} workers x {threads} threads",
        "requests": total_requests,
        "rps": total_requests / elapsed,
        "errors": total_errors,
        "routes": {path: {k: r[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "errors")} for path, r in routes.items()},
        "baseline": baseline and {"seconds": baseline_s, "path": status, **{k: baseline[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "errors")}},
        "status_rate_share_of_baseline": share,
        "rss": rss,
        "workers_replaced": replaced,
        "server_alive_at_end": alive,
        "tracebacks_in_log": log_text.count("Traceback"),
        "targets": targets,
    }


def children_at_start(memory: MemorySampler) -> list[int]:
    return [pid for pid in memory.samples[0]["per_process_kib"] if pid != memory.master]


def render(output: dict) -> str:
    """The docs/operations.md figures ("Load"), from a soak.json."""
    rss, baseline = output["rss"], output.get("baseline")
    status = output["routes"]["/api/v1/status"]
    replaced = "no worker replaced" if not output["workers_replaced"] else f"workers replaced: {output['workers_replaced']}"
    lines = [
        f"Last run: `make soak` at {output['when']} ({output['machine']['cpus']} CPUs shared with other jobs, load tool "
        f"`{output['load_tool']}`, {output['gunicorn']}): {output['duration_s'] / 60:.1f} min, {output['requests']:,} requests "
        f"({output['rps']:,.0f} req/s), **{output['errors']} errors**, {replaced}.",
    ]
    if baseline:
        lines.append(
            f"`/api/v1/status` ran at {status['rps']:,.0f} req/s (p99 {status['p99_ms']:.1f} ms) against {baseline['rps']:,.0f} req/s "
            f"for the serving benchmark's load alone just before ({output['status_rate_share_of_baseline']:.0%}); every other "
            f"route answered a request every {CYCLE_EVERY_S * len(CYCLED_ROUTES):.1f} s throughout."
        )
    lines += [
        "",
        "Resident memory (VmRSS, sampled every second; a least-squares line per process over the run):",
        "",
        "| process | start | end | slope | line's growth over the run | noise (1 sd around the line) | flat within noise |",
        "|---|---|---|---|---|---|---|",
    ]
    for pid, p in rss["per_process"].items():
        flat = {True: "yes", False: "**no**", None: "n/a"}[p["flat"]]
        lines.append(
            f"| {p['role']} {pid} | {p['start_kib'] / 1024:.1f} MiB | {p['end_kib'] / 1024:.1f} MiB | {p['slope_kib_per_min']:+.1f} KiB/min "
            f"| {p['fitted_growth_kib'] / 1024:+.2f} MiB ({p['fitted_growth_kib'] / p['start_kib']:+.2%}) | {p['noise_kib'] / 1024:.2f} MiB | {flat} |"
        )
    lines += ["", "Targets: " + ", ".join(f"`{name}` {'met' if ok else '**missed**'}" for name, ok in output["targets"].items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of sustained load (default 600)")
    parser.add_argument("--baseline", type=float, default=20.0, help="seconds of the serving benchmark's load alone first (default 20)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--models-dir", type=Path, help="a registry to serve (default: tests/fixtures/models/v1)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the figures in docs/operations.md")
    args = parser.parse_args()

    result = soak(args.duration, workers=args.workers, threads=args.threads, tool=args.tool, baseline_s=args.baseline,
                  models_dir=args.models_dir)
    output = {
        "benchmark": "soak",
        "when": dt.datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "setup": {
            "server": f"pycemaker serve (gunicorn gthread, {result['gunicorn']}), loopback, the fixture LSTM",
            "load": "closed loop: the serving benchmark's 4 keep-alive connections on /api/v1/status (wrk); plus 1 connection visiting every other route in turn, a request every 0.1 s",
            "baseline": "the serving benchmark's load alone (4 connections on /api/v1/status), just before the soak",
            "data": "3 h simulated history + live samples every 5 s during the run",
            "rss": "VmRSS of the gunicorn master + workers, every second, from the end of the baseline",
        },
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(output, indent=2) + "\n")
    if not args.no_docs and args.out == RESULTS:
        replace_block(DOC, "soak", render(output))
    rss = result["rss"]
    print(json.dumps(result["targets"], indent=2))
    print(f"{result['duration_s']:.0f} s, {result['requests']} requests ({result['rps']:.0f} req/s), {result['errors']} errors; "
          f"status at {result['status_rate_share_of_baseline'] or 0:.0%} of the baseline; "
          f"RSS {rss['start_kib'] / 1024:.1f} -> {rss['end_kib'] / 1024:.1f} MiB ({rss['growth']:+.1%}); "
          f"workers replaced: {len(result['workers_replaced'])} -> {args.out}")
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
