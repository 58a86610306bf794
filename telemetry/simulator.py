"""A faithful simulator of the original test bed (see docs/simulator.md).

Load: the original Locust ``LoadTestShape``, repeating every hour on the wall clock:
12 stages of 300 s with target users 10, 50, 100, 200, 400, 800, 1000, 800, 400, 200,
100, 10 and a spawn rate of 1 user/s (so ramps lag their targets). Each user sends a
request and waits 0.5 s.

The app: a closed queueing system. The request rate r solves
``r = users / (think + rt(r))`` with ``rt(r) = service / (1 - r / capacity)``, so
response time rises steeply as the rate nears capacity. CPU follows utilisation,
JVM memory is a GC sawtooth, and requests start failing (5xx) once saturated.

Incidents with ground truth (written to the ``incidents`` collection):
``memory_leak`` (memory climbs, GC thrashes, the JVM crashes and restarts: a short gap),
``cpu_saturation`` (a runaway job halves capacity) and ``collector_outage`` (a gap in
every stream, no failure). Each stream is sampled independently every 5-6 s.

That is the seed's app; ``profile=`` simulates another member of the app family
(:mod:`telemetry.app_family`: capacity, traffic shape, noise, GC, incidents, also
``slow_dependency`` and ``error_storm``, streams and scrape interval).
Everything is a pure function of (interval, seed, profile).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from pymongo.errors import BulkWriteError, PyMongoError

from telemetry import frames, rollups, store, traffic
from telemetry.app_family import AppProfile, app_settings, seed_profile
from telemetry.catalogue import CRITICITY_LABELS, INCIDENTS_COLLECTION, STREAMS, Stream, flag_of
from telemetry.frames import cadence_for
from telemetry.health import floor_minute, minute_health
from telemetry.services import service_named
from telemetry.settings import Settings
from telemetry.traffic import SPAWN_RATE, STAGE_SECONDS, STAGE_USERS, users_profile  # noqa: F401 (the seed's load shape)

log = logging.getLogger(__name__)
UTC = dt.timezone.utc

THINK_TIME = 0.5  # s between a user's response and its next request
SERVICE_TIME = 0.05  # s, response time of an idle app
CAPACITY = 130.0  # req/s the app can serve
SAMPLE_PERIOD = (5.0, 6.0)  # s between two samples of one stream (the seed's; a profile's: 5/6 to 1 scrape interval)
HEAP_FULL = 1.0  # share of the heap: a live set this large cannot be collected, the JVM runs out of memory and crashes
THRASH_FROM = 0.85  # live set (share of the heap) from which GC thrashes: each collection frees less, so they run more


@dataclass(frozen=True)
class Incident:
    type: str
    start: dt.datetime
    #: First minute at or below the failure threshold caused by the incident (None: no failure).
    failure_time: dt.datetime | None
    end: dt.datetime

    def document(self, service: str | None = None) -> dict:
        """The ``incidents`` document, with ``service`` when it is a named service's (None: the default service's)."""
        return asdict(self) | ({"service": service} if service is not None else {})


@dataclass
class Simulation:
    #: Samples per collection: UTC DatetimeIndex, columns as in the catalogue.
    samples: dict[str, pd.DataFrame]
    incidents: list[Incident]


def solve_rate(
    users: np.ndarray, capacity: np.ndarray, service_time: float = SERVICE_TIME, extra_rt: np.ndarray | float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Request rate and response time of the closed system, by bisection (vectorised).

    ``extra_rt``: seconds every response waits on top of the app's own (a slow dependency).
    """
    lo = np.zeros_like(users)
    hi = capacity * (1 - 1e-6)
    for _ in range(40):
        mid = (lo + hi) / 2
        rt = service_time / (1 - mid / capacity) + extra_rt
        too_fast = mid * (THINK_TIME + rt) > users
        hi = np.where(too_fast, mid, hi)
        lo = np.where(too_fast, lo, mid)
    rate = (lo + hi) / 2
    return rate, service_time / (1 - rate / capacity) + extra_rt


