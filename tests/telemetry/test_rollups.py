"""Per-step rollups (telemetry/rollups.py): the frames they give are the raw path's, exactly."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from telemetry import rollups, simulator, store
from telemetry.catalogue import ROLLUPS_COLLECTION, STREAMS
from telemetry.frames import Cadence, load_minute_frame, raw_minute_frame, service_cadence
from telemetry.services import DEFAULT_SERVICE, service_named
from tests.conftest import with_settings
from tests.telemetry.test_collector import T0, csettings, make_collector, prom  # noqa: F401 (fixtures)

UTC = dt.timezone.utc
START = dt.datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
#: The span each test writes (writing costs seconds an hour): enough for a gap, partial ends and an hour's rebuild.
HOURS = 2
#: The coarse service's (samples every 5-6 minutes): long enough for a few dozen steps.
COARSE_HOURS = 3


def _simulate(settings, seed: int, service: str | None, *, gap: tuple[dt.datetime, dt.datetime] | None = None,
              every: int = 1, drop: str | None = None, hours: float = HOURS) -> simulator.Simulation:
    sim = simulator.simulate(START, START + dt.timedelta(hours=hours), seed, settings)
    samples = {}
    for collection, frame in sim.samples.items():
        if collection == drop:
            continue
        if gap is not None:
            frame = frame[(frame.index < gap[0]) | (frame.index >= gap[1])]
        samples[collection] = frame.iloc[::every]
    return simulator.Simulation(samples=samples, incidents=[])


def _assert_same(db, settings, start, end, cadence, service) -> pd.DataFrame:
    fast = load_minute_frame(db, start, end, settings, cadence, service)
    raw = raw_minute_frame(db, start, end, settings, cadence, service)
    pd.testing.assert_frame_equal(fast, raw, check_exact=True, check_freq=True)
    assert list(fast.dtypes.unique()) == [np.dtype("float64")]
    return fast


def _rows(db, service=DEFAULT_SERVICE) -> list[dict]:
    key = None if service.default else service.name
    return list(db[ROLLUPS_COLLECTION].find({"service": key}, {"_id": 0}).sort("time", 1))


def test_rollup_frames_equal_raw_frames_across_streams_gaps_services_and_cadences(settings, db) -> None:
    gap = (START + dt.timedelta(minutes=50), START + dt.timedelta(minutes=73, seconds=20))
    simulator.write(db, _simulate(settings, 3, None, gap=gap), settings)
    simulator.write(db, _simulate(settings, 4, "svc-b", drop="response_time"), settings, service="svc-b")
    coarse = store_coarse(db, settings)
    default, other = DEFAULT_SERVICE, service_named("svc-b")
    # Written as the samples were; the step after the last sample has grid points within its tolerance.
    assert len(_rows(db)) == HOURS * 60 + 1 and len(_rows(db, other)) == HOURS * 60 + 1

    cadence = service_cadence(db, settings, service=default)
    assert cadence == Cadence(1, 15.0)
    ranges = [
        (START, START + dt.timedelta(hours=HOURS)),
        (START + dt.timedelta(minutes=7, seconds=13), START + dt.timedelta(hours=1, minutes=41, seconds=41)),  # partial ends
        (START - dt.timedelta(minutes=30), START + dt.timedelta(minutes=20)),  # before any sample
        (START + dt.timedelta(minutes=20), START + dt.timedelta(minutes=20, seconds=30)),  # less than a step
    ]
    for start, end in ranges:
        frame = _assert_same(db, settings, start, end, cadence, default)
    whole = _assert_same(db, settings, *ranges[0], cadence, default)
    in_gap = whole.loc[gap[0] + dt.timedelta(minutes=1) : gap[1] - dt.timedelta(minutes=2)]
    assert in_gap["cpu"].isna().all() and in_gap["health"].isna().all() and (in_gap["coverage"] == 0).all()
    assert whole["health"].notna().sum() >= HOURS * 60 - 25  # every minute but the gap's (23 min 20 s)

    other_frame = _assert_same(db, settings, *ranges[1], service_cadence(db, settings, service=other), other)
    assert other_frame["response_time"].isna().all() and other_frame["cpu"].notna().all()

    coarse_cadence = service_cadence(db, settings, service=coarse)
    assert coarse_cadence.step_minutes in (5, 6)  # samples every 5-6 minutes
    frame = _assert_same(db, settings, START + dt.timedelta(minutes=3), START + dt.timedelta(hours=COARSE_HOURS), coarse_cadence, coarse)
    assert frame.index.freqstr == f"{coarse_cadence.step_minutes}min" and frame["cpu"].notna().sum() > 20
    assert {r["step"] for r in _rows(db, coarse)} == {coarse_cadence.step_minutes}

    # The rows are what is read: a changed row shows (then a rebuild puts it right).
    minute = START + dt.timedelta(minutes=30)
    db[ROLLUPS_COLLECTION].update_one({"service": None, "time": minute}, {"$set": {"cpu": 123.0}})
    assert load_minute_frame(db, START, START + dt.timedelta(hours=1), settings, cadence).loc[minute, "cpu"] == 123.0
    rollups.rebuild(db, settings, START, START + dt.timedelta(hours=1))
    _assert_same(db, settings, START, START + dt.timedelta(hours=1), cadence, default)


def store_coarse(db, settings):
    """A service scraped every 5-6 minutes (like a CloudWatch export): its rows are 5-minute steps."""
    sim = _simulate(settings, 5, "coarse", every=60, hours=COARSE_HOURS)
    service = service_named("coarse")
    for stream in STREAMS:
        store.insert_idempotent(db, stream.collection, simulator.documents(stream, sim.samples[stream.collection], settings, "coarse"))
    assert rollups.rebuild(db, settings, service=service) > 0
    return service


def test_late_samples_are_recomputed_and_the_step_still_filling_waits(settings, db) -> None:
    sim = _simulate(settings, 6, None)
    cut = START + dt.timedelta(minutes=20, seconds=30)
    early = simulator.Simulation({c: f[f.index < cut] for c, f in sim.samples.items()}, [])
    late = {c: f[(f.index >= START + dt.timedelta(minutes=10)) & (f.index < START + dt.timedelta(minutes=40))] for c, f in sim.samples.items()}
    store.ensure_indexes(db)
    for stream in STREAMS:  # only some early samples at first: minutes 10-20 miss most of theirs
        frame = early.samples[stream.collection]
        kept = frame[(frame.index < START + dt.timedelta(minutes=10)) | (frame.index >= START + dt.timedelta(minutes=19))]
        store.insert_idempotent(db, stream.collection, simulator.documents(stream, kept, settings))
    # As a collector would at cut: the minute holding it is still filling, so it has no row yet.
    assert rollups.update(db, settings, START, cut, now=cut) == 20
    rows = _rows(db)
    assert [r["time"] for r in rows] == [START + dt.timedelta(minutes=m) for m in range(20)]
    assert rows[12].get("cpu") is None and rows[12]["coverage"] == 0.0
    cadence = Cadence(1, 15.0)
    _assert_same(db, settings, START, START + dt.timedelta(minutes=25), cadence, DEFAULT_SERVICE)

    # Late samples (minutes 10-19) and new ones (up to 40): recompute their steps, twice (idempotent).
    for stream in STREAMS:
        store.insert_idempotent(db, stream.collection, simulator.documents(stream, late[stream.collection], settings))
    later = START + dt.timedelta(minutes=41)
    for _ in range(2):
        rollups.update(db, settings, START + dt.timedelta(minutes=10), START + dt.timedelta(minutes=40), now=later)
    rows = _rows(db)
    assert len(rows) == 41  # computed at 41 min: minute 40 has ended
    assert rows[12]["cpu"] == pytest.approx(late["cpu_usage"]["cpu"].loc[START + dt.timedelta(minutes=12):].iloc[:11].mean())
    frame = _assert_same(db, settings, START, later, cadence, DEFAULT_SERVICE)
    assert frame["cpu"].iloc[:40].notna().all()


def test_the_collector_keeps_the_rollups_of_its_ticks(csettings, db) -> None:  # noqa: F811
    collector = make_collector(csettings, db)
    ticks = [T0 + dt.timedelta(seconds=5 * k) for k in range(0, 3 * 12 + 2)]  # 3 minutes and two ticks
    for t in ticks:
        collector.tick(t)
    rows = _rows(db)
    # From the step before the first tick's (empty) to the last tick's.
    assert [r["time"] for r in rows] == [T0 + dt.timedelta(minutes=m) for m in range(-1, 4)]
    assert rows[0]["coverage"] == 0.0 and rows[2]["coverage"] == 1.0 and rows[4]["coverage"] > 0
    _assert_same(db, csettings, T0, T0 + dt.timedelta(minutes=3, seconds=10), Cadence(1, 15.0), DEFAULT_SERVICE)

    # A backfill of a hole recomputes its steps too.
    db_rows_before = len(rows)
    found = collector.backfill(T0 + dt.timedelta(minutes=10), T0 + dt.timedelta(minutes=12))
    assert found == 4 * 24
    times = [r["time"] for r in _rows(db)]
    assert len(times) > db_rows_before and T0 + dt.timedelta(minutes=11) in times
    _assert_same(db, csettings, T0, T0 + dt.timedelta(minutes=13), Cadence(1, 15.0), DEFAULT_SERVICE)


def test_a_collector_with_rollups_off_writes_none(csettings, db) -> None:  # noqa: F811
    collector = make_collector(with_settings(csettings, rollups=False), db)
    for k in range(14):
        collector.tick(T0 + dt.timedelta(seconds=5 * k))
    assert db[ROLLUPS_COLLECTION].count_documents({}) == 0
    assert db["cpu_usage"].count_documents({}) == 14


def _config(settings, path: Path) -> str:
    path.write_text(f'mongo_uri = "{settings.mongo_uri}"\ndatabase = "{settings.database}"\n')
    return str(path)


def test_the_rebuild_command_recomputes_rows_from_the_samples(settings, db, tmp_path, capsys) -> None:
    from pycemaker.cli import main

    off = with_settings(settings, rollups=False)
    simulator.write(db, _simulate(settings, 7, None), off)
    simulator.write(db, _simulate(settings, 8, "svc-c"), off, service="svc-c")
    assert db[ROLLUPS_COLLECTION].count_documents({}) == 0
    config = _config(settings, tmp_path / "pycemaker.toml")

    assert main(["--config", config, "rollup", "--rebuild", "--service", "svc-c",
                 "--start", (START + dt.timedelta(hours=1)).isoformat(), "--end", (START + dt.timedelta(hours=2)).isoformat()]) == 0
    assert '"rows": 60' in capsys.readouterr().out
    svc = service_named("svc-c")
    assert [r["time"] for r in _rows(db, svc)] == [START + dt.timedelta(hours=1, minutes=m) for m in range(60)]
    assert _rows(db) == []

    assert main(["--config", config, "rollup", "--rebuild"]) == 0  # every service, its whole range
    out = capsys.readouterr().out
    assert '"service": "default"' in out and '"service": "svc-c"' in out
    assert len(_rows(db)) == HOURS * 60 and len(_rows(db, svc)) == HOURS * 60  # the data range: to the last sample
    _assert_same(db, settings, START, START + dt.timedelta(hours=HOURS), Cadence(1, 15.0), svc)

    assert main(["--config", config, "rollup", "--rebuild", "--start", "2024-03-04T10:00"]) == 2  # no zone
    assert main(["--config", config, "rollup", "--rebuild", "--service", "bad name!"]) == 2


def test_reading_with_rollups_off_gives_the_same_frames(settings, db) -> None:
    simulator.write(db, _simulate(settings, 9, None), settings)
    off = with_settings(settings, rollups=False)
    start, end = START + dt.timedelta(minutes=3, seconds=7), START + dt.timedelta(hours=1, minutes=40)
    on_frame = load_minute_frame(db, start, end, settings)
    off_frame = load_minute_frame(db, start, end, off)
    pd.testing.assert_frame_equal(on_frame, off_frame, check_exact=True)
    db[ROLLUPS_COLLECTION].update_many({}, {"$set": {"cpu": -1.0}})  # off: rows are not read at all
    pd.testing.assert_frame_equal(load_minute_frame(db, start, end, off), off_frame, check_exact=True)
    assert (load_minute_frame(db, start, end, settings)["cpu"].iloc[1:-1] == -1.0).all()


def test_the_collector_stores_a_step_once_it_has_ended(csettings, db) -> None:  # noqa: F811
    from telemetry.collector import Collector
    from telemetry.prometheus import PrometheusClient

    now = {"t": T0}
    collector = Collector(csettings, PrometheusClient(csettings.prometheus_url, timeout_s=2.0), db,
                          clock=lambda: now["t"].timestamp() + 0.5, sleep=lambda s: None, db_retry_delays_s=(0.0,))
    for k in range(12, 24):  # 12:01:00 .. 12:01:55, each tick half a second after its grid point
        now["t"] = T0 + dt.timedelta(seconds=5 * k)
        collector.tick(now["t"])
    minute = T0 + dt.timedelta(minutes=1)
    assert db[ROLLUPS_COLLECTION].find_one({"time": minute}) is None
    # The minute still filling is computed from the samples.
    frame = _assert_same(db, csettings, minute, minute + dt.timedelta(minutes=1), Cadence(1, 15.0), DEFAULT_SERVICE)
    assert frame["health"].notna().all()

    now["t"] = T0 + dt.timedelta(minutes=2)
    collector.tick(now["t"])  # the first tick of the next minute closes this one
    row = db[ROLLUPS_COLLECTION].find_one({"time": minute})
    assert row["coverage"] == 1.0 and row["computed_at"] == T0 + dt.timedelta(minutes=2, seconds=0.5)
    assert db[ROLLUPS_COLLECTION].find_one({"time": T0 + dt.timedelta(minutes=2)}) is None
    _assert_same(db, csettings, T0, T0 + dt.timedelta(minutes=2, seconds=3), Cadence(1, 15.0), DEFAULT_SERVICE)


def test_a_backtest_from_the_store_reads_the_same_series_through_the_rollups(settings, db) -> None:
    from evaluation import series

    simulator.write(db, _simulate(settings, 10, None), settings)
    start, end = START + dt.timedelta(minutes=30), START + dt.timedelta(hours=1, minutes=40)
    fast = series.from_store(db, settings, start, end)
    raw = series.from_store(db, with_settings(settings, rollups=False), start, end)
    assert len(fast) == len(raw) == 1 and fast[0].multivariate and fast[0].name == raw[0].name
    pd.testing.assert_frame_equal(fast[0].frame, raw[0].frame, check_exact=True)
    assert (fast[0].channels, fast[0].season_steps, fast[0].source) == (raw[0].channels, raw[0].season_steps, raw[0].source)


def test_a_simulation_written_with_raw_since_reads_as_the_whole_one(settings, db) -> None:
    """simulator.write ``raw_since``: the rows are the whole simulation's (the first step's too: its samples are
    stored), the raw samples only those of that first step and after ``raw_since``."""
    sim = _simulate(settings, 6, None)
    simulator.write(db, sim, settings, service="whole")
    since = START + dt.timedelta(hours=HOURS) - dt.timedelta(minutes=20)
    simulator.write(db, sim, settings, service="tail", raw_since=since)
    whole, tail = service_named("whole"), service_named("tail")
    cadence = service_cadence(db, settings, service=tail)
    assert cadence == service_cadence(db, settings, service=whole)
    frames = [load_minute_frame(db, START, START + dt.timedelta(hours=HOURS, minutes=2), settings, cadence, s) for s in (whole, tail)]
    pd.testing.assert_frame_equal(*frames, check_exact=True)
    assert frames[0]["health"].notna().sum() >= HOURS * 60 - 2
    stored = [d["time_series"] for d in db["cpu_usage"].find({"service": "tail"}, {"time_series": 1}).sort("time_series", 1)]
    head_end = rollups.first_step_in_memory(sim.samples["cpu_usage"].index[0].to_pydatetime(), cadence)
    assert {t < head_end or t >= since for t in (x.replace(tzinfo=UTC) for x in stored)} == {True}
    assert 0 < sum(t.replace(tzinfo=UTC) < head_end for t in stored) <= 24  # the first step's samples (2 minutes at most)
    assert len(stored) < len(sim.samples["cpu_usage"]) / 4
    with pytest.raises(ValueError, match="rollups"):
        simulator.write(db, sim, with_settings(settings, rollups=False), service="x", raw_since=since)
