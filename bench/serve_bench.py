"""Serving benchmark: HTTP throughput and latency, ONNX inference, and the original approach, in one run.

What it does (everything on loopback, bounded in time, ~1.5 min):

1. hosts a SecantusDB server in this process, writes 4 simulated hours up to now and keeps
   appending live samples every 5 s (so the status really is recomputed during the load);
2. starts ``pycemaker serve`` (gunicorn, 2 workers) with the registry fixture model
   (``tests/fixtures/models/v1``, a real exported LSTM) or ``--models-dir``;
3. loads ``/livez`` and ``/api/v1/status`` alternately, three rounds each, with Debian's ``wrk``
   (or a threaded Python client when wrk is missing): requests/s, latency percentiles, errors;
4. times one ONNX inference in-process (batch 1, the model's own window);
5. times the original approach per request: read 3 h of samples, score per-minute health, fit
   SARIMAX(1,0,1)(0,1,0,60), forecast 180 minutes, find the crossing.

Figures go to ``bench/results/serve.json``; the targets (issue 4) are checked there, not asserted.

    PYTHONPATH=. .venv/bin/python bench/serve_bench.py [--duration 10] [--connections 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forecasting import registry  # noqa: E402
from telemetry import simulator, store  # noqa: E402
from telemetry.embedded import open_server  # noqa: E402
from forecasting.forecaster import OnnxForecaster  # noqa: E402
from telemetry.frames import load_minute_frame  # noqa: E402
from telemetry.health import minute_health  # noqa: E402
from telemetry.settings import Settings  # noqa: E402
from forecasting.windows import MAX_FILL_MINUTES, window_at  # noqa: E402

UTC = dt.timezone.utc
FIXTURE = REPO / "tests" / "fixtures" / "models" / "v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- load generation ----------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()
    return float(value) * _UNITS[unit]


def run_wrk(url: str, duration: float, connections: int, threads: int = 2) -> dict:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(duration)}s", "--timeout", "5s", "--latency", url],
        capture_output=True, text=True, timeout=duration + 30, check=True,
    ).stdout
    percentiles = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.MULTILINE)}
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests_total = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "requests": requests_total,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": percentiles["50"],
        "p90_ms": percentiles["90"],
        "p99_ms": percentiles["99"],
        "errors": (sum(int(g) for g in socket_errors.groups()) if socket_errors else 0) + (int(non_2xx.group(1)) if non_2xx else 0),
    }


class KeepAlive:
    """One keep-alive HTTP connection that reconnects after an error."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def get(self, path: str) -> float | None:
        """GET ``path``: its latency in ms, or None if it failed (an error or not 200)."""
        began = time.perf_counter()
        try:
            self.conn.request("GET", path)
            response = self.conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            return None
        return (time.perf_counter() - began) * 1e3 if response.status == 200 else None

    def close(self) -> None:
        self.conn.close()