def _in_calm_phase(t: dt.datetime) -> bool:
    """Minutes of the hour where load is low (stages 10/50 users): incidents there are unscheduled failures."""
    return t.minute >= 52 or t.minute < 8


def plan_incidents(
    start: dt.datetime, end: dt.datetime, rng: np.random.Generator, profile: AppProfile | None = None
) -> list[dict]:
    """Incident windows (before their failure times are measured): the profile's, by default the seed's
    ~2 leaks, 2 CPU episodes, 1 outage a day. A leak's crash lands in a calm phase of Locust traffic."""
    profile = profile or seed_profile()
    days = (end - start).total_seconds() / 86400
    planned: list[dict] = []
    busy: list[tuple[dt.datetime, dt.datetime]] = []

    def place(kind: str, duration_s: float, gap_s: float, calm_at: float | None) -> None:
        for _ in range(200):
            t0 = start + dt.timedelta(seconds=float(rng.uniform(3600, max(3601, (end - start).total_seconds() - duration_s - gap_s))))
            t0 = t0.replace(microsecond=0)
            t1 = t0 + dt.timedelta(seconds=duration_s)
            if calm_at is not None and not _in_calm_phase(t0 + dt.timedelta(seconds=calm_at)):
                continue
            window = (t0 - dt.timedelta(minutes=30), t1 + dt.timedelta(seconds=gap_s) + dt.timedelta(minutes=30))
            if t1 + dt.timedelta(seconds=gap_s) >= end or any(a < window[1] and window[0] < b for a, b in busy):
                continue
            busy.append(window)
            planned.append({
                "type": kind, "start": t0, "crash": t1, "restart": t1 + dt.timedelta(seconds=gap_s), "strength": strength,
            })
            return

    for spec in profile.incidents:
        for _ in range(int(round(spec.per_day * days))):
            duration = float(rng.uniform(*spec.minutes)) * 60
            kind, strength = spec.kind, spec.strength
            if kind == "memory_leak":
                place(kind, duration, float(rng.uniform(60, 180)), calm_at=duration if profile.traffic == "locust" else None)
            else:
                place(kind, duration, 0.0, calm_at=None)
    return sorted(planned, key=lambda p: p["start"])


def simulate(
    start: dt.datetime, end: dt.datetime, seed: int, settings: Settings, profile: AppProfile | None = None,
    capacity_scale: float = 1.0,
) -> Simulation:
    """Samples of the app's streams and the incidents over ``[start, end)``; deterministic per seed.

    ``profile``: the app (default: the seed's, all four streams, health scored with ``settings``
    as given; otherwise with :func:`telemetry.app_family.app_settings`). ``capacity_scale``: the app
    serves ``capacity_scale`` x its profile's capacity for the same users (a fleet's services differ,
    :func:`fleet_service`). An incident's failure time is the first minute that fails with the incident
    but not in the same run without it (the hourly peak fails on its own; that is not the incident).
    """
    if profile is not None:
        settings = app_settings(settings, profile)
    profile = profile or seed_profile()
    tolerance = cadence_for(None, settings).tolerance_s if settings.scrape_interval_s else None
    samples, planned = _sample(start, end, seed, with_incidents=True, profile=profile, capacity_scale=capacity_scale)
    baseline, _ = _sample(start, end, seed, with_incidents=False, profile=profile, capacity_scale=capacity_scale)
    health = minute_health(samples, start, end, settings, tolerance_s=tolerance)["health"]
    without = minute_health(baseline, start, end, settings, tolerance_s=tolerance)["health"]
    healthy_without = without > settings.failure_threshold
    caused = health[(health <= settings.failure_threshold) & healthy_without]
    incidents = [_incident(p, caused) for p in planned]
    return Simulation(samples=samples, incidents=incidents)


