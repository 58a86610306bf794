"""Fleet benchmark: ``GET /api/v1/fleet`` latency and the time to refresh every service's status, for 20 to 1,000 services.

What it does, per fleet size (the API and its rounds in this process, on loopback):

1. hosts a SecantusDB server in its own process (``pycemaker db``, as production and ``make demo`` host it: the
   server's work does not share the API's interpreter) and writes ``--hours`` of simulated samples per service
   (``svc-01``..``svc-N``, each its own app: :func:`telemetry.simulator.fleet_service`), ten minutes
   past the clock so that later rounds find new samples;
2. builds the API (``create_app``, the fixture LSTM ``tests/fixtures/models/v1`` serving every
   service) on a fixed clock, and times the status rounds of :class:`serving.fleet.Fleet`:
   ``cold`` (every status created: 3 h of minutes read and forecast per service), ``new_samples``
   (the clock moves 5 s: the statuses with a new sample since are recomputed, most of them as scrapes are 5-6 s
   apart, in batches: serving/batch.py), ``new_samples_one_by_one`` (the same, each status refreshed on its own,
   as before batching; the two alternate ``--repeats`` times, medians kept, and are compared per status
   recomputed, ``ms_per_recomputed``) and ``quiet`` (nothing new: only the checks, each reading its newest step's samples); the resident memory the
   statuses added (RSS after the cold round less before, per service; the first service's status is created
   before, so what the process allocates once is not counted per service);
3. serves it with a threaded werkzeug server (the GIL switch interval set as in a gunicorn worker:
   serving/wsgi.py) and times ``GET /api/v1/fleet`` over one keep-alive connection: ``idle`` (statuses
   cached) and ``refreshing`` (the fleet's own background refresher, serving/fleet.py, recomputing every
   status meanwhile, the clock moving 5 s a round and no pause between rounds: production's steady state at
   its worst). The staleness bound is that round's time plus the refresher's 1-s pause: no status is older
   while every service changes.

The samples are written by ``--jobs`` processes (one per core by default), each simulating a service and storing it
with ``insert_many`` and its rollups from the simulation itself (no read-back): simulating and encoding overlap with
the server's inserts. ``--hours 2.5`` keeps the history at what the model reads: the fixture LSTM's input window
is 120 minutes plus the forward fill's 5-minute lead-in (2.1 h), and a status reads up to 180 minutes (much fewer
hours would leave the windows short, not make the benchmark cheaper to run faithfully). ``--raw-minutes 30`` stores
the raw samples of only the last 30 minutes (and the 10 past the clock) while the rollups cover every hour
(simulator.write ``raw_since``): the statuses read the same rows (rollups where they exist: telemetry/rollups.py),
the directory's first scan finds less to read, and 1,000 services are written in a quarter of an hour on 2 cores
(``write_s`` in the JSON), a fraction of what every raw sample would take. Ingest itself is measured by bench/rollup_bench.py. The figures
in docs/scaling.md come from::

    PYTHONPATH=. .venv/bin/python bench/fleet_bench.py --sizes 20 200 1000 --raw-minutes 30

Figures go to ``bench/results/fleet.json`` and docs/scaling.md (between its ``figures:fleet`` markers).

    PYTHONPATH=. .venv/bin/python bench/fleet_bench.py [--sizes 20 200] [--requests 300] [--hours 3] [--raw-minutes N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import http.client
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.docblock import replace_block  # noqa: E402
from bench.serve_bench import database_process, free_port, stop_process  # noqa: E402
from serving.app import create_app  # noqa: E402
from serving.periodic import Periodic  # noqa: E402
from serving.wsgi import SWITCH_INTERVAL_S, tune_interpreter  # noqa: E402
from telemetry import simulator, store  # noqa: E402
from telemetry.settings import Settings  # noqa: E402

UTC = dt.timezone.utc
FIXTURE = REPO / "tests" / "fixtures" / "models" / "v1"
DOC = REPO / "docs" / "scaling.md"
END = dt.datetime(2026, 3, 2, 0, 50, tzinfo=UTC)  # recovering from an hourly peak: a mix of states
PAUSE_S = 1.0  # the background refresher's pause between rounds in production (status_ttl_s, at least 1 s)
AHEAD = dt.timedelta(minutes=10)  # samples written past the clock: later rounds find new ones


class Clock:
    def __init__(self, now: dt.datetime):
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += dt.timedelta(seconds=seconds)


def write_service(settings: Settings, index: int, count: int, hours: float, seed: int, raw_minutes: float | None = None) -> None:
    """Simulate and store one service of the fleet (its samples with ``insert_many``, its rollups from the simulation
    itself: simulator.write), over a client of its own (a writer process's). With ``raw_minutes``, only the samples of
    the last ``raw_minutes`` before the clock (and those past it) are stored; the rollups cover every hour."""
    db = store.connect(settings, autostart=False)
    try:
        name, service_seed, scale = simulator.fleet_service(seed, index, count)
        sim = simulator.simulate(END - dt.timedelta(hours=hours), END + AHEAD, service_seed, settings, capacity_scale=scale)
        raw_since = END - dt.timedelta(minutes=raw_minutes) if raw_minutes is not None else None
        simulator.write(db, sim, settings, service=name, raw_since=raw_since)
    finally:
        db.client.close()


def write_fleet(db, settings: Settings, count: int, hours: float, seed: int = 42, jobs: int = 1, raw_minutes: float | None = None) -> float:
    """Write every service's samples, ``jobs`` services at a time (each in a process of its own: simulating and
    encoding overlap with the server's inserts, and use every core)."""
    began = time.perf_counter()
    store.ensure_indexes(db)
    if jobs <= 1:
        for index in range(1, count + 1):
            write_service(settings, index, count, hours, seed, raw_minutes)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = [pool.submit(write_service, settings, index, count, hours, seed, raw_minutes) for index in range(1, count + 1)]
            for future in done:
                future.result()
    return time.perf_counter() - began


def percentiles(ms: list[float]) -> dict:
    arr = np.asarray(ms)
    return {"requests": len(ms), "p50_ms": round(float(np.percentile(arr, 50)), 2), "p90_ms": round(float(np.percentile(arr, 90)), 2),
            "p99_ms": round(float(np.percentile(arr, 99)), 2), "max_ms": round(float(arr.max()), 2)}


def time_requests(port: int, path: str, count: int) -> tuple[list[float], int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times, size = [], 0
    try:
        for _ in range(count):
            began = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            times.append((time.perf_counter() - began) * 1000)
            assert response.status == 200, body[:300]
            size = len(body)
    finally:
        conn.close()
    return times, size


def timed_round(fleet, run) -> tuple[float, int]:
    """``run``'s seconds and how many statuses it recomputed (a new key; a kept snapshot keeps its key)."""
    before = {name: status.current() for name, status in fleet._statuses.items()}
    began = time.perf_counter()
    run()
    elapsed = time.perf_counter() - began
    recomputed = 0
    for name, status in fleet._statuses.items():
        old, new = before.get(name), status.current()
        recomputed += new is not None and (old is None or new.key != old.key)
    return elapsed, recomputed


def frames_bytes(fleet) -> int:
    total = 0
    for status in list(fleet._statuses.values()):
        recent = status.cache.recent()
        if recent is not None:
            total += int(recent.memory_usage(deep=True).sum())
        snap = status.current()
        if snap is not None and snap.frame is not None and snap.frame is not recent:
            total += int(snap.frame.memory_usage(deep=True).sum())
    return total


def rss_bytes() -> int:
    """This process's resident memory (Linux /proc; 0 elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def run_size(count: int, args, work: Path) -> dict:
    from werkzeug.serving import make_server

    settings = Settings(mongo_uri=f"mongodb://127.0.0.1:{free_port()}/", database=f"fleet{count}", models_dir=work / f"models-{count}",
                        onnx_threads=1, services_refresh_s=3600.0, max_services=max(1000, count))
    shutil.copytree(FIXTURE, settings.models_dir)
    result: dict = {"services": count}
    server, db = database_process(work / f"db-{count}", settings, work / f"db-{count}.log")
    try:
        result["write_s"] = round(write_fleet(db, settings, count, args.hours, jobs=args.jobs, raw_minutes=args.raw_minutes), 1)
        clock = Clock(END)
        # Requests hand out cached statuses (as with the background refresher); the rounds below compute them.
        app = create_app(settings, clock=clock, background=False, status_ttl_s=3600.0, db=db)
        rt = app.extensions["pycemaker"]
        fleet = rt.fleet

        began = time.perf_counter()
        listed = fleet.directory.services(max_age_s=0)
        result["directory_scan_s"] = {"first": round(time.perf_counter() - began, 3)}
        clock.advance(5)
        began = time.perf_counter()
        fleet.directory.refresh()
        result["directory_scan_s"]["incremental"] = round(time.perf_counter() - began, 3)
        assert len(listed) == count, (len(listed), count)

        # The first status is created on its own, before the memory is measured: what the process allocates once
        # (the model's arenas, pandas' first frames) is not counted per service. The samples were written by other
        # processes, so no freed memory of this one's hides the statuses' growth.
        began = time.perf_counter()
        fleet.status(next(iter(listed))).refresh()
        first_s = time.perf_counter() - began
        gc.collect()
        rss_before = rss_bytes()
        rounds = {"cold": first_s + fleet.refresh_all()}
        gc.collect()
        result["rss_kib_per_service"] = round((rss_bytes() - rss_before) / max(1, count - 1) / 1024, 1)
        def one_by_one_round() -> None:  # as rounds were before batching: each status on its own, the model run per service
            for name in listed:
                fleet.status(name).refresh()

        batched, one_by_one = [], []
        for _ in range(args.repeats):  # alternated, so a busy moment of the machine weighs on both alike
            clock.advance(5)
            batched.append(timed_round(fleet, fleet.refresh_all))
            clock.advance(5)
            one_by_one.append(timed_round(fleet, one_by_one_round))
        rounds["new_samples"] = float(np.median([s for s, _ in batched]))
        rounds["new_samples_one_by_one"] = float(np.median([s for s, _ in one_by_one]))
        rounds["quiet"] = fleet.refresh_all()
        result["status_round_s"] = {k: round(v, 3) for k, v in rounds.items()}
        result["status_round_ms_per_service"] = {k: round(1000 * v / count, 2) for k, v in rounds.items()}
        # A round recomputes the statuses with a new grid point since the last (scrapes are 5-6 s apart: in a given
        # 5 s some services have none), so the two ways are compared per status recomputed.
        result["recomputed"] = {"new_samples": [n for _, n in batched], "new_samples_one_by_one": [n for _, n in one_by_one]}
        result["ms_per_recomputed"] = {
            key: round(float(np.median([1000 * s / max(1, n) for s, n in runs])), 2)
            for key, runs in (("new_samples", batched), ("new_samples_one_by_one", one_by_one))
        }
        result["frames_kib_per_service"] = round(frames_bytes(fleet) / count / 1024, 1)
        states: dict[str, int] = {}
        for status in fleet._statuses.values():
            state = status.current().status.state
            states[state] = states.get(state, 0) + 1
        result["states"] = dict(sorted(states.items()))

        http = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        try:
            time_requests(http.server_port, "/api/v1/fleet", 20)  # warm-up
            idle, size = time_requests(http.server_port, "/api/v1/fleet", args.requests)
            result["fleet_response_kib"] = round(size / 1024, 1)
            result["fleet_idle"] = percentiles(idle)
            services_idle, _ = time_requests(http.server_port, "/api/v1/services", max(50, args.requests // 3))
            result["services_idle"] = percentiles(services_idle)

            refresh_rounds: list[float] = []

            def new_samples_round() -> None:
                clock.advance(5)
                refresh_rounds.append(fleet.refresh_all())

            # The fleet's own refresher (so requests take the path they take in production: the listing of the
            # last batch), each round with new samples for every service, back to back.
            fleet._refresher = Periodic("fleet-refresh", new_samples_round, lambda: 0.0)
            fleet._refresher.start()
            deadline = time.monotonic() + 600
            while not refresh_rounds and time.monotonic() < deadline:  # the first round done, as in production
                time.sleep(0.05)
            assert refresh_rounds, "no refresh round finished within 600 s (see the log)"
            busy, _ = time_requests(http.server_port, "/api/v1/fleet", args.requests)
            fleet._refresher.stop()
            fleet._refresher._thread.join(600)
            result["fleet_refreshing"] = percentiles(busy)
            result["status_round_under_requests_s"] = round(float(np.mean(refresh_rounds)), 3) if refresh_rounds else None
            worst = max(refresh_rounds) if refresh_rounds else rounds["new_samples"]
            result["staleness_bound_s"] = round(worst + PAUSE_S, 2)
        finally:
            http.shutdown()
        rt.stop()
        db.client.close()
    finally:
        stop_process(server)
    return result


def header(benchmark: str) -> dict:
    """The fields every fleet benchmark's JSON starts with: which script, when, on what."""
    return {
        "benchmark": benchmark,
        "when": dt.datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
    }


def run_sizes(sizes: list[int], run_size, args, prefix: str) -> list[dict]:
    """``run_size(count, args, work)`` for each fleet size, in one scratch directory (removed after), each result
    printed as it comes."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        results = []
        for count in sizes:
            results.append(run_size(count, args, work))
            print(json.dumps(results[-1]), flush=True)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fleet_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """The arguments every fleet benchmark takes: the writer processes, its JSON (``bench/results/<out>``), the docs
    and ``--keep``."""
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes writing the samples (default: one per core)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / out)
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/scaling.md's figures")
    parser.add_argument("--keep", action="store_true",
                        help="keep the sizes --out already holds that this run does not measure (each keeps its date)")


def run_and_record(results: dict, args: argparse.Namespace, run_size, prefix: str, block: str, render) -> None:
    """Measure every ``--sizes`` (:func:`run_sizes`) into ``results``, with ``--keep`` the sizes the JSON already holds
    (:func:`sizes_kept`); write the JSON, and unless ``--no-docs`` docs/scaling.md's ``block`` from ``render``."""
    results["sizes"] = sizes_kept(args.out, run_sizes(args.sizes, run_size, args, prefix), results["when"], args.keep)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_docs:
        replace_block(DOC, block, render(results))


def sizes_kept(out: Path, measured: list[dict], when: str, keep: bool) -> list[dict]:
    """The fleet sizes for the JSON at ``out``: ``measured`` (dated ``when``), and with ``keep`` the sizes ``out``
    already holds that this run did not measure (each with its own date), by fleet size."""
    sizes = [{**size, "when": when} for size in measured]
    if keep and out.exists():
        earlier = json.loads(out.read_text())
        done = {size["services"] for size in measured}
        sizes += [{"when": earlier["when"], **size} for size in earlier["sizes"] if size["services"] not in done]
    return sorted(sizes, key=lambda size: size["services"])


def dates(results: dict) -> str:
    """The dates a JSON's sizes were measured on (see :func:`sizes_kept`)."""
    return ", ".join(sorted({size.get("when", results["when"]) for size in results["sizes"]}))


def render(results: dict) -> str:
    """The docs/scaling.md block, from the JSON."""
    lines = [
        f"Measured by `bench/fleet_bench.py` ({results['machine']}, {dates(results)}; {results['hours']} h of rollups per service"
        + (f" with raw samples for its last {results['raw_minutes']:g} min" if results.get("raw_minutes") else " and of raw samples") + ",",
        "the fixture LSTM serving every service, one API process and the database in its own, statuses recomputed in batches"
        + (f", GIL switch interval {1000 * results['switch_interval_s']:g} ms" if "switch_interval_s" in results else "") + "):",
        "",
        "| services | status round: cold | new samples | one by one (before batching) | quiet | staleness bound "
        "| `/api/v1/fleet` p50 / p99 idle | while refreshing | `/api/v1/services` p50 / p99 idle | memory per service (RSS) "
        "| frames per service |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in results["sizes"]:
        r, ms = size["status_round_s"], size.get("ms_per_recomputed", size["status_round_ms_per_service"])

        def recomputed(key: str) -> str:
            counts = size.get("recomputed", {}).get(key)
            return f"{int(np.median(counts))} recomputed, " if counts else ""

        one = (f"{r['new_samples_one_by_one']:.2f} s ({recomputed('new_samples_one_by_one')}{ms['new_samples_one_by_one']:.0f} ms each)"
               if "new_samples_one_by_one" in r else "-")
        stale = f"{size['staleness_bound_s']:.1f} s" if size.get("staleness_bound_s") is not None else "-"
        rss = f"{size['rss_kib_per_service']:.0f} KiB" if "rss_kib_per_service" in size else "-"
        idle = size.get("services_idle")
        services = f"{idle['p50_ms']:.1f} / {idle['p99_ms']:.1f} ms" if idle else "-"
        lines.append(
            f"| {size['services']} | {r['cold']:.1f} s | {r['new_samples']:.2f} s ({recomputed('new_samples')}{ms['new_samples']:.0f} ms each) | {one} "
            f"| {r['quiet']:.2f} s | {stale} "
            f"| {size['fleet_idle']['p50_ms']:.1f} / {size['fleet_idle']['p99_ms']:.1f} ms "
            f"| {size['fleet_refreshing']['p50_ms']:.1f} / {size['fleet_refreshing']['p99_ms']:.1f} ms "
            f"| {services} | {rss} | {size['frames_kib_per_service']:.0f} KiB |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 200], help="fleet sizes (default 20 200; the docs' figures add 1000: see the module doc)")
    parser.add_argument("--requests", type=int, default=300, help="requests per latency measurement (default 300)")
    parser.add_argument("--hours", type=float, default=2.5, help="hours of samples per service (default 2.5: the model reads 2)")
    parser.add_argument("--raw-minutes", type=float,
                        help="store raw samples for only the last N minutes before the clock (rollups for all --hours): "
                             "statuses read rollups either way, and the fleet is written in a fraction of the time")
    parser.add_argument("--repeats", type=int, default=3, help="new-samples rounds timed each way, the median kept (default 3)")
    parser.add_argument("--switch-interval", type=float, help=f"GIL switch interval, s (default: a worker's, {SWITCH_INTERVAL_S})")
    fleet_arguments(parser, "fleet.json")
    args = parser.parse_args()

    if args.switch_interval is None:
        tune_interpreter()  # as in a gunicorn worker
    else:
        sys.setswitchinterval(args.switch_interval)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    results = {
        **header("bench/fleet_bench.py"),
        "hours": args.hours,
        "requests": args.requests,
        "switch_interval_s": sys.getswitchinterval(),
        "write_jobs": args.jobs,
        "raw_minutes": args.raw_minutes,
    }
    run_and_record(results, args, run_size, "pycemaker-fleet-bench-", "fleet", render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