def run_python_client(url: str, duration: float, connections: int) -> dict:
    """Keep-alive connections in threads (the fallback when wrk is not installed)."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    path = "/" + url.split("//", 1)[1].split("/", 1)[1]
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    stop = time.monotonic() + duration

    def worker(i: int) -> None:
        conn = KeepAlive(host, int(port))
        while time.monotonic() < stop:
            ms = conn.get(path)
            if ms is None:
                errors[i] += 1
            else:
                latencies[i].append(ms)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    flat = np.concatenate([np.asarray(x) for x in latencies]) if any(latencies) else np.array([np.nan])
    return {
        "requests": int(len(flat)),
        "rps": len(flat) / elapsed,
        "p50_ms": float(np.percentile(flat, 50)),
        "p90_ms": float(np.percentile(flat, 90)),
        "p99_ms": float(np.percentile(flat, 99)),
        "errors": int(sum(errors)),
    }


def combine(rounds: list[dict]) -> dict:
    """Several rounds of one endpoint: mean throughput, worst tail, all errors."""
    return {
        "rounds": rounds,
        "rps": statistics.fmean(r["rps"] for r in rounds),
        "p50_ms": statistics.fmean(r["p50_ms"] for r in rounds),
        "p99_ms": max(r["p99_ms"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "requests": sum(r["requests"] for r in rounds),
    }


# --- in-process measurements -----------------------------------------------------------------


def time_inference(models_dir: Path, db, settings: Settings, now: dt.datetime, repeats: int = 2000) -> dict:
    version = registry.current_version(models_dir)
    forecaster = OnnxForecaster(models_dir, version, settings)
    origin = now.replace(second=0, microsecond=0)
    lead = dt.timedelta(minutes=forecaster.input_minutes + MAX_FILL_MINUTES)
    frame = load_minute_frame(db, origin - lead, origin, settings)
    import pandas as pd

    window = window_at(frame, pd.Timestamp(origin), forecaster.scaling, forecaster.input_minutes)
    for _ in range(100):
        forecaster.predict_scaled(window)
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        forecaster.predict_scaled(window)
        samples.append((time.perf_counter() - began) * 1e3)
    full = []
    for _ in range(200):
        began = time.perf_counter()
        forecaster.forecast(frame, pd.Timestamp(origin))
        full.append((time.perf_counter() - began) * 1e3)
    return {
        "model_version": version,
        "model_bytes": (models_dir / version / registry.MODEL).stat().st_size,
        "input_shape": list(window.shape),
        "horizon_minutes": forecaster.horizon_minutes,
        "onnx_threads": settings.onnx_threads,
        "inference_p50_ms": float(np.percentile(samples, 50)),
        "inference_p99_ms": float(np.percentile(samples, 99)),
        "forecast_call_p50_ms": float(np.percentile(full, 50)),
        "repeats": repeats,
    }


def reference_request(db, settings: Settings, now: dt.datetime) -> dict:
    """The original approach, per request: 3 h of health -> SARIMAX(1,0,1)(0,1,0,60) -> 180-minute forecast -> crossing."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    start = now - dt.timedelta(hours=3)
    samples = store.read_samples(db, start - dt.timedelta(seconds=settings.alignment_tolerance_s), now)
    health = minute_health(samples, start, now, settings)["health"]
    health.index = health.index.tz_localize(None)
    health = health.asfreq("min")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = SARIMAX(health, order=(1, 0, 1), seasonal_order=(0, 1, 0, 60), enforce_stationarity=False, enforce_invertibility=False)
        fitted = model.fit(disp=False)
        mean = fitted.get_forecast(180).predicted_mean
    failing = np.flatnonzero(mean.to_numpy() <= settings.failure_threshold)
    return {"crossing_minutes": int(failing[0]) + 1 if len(failing) else None}