def _sample(
    start: dt.datetime, end: dt.datetime, seed: int, with_incidents: bool, profile: AppProfile, capacity_scale: float = 1.0
) -> tuple[dict[str, pd.DataFrame], list[dict]]:
    start = start.astimezone(UTC).replace(microsecond=0)
    end = end.astimezone(UTC)
    rng = np.random.default_rng(seed)
    n = int((end - start).total_seconds())
    t0 = int(start.timestamp())
    secs = t0 + np.arange(n)

    scale = profile.user_scale
    shape_rng = None if profile.traffic == "locust" else np.random.default_rng([seed, 1])  # the main stream stays the seed's
    users = scale * traffic.users_at(
        profile.traffic, secs, shape_rng, base_level=profile.base_level, peak_hour=profile.peak_hour,
        weekend_level=profile.weekend_level, bursts_per_hour=profile.bursts_per_hour, wander=profile.wander,
    )
    full_capacity = CAPACITY * profile.capacity_scale * capacity_scale
    capacity = np.full(n, full_capacity)
    cpu_extra = np.zeros(n)
    leak = np.zeros(n)
    extra_rt = np.zeros(n)  # a slow dependency's wait
    storm = np.zeros(n)  # share of requests an error storm fails
    down = np.zeros(n, dtype=bool)  # app down: Prometheus scrapes nothing
    outage = np.zeros(n, dtype=bool)  # collector down: nothing reaches the database

    load = np.clip(users / (1000.0 * scale), 0, 1)
    planned = plan_incidents(start, end, rng, profile)
    for p in planned if with_incidents else []:
        a = int((p["start"] - start).total_seconds())
        b = int((p["crash"] - start).total_seconds())
        c = int((p["restart"] - start).total_seconds())
        if p["type"] == "memory_leak":  # the leaked live set fills the heap at the crash (an OutOfMemoryError)
            headroom = HEAP_FULL - profile.memory_base - 0.06 * load[b - 1]
            leak[a:b] = headroom * np.linspace(0.0, 1.0, b - a) ** p["strength"]  # the seed's 2: slow, then accelerating
            down[b:c] = True
        elif p["type"] == "cpu_saturation":
            cpu_extra[a:b] += p["strength"]
            capacity[a:b] *= 1 - p["strength"] / 0.9
        elif p["type"] == "slow_dependency":
            extra_rt[a:b] += p["strength"] * np.minimum(np.linspace(0.0, 3.0, b - a), 1.0)
        elif p["type"] == "error_storm":
            storm[a:b] = p["strength"]
        else:
            outage[a:b] = True

    served = np.minimum(users / (THINK_TIME + profile.service_time), full_capacity) / profile.capacity_scale
    heap_growth = profile.gc_rate * (0.0004 + 0.00002 * served)
    sawtooth = np.mod(np.cumsum(heap_growth), profile.gc_amplitude)
    live = profile.memory_base + 0.06 * load + leak  # what survives a collection (the sawtooth's trough)
    memory = live + sawtooth
    thrash = np.clip((live - THRASH_FROM) / (HEAP_FULL - THRASH_FROM), 0, 1)  # GC thrashing near a full heap
    capacity *= 1 - 0.7 * thrash
    rate, rt = solve_rate(users * (1 + storm), capacity, profile.service_time, extra_rt)  # failed requests are retried
    rho = rate / capacity
    cpu = 0.05 + 0.65 * rho + 0.10 * np.clip((users / scale - 300) / 700, 0, 1) + cpu_extra + 0.8 * thrash
    fail_share = np.minimum(0.08 * np.clip((rt - 1.0) / 6.0, 0, 1) + 0.3 * thrash + storm, 1.0)
    truth = {
        "cpu": np.clip(cpu, 0, 1),
        "memory": np.clip(memory, 0, 1),
        "req_success": rate * (1 - fail_share),
        "req_fail": rate * fail_share,
        "response_time": rt,
    }

    samples: dict[str, pd.DataFrame] = {}
    period = (profile.scrape_interval_s * 5 / 6, profile.scrape_interval_s)
    for stream in (s for s in STREAMS if s.name in profile.streams):
        offsets = rng.uniform(0, period[1]) + np.cumsum(rng.uniform(*period, size=int(n / period[0]) + 2))
        offsets = offsets[offsets < n]
        idx = offsets.astype(int)
        keep = ~(down[idx] | outage[idx])
        offsets, idx = offsets[keep], idx[keep]
        values = {col: _measure(col, truth[col][idx], rng, profile.noise) for col in stream.columns}
        times = pd.to_datetime((t0 + offsets) * 1e3, unit="ms", utc=True).round("ms")
        samples[stream.collection] = pd.DataFrame(values, index=pd.DatetimeIndex(times, name="time"))
    return samples, planned


def _measure(column: str, value: np.ndarray, rng: np.random.Generator, noise: float = 1.0) -> np.ndarray:
    """What a scrape reads: the true value plus measurement noise (``noise`` x the seed's)."""
    if column in ("cpu", "memory"):
        sd = 0.02 if column == "cpu" else 0.005
        return np.clip(value + rng.normal(0, sd * noise, len(value)), 0, 1)
    if column == "response_time":
        return value * rng.lognormal(0, 0.1 * noise, len(value))
    return np.maximum(value * (1 + rng.normal(0, 0.05 * noise, len(value))), 0)


def _incident(planned: dict, caused: pd.Series) -> Incident:
    """Ground truth for one planned incident, given the minutes that failed because of incidents."""
    start, crash, restart = planned["start"], planned["crash"], planned["restart"]
    failure: dt.datetime | None = None
    if planned["type"] != "collector_outage":
        window = caused[(caused.index >= floor_minute(start)) & (caused.index <= crash)]
        failure = max(window.index[0].to_pydatetime(), start) if len(window) else None
    if planned["type"] == "memory_leak" and failure is None:
        failure = crash  # the crash itself is a failure
    return Incident(type=planned["type"], start=start, failure_time=failure, end=restart)


def documents(stream: Stream, frame: pd.DataFrame, settings: Settings, service: str | None = None) -> list[dict]:
    """The samples as documents in the original shape (vectorised criticity), with a ``service`` field if given."""
    cuts = settings.cuts()[stream.flag]
    total = frame[list(stream.columns)].sum(axis=1).to_numpy()
    labels = np.asarray(CRITICITY_LABELS)[flag_of(total, cuts).astype(int)]
    times = frame.index.to_pydatetime()
    origin = (frame.index.asi8 // 1_000_000).tolist()
    columns = {field: frame[col].to_numpy().tolist() for field, col in stream.fields.items()}
    docs = []
    for i, t in enumerate(times):
        doc = {"time_series": t, "origin_time_series": origin[i]}
        for field in stream.fields:
            doc[field] = columns[field][i]
        if stream.has_percent:
            doc["consume_percent"] = f"{100.0 * columns['value'][i]:.1f}%"
        doc["criticity"] = str(labels[i])
        if service is not None:
            doc["service"] = service
        docs.append(doc)
    return docs


def write(
    db, simulation: Simulation, settings: Settings, batch: int = 5000, progress: Callable[[int], None] | None = None,
    service: str | None = None, raw_since: dt.datetime | None = None,
) -> int:
    """Write a simulation (idempotently), as ``service``'s (None: the default service's, no ``service`` field);
    returns the number of new sample documents.

    ``raw_since``: the samples before it are kept only as per-step rollups (needs ``settings.rollups``), as in a
    store whose raw samples expired: frames, statuses and training read the same rows, and a long history
    is written in a fraction of the time (benchmarks and tests that need hours of history, not its raw samples)."""
    if raw_since is not None and not settings.rollups:
        raise ValueError("raw_since needs rollups: without them the older samples would be lost")
    store.ensure_indexes(db)
    present = [s for s in STREAMS if s.collection in simulation.samples]  # a service may lack some streams
    spans = [simulation.samples[s.collection].index for s in present if len(simulation.samples[s.collection])]
    first = min(t[0] for t in spans).to_pydatetime() if spans else None
    who = service_named(service, settings.default_service)
    inserted = total = 0
    cadence = None

    def insert(keep: Callable[[pd.DatetimeIndex], np.ndarray] | None = None) -> None:
        nonlocal inserted, total
        for stream in present:
            frame = simulation.samples[stream.collection]
            docs = documents(stream, frame[keep(frame.index)] if keep is not None else frame, settings, service)
            total += len(docs)
            for i in range(0, len(docs), batch):
                chunk = docs[i : i + batch]
                inserted += store.insert_idempotent(db, stream.collection, chunk).inserted
                if progress:
                    progress(len(chunk))

    if raw_since is None:
        insert()
    else:  # the tail, then the head the rollups' first step reads back from the store (at the tail's cadence)
        insert(lambda index: index >= raw_since)
        if first is not None:
            cadence = frames.service_cadence(db, settings, service=who)
            head_end = rollups.first_step_in_memory(first, cadence)
            insert(lambda index: index < min(head_end, raw_since))
    incidents = [inc.document(service) for inc in simulation.incidents]
    store.insert_idempotent(db, INCIDENTS_COLLECTION, incidents)
    if settings.rollups:
        cadence = cadence or frames.service_cadence(db, settings, service=who)
        if inserted == total:  # every sample is new: the rows come from the simulation, not read back
            rollups.write_samples(db, settings, simulation.samples, cadence, who)
        elif first is not None:
            last = max(t[-1] for t in spans).to_pydatetime()
            rollups.update(db, settings, max(first, raw_since) if raw_since else first, last, cadence, who)
    return inserted


def backfill(
    db, days: float, settings: Settings, seed: int, end: dt.datetime | None = None, show_progress: bool = True,
    profile: AppProfile | None = None, service: str | None = None, capacity_scale: float = 1.0,
) -> Simulation:
    """Simulate the ``days`` before ``end`` (default: now) of ``profile``'s app (default: the seed's) and write them
    (as ``service``'s, if given; ``capacity_scale`` as in :func:`simulate`)."""
    from tqdm import tqdm

    end = (end or dt.datetime.now(UTC)).replace(microsecond=0)
    start = end - dt.timedelta(days=days)
    began = time.perf_counter()
    sim = simulate(start, end, seed, settings, profile, capacity_scale)
    total = sum(len(f) for f in sim.samples.values())
    log.info("simulated %d samples and %d incidents in %.1f s", total, len(sim.incidents), time.perf_counter() - began)
    with tqdm(total=total, unit="doc", desc=f"writing {service}" if service else "writing", disable=not show_progress) as bar:
        write(db, sim, app_settings(settings, profile) if profile else settings, progress=bar.update, service=service)
    return sim


def fleet_service(seed: int, index: int, count: int) -> tuple[str, int, float]:
    """The ``index``-th (1-based) of ``count`` simulated services: its name (``svc-01``), seed and capacity scale.

    Each service is its own app: its own incidents (seed) and capacity (0.75-1.4 x :data:`CAPACITY`).
    """
    name = f"svc-{index:0{max(2, len(str(count)))}d}"
    scale = float(np.random.default_rng([seed, index]).uniform(0.75, 1.4))
    return name, seed + 1000 * index, round(scale, 3)


@dataclass(frozen=True)
class LiveService:
    """One service :func:`run_live` appends samples for: its name (None: the default service), seed, app and capacity."""

    service: str | None
    seed: int
    profile: AppProfile | None = None
    capacity_scale: float = 1.0


def run_live(
    db,
    settings: Settings,
    seed: int,
    interval_s: float = 5.0,
    stop: Callable[[], bool] = lambda: False,
    *,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    profile: AppProfile | None = None,
    services: Sequence[LiveService] = (),
    start: dt.datetime | None = None,
) -> None:
    """Append samples in real time, a day's simulation at a time, until ``stop()``.

    ``services``: the services to append for (default: the default service, ``seed`` and ``profile``'s app).
    Every tick writes one batch per stream for all of them, then each one's ended rollup steps.
    ``start``: the first sample time (default: now), e.g. a backfill's end, so that no gap is left between the
    two: the first tick writes every sample due since then.

    A database outage never ends the loop: the due samples stay due (``written_until`` only
    advances after every stream's write succeeded) and are written on the first tick after the
    database answers again. Writes are idempotent (unique ``time_series`` index, created before
    the first write), so a window retried after a partial write is never duplicated.
    """
    members = tuple(services) or (LiveService(None, seed, profile),)
    apps = [app_settings(settings, m.profile) if m.profile else settings for m in members]  # what criticity labels follow
    written_until = start or clock()
    indexed = False
    cadences: dict[AppProfile | None, frames.Cadence] = {}
    down_since: dt.datetime | None = None
    day = 0
    while not stop():
        chunk_start = written_until
        chunk_end = chunk_start + dt.timedelta(days=1)
        sims = [simulate(chunk_start, chunk_end, m.seed + day, settings, m.profile, m.capacity_scale) for m in members]
        incidents_written = False
        while written_until < chunk_end and not stop():
            now = min(clock(), chunk_end)
            try:
                if not indexed:
                    store.ensure_indexes(db)
                    indexed = True
                if not incidents_written:
                    store.insert_idempotent(db, INCIDENTS_COLLECTION,
                                            [i.document(m.service) for m, sim in zip(members, sims) for i in sim.incidents])
                    incidents_written = True
                for stream in STREAMS:
                    docs = [doc for m, app, sim in zip(members, apps, sims) if stream.collection in sim.samples
                            for doc in documents(stream, _due(sim.samples[stream.collection], written_until, now), app, m.service)]
                    if docs:
                        store.insert_idempotent(db, stream.collection, docs)
                if now > written_until:
                    _update_rollups(db, members, apps, cadences, written_until, now, clock())
            except BulkWriteError:
                raise  # not an outage: the server refuses these documents, and always would
            except (store.DatabaseUnavailable, PyMongoError) as exc:
                if down_since is None:
                    down_since = written_until
                    reason = exc if isinstance(exc, store.DatabaseUnavailable) else store.unavailable(db, exc)
                    log.warning("live simulator: %s; samples from %s wait until it answers", reason, written_until.isoformat())
            else:
                if down_since is not None:
                    log.info("live simulator: database back; wrote the samples due since %s", down_since.isoformat())
                    down_since = None
                written_until = now
            sleep(interval_s)
        day += 1


def _update_rollups(
    db, members: Sequence[LiveService], apps: Sequence[Settings], cadences: dict, written_until: dt.datetime,
    now: dt.datetime, as_of: dt.datetime,
) -> None:
    """The rollup rows of every member's steps ended by a tick that wrote ``[written_until, now)``: one pass
    (:func:`telemetry.rollups.update_services`) per app among them (members of one app share its cadence)."""
    for profile in dict.fromkeys(m.profile for m in members):
        group = [(m, app) for m, app in zip(members, apps) if m.profile == profile and app.rollups]
        if not group:
            continue
        app = group[0][1]
        if profile not in cadences:
            cadences[profile] = frames.service_cadence(db, app, service=service_named(group[0][0].service, app.default_service))
        cadence = cadences[profile]
        # From a step before: the first write of a step also closes the one before it.
        first = written_until - dt.timedelta(minutes=cadence.step_minutes)
        spans = [rollups.Span(service_named(m.service, app.default_service), first, now, as_of) for m, _ in group]
        rollups.update_services(db, app, spans, cadence)


def _due(frame: pd.DataFrame, since: dt.datetime, until: dt.datetime) -> pd.DataFrame:
    return frame[(frame.index >= since) & (frame.index < until)]