def time_reference(db, settings: Settings, runs: int = 5) -> dict:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        reference_request(db, settings, dt.datetime.now(UTC))
        times.append(time.perf_counter() - began)
    return {"runs": runs, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


# --- the run ---------------------------------------------------------------------------------


def wait_ready(base: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("pycemaker serve exited early")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the API did not become ready")


def database_process(data_dir: Path, settings: Settings, log: Path, timeout: float = 60) -> tuple[subprocess.Popen, object]:
    """The embedded server in its own process (``pycemaker db``, as ``make demo`` and production host it) on
    ``settings.mongo_uri``'s port, and a database handle once it answers."""
    port = int(settings.mongo_uri.rstrip("/").rsplit(":", 1)[1])
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "pycemaker", "db", "--data-dir", str(data_dir), "--port", str(port)],
                                  cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return server, store.connect(settings, autostart=False)
        except store.DatabaseUnavailable:
            if time.monotonic() > deadline or server.poll() is not None:
                stop_process(server)
                raise
            time.sleep(0.3)


def stop_process(process: subprocess.Popen | None, timeout: float = 30) -> None:
    """SIGTERM (gunicorn's graceful stop), then SIGKILL if it outlives ``timeout``."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load round (default 10)")
    parser.add_argument("--connections", type=int, default=4, help="concurrent keep-alive connections (default 4: saturates 2 cores)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per endpoint (default 3)")
    parser.add_argument("--models-dir", type=Path, help="a registry to serve (default: the tests/fixtures/models/v1 fixture)")
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "serve.json")
    args = parser.parse_args()

    tool = "wrk" if args.tool == "wrk" or (args.tool == "auto" and shutil.which("wrk")) else "python"
    work = Path(tempfile.mkdtemp(prefix="pycemaker-bench-"))
    server = open_server(work / "db", port=free_port())
    settings = Settings(mongo_uri=server.uri, database="bench", models_dir=work / "models", onnx_threads=1)
    stop_live = threading.Event()
    api = None
    try:
        db = store.connect(settings, autostart=False)
        now = dt.datetime.now(UTC).replace(microsecond=0)
        simulator.write(db, simulator.simulate(now - dt.timedelta(hours=4), now, 11, settings), settings)
        live = threading.Thread(target=simulator.run_live, args=(db, settings, 12),
                                kwargs={"interval_s": 5.0, "stop": stop_live.is_set}, daemon=True)
        live.start()
        # The live writer simulates a day before its first write (seconds of CPU): let it, before measuring.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and max(t for t in store.newest_sample_times(db).values() if t) <= now:
            time.sleep(0.5)
        if args.models_dir:
            shutil.copytree(args.models_dir, settings.models_dir)
        elif (FIXTURE / "current").is_file():
            shutil.copytree(FIXTURE, settings.models_dir)
        else:  # no fixture in this checkout: a contract-true model of the same shapes
            from tests.serving.onnx_models import persistence_model

            persistence_model(settings.models_dir, "bench-persistence", L=120, H=180)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "MONGO_URI": server.uri, "PYCEMAKER_DATABASE": "bench",
               "PYCEMAKER_MODELS_DIR": str(settings.models_dir), "PYCEMAKER_LOG_LEVEL": "WARNING", "PYTHONPATH": str(REPO)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        api = subprocess.Popen(
            [sys.executable, "-m", "pycemaker", "serve", "--port", str(port), "--workers", str(args.workers), "--threads", str(args.threads)],
            cwd=work, env=env,
        )
        wait_ready(base, api)
        load = run_wrk if tool == "wrk" else run_python_client
        for path in ("/livez", "/api/v1/status"):  # warm-up
            load(base + path, 3, args.connections)
        rounds: dict[str, list[dict]] = {"/livez": [], "/api/v1/status": []}
        for _ in range(args.rounds):
            for path in rounds:
                rounds[path].append(load(base + path, args.duration, args.connections))
                print(path, rounds[path][-1], flush=True)
        livez, status = combine(rounds["/livez"]), combine(rounds["/api/v1/status"])

        inference = time_inference(settings.models_dir, db, settings, dt.datetime.now(UTC))
        reference = time_reference(db, settings)
    finally:
        stop_live.set()
        stop_process(api)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    ratio = status["rps"] / livez["rps"]
    speedup = reference["median_s"] * 1e3 / status["p50_ms"]
    result = {
        "benchmark": "serve",
        "when": dt.datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "setup": {
            "server": f"gunicorn gthread, {args.workers} workers x {args.threads} threads, loopback",
            "load_tool": tool,
            "connections": args.connections,
            "round_seconds": args.duration,
            "rounds": args.rounds,
            "data": "4 h simulated history + live samples every 5 s during the run",
        },
        "http": {"livez": livez, "status": status, "status_over_livez_throughput": ratio},
        "onnx": inference,
        "reference_sarimax": {
            **reference,
            "what": "per request: read 3 h, per-minute health, fit SARIMAX(1,0,1)(0,1,0,60), forecast 180 min, crossing",
        },
        "status_speedup_over_reference": speedup,
        "targets": {
            "status_throughput_at_least_half_of_livez": ratio >= 0.5,
            "status_p99_at_most_15ms": status["p99_ms"] <= 15.0,
            "zero_errors": livez["errors"] == 0 and status["errors"] == 0,
            "onnx_inference_p50_at_most_0_5ms": inference["inference_p50_ms"] <= 0.5,
            "status_at_least_100x_faster_than_reference": speedup >= 100,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("targets", "status_speedup_over_reference")}, indent=2))
    print(f"livez {livez['rps']:.0f} req/s, status {status['rps']:.0f} req/s (x{ratio:.2f}), status p99 {status['p99_ms']:.2f} ms, "
          f"ONNX p50 {inference['inference_p50_ms']:.3f} ms, SARIMAX {reference['median_s']:.2f} s/request -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
