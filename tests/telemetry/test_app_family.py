"""The randomized app family: reproducible profiles, the seed's app unchanged, incidents that show, subsets, cadences."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pytest

from telemetry import simulator
from telemetry.app_family import (
    HELD_OUT_SEEDS,
    INCIDENT_KINDS,
    AppProfile,
    IncidentSpec,
    app_settings,
    held_out_profiles,
    in_held_out_corner,
    is_held_out,
    pretraining_profiles,
    sample_profile,
    seed_profile,
)
from telemetry.catalogue import ROLLUPS_COLLECTION, STREAM_NAMES, STREAMS_BY_NAME
from telemetry.commands import format_family
from telemetry.settings import Settings
from telemetry.traffic import TRAFFIC_SHAPES

UTC = dt.timezone.utc
START = dt.datetime(2026, 5, 4, tzinfo=UTC)
S = Settings()
#: A quiet app with no incidents of its own: each test adds the one it looks at.
QUIET = AppProfile(seed=0, traffic="flat", base_level=0.1, load_factor=0.3, incidents=())


def test_a_profile_is_a_pure_function_of_its_seed():
    assert sample_profile(123) == sample_profile(123)
    assert sample_profile(123) != sample_profile(124)
    profile = sample_profile(77)
    assert AppProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile


def test_the_family_spans_its_documented_ranges():
    profiles = [sample_profile(s) for s in range(300)]
    assert {p.traffic for p in profiles} == set(TRAFFIC_SHAPES)
    assert {i.kind for p in profiles for i in p.incidents} == set(INCIDENT_KINDS)
    subsets = {p.streams for p in profiles}
    assert STREAM_NAMES in subsets
    assert tuple(n for n in STREAM_NAMES if n != "memory") in subsets
    assert tuple(n for n in STREAM_NAMES if n != "response_time") in subsets
    assert any(len(s) == 1 for s in subsets)
    assert {p.scrape_interval_s for p in profiles} == {5.0, 10.0, 15.0, 30.0, 60.0}
    for p in profiles:
        assert 0.25 <= p.capacity_scale <= 4.0 and 0.02 <= p.load_factor <= 0.6 and 0.5 <= p.noise <= 3.0
        for i in p.incidents:
            assert 0.3 <= i.per_day <= 3.0 and 0 < i.minutes[0] <= i.minutes[1]


def test_the_seed_profile_is_todays_simulation():
    end = START + dt.timedelta(hours=6)
    today = simulator.simulate(START, end, seed=3, settings=S)
    member = simulator.simulate(START, end, seed=3, settings=S, profile=seed_profile())
    assert set(member.samples) == set(today.samples)
    for collection, frame in today.samples.items():
        assert frame.equals(member.samples[collection])
    assert member.incidents == today.incidents


def test_the_seed_app_still_gives_the_figures_it_gave_before_the_family():
    """Fingerprint of 5 h from the simulator as it was before profiles (seed 11, an odd start second)."""
    start = dt.datetime(2026, 5, 4, 7, 13, 22, tzinfo=UTC)
    sim = simulator.simulate(start, start + dt.timedelta(hours=5), seed=11, settings=S)
    expected = {
        "cpu_usage": (3277, {"cpu": 1939.9841248935513}),
        "jvm_memory_usage": (3275, {"memory": 625.5630937372568}),
        "request_count": (3273, {"req_success": 331070.5620401602, "req_fail": 8948.648853829201}),
        "response_time": (3274, {"response_time": 7443.43925350937}),
    }
    for collection, (rows, sums) in expected.items():
        frame = sim.samples[collection]
        assert len(frame) == rows
        for column, total in sums.items():
            assert float(frame[column].sum()) == pytest.approx(total, rel=1e-12)


def one_incident(kind: str, minutes: tuple[float, float], strength: float, **changes) -> simulator.Simulation:
    profile = dataclasses.replace(QUIET, incidents=(IncidentSpec(kind, 3.0, minutes, strength),), **changes)
    return simulator.simulate(START, START + dt.timedelta(days=1), seed=4, settings=S, profile=profile)


def window_mean(sim, collection: str, column: str, a: dt.datetime, b: dt.datetime) -> float:
    frame = sim.samples[collection]
    return float(frame.loc[(frame.index >= a) & (frame.index < b), column].mean())


def hour_before(incident) -> tuple[dt.datetime, dt.datetime]:
    return incident.start - dt.timedelta(minutes=25), incident.start - dt.timedelta(minutes=5)


def test_a_memory_leak_fills_the_heap_then_the_app_restarts():
    sim = one_incident("memory_leak", (30, 40), 1.0)
    leaks = [i for i in sim.incidents if i.type == "memory_leak"]
    assert len(leaks) == 3
    for leak in leaks:
        before = window_mean(sim, "jvm_memory_usage", "memory", *hour_before(leak))
        last = window_mean(sim, "jvm_memory_usage", "memory", leak.end - dt.timedelta(minutes=8), leak.end - dt.timedelta(minutes=3))
        assert last > before + 0.4
        assert leak.failure_time is not None and leak.start <= leak.failure_time <= leak.end


def test_cpu_saturation_takes_the_cpu():
    sim = one_incident("cpu_saturation", (20, 30), 0.5)
    for episode in sim.incidents:
        before = window_mean(sim, "cpu_usage", "cpu", *hour_before(episode))
        during = window_mean(sim, "cpu_usage", "cpu", episode.start + dt.timedelta(minutes=2), episode.end)
        assert during > before + 0.3


def test_a_slow_dependency_raises_response_time():
    sim = one_incident("slow_dependency", (30, 40), 1.5)
    for episode in sim.incidents:
        before = window_mean(sim, "response_time", "response_time", *hour_before(episode))
        late = window_mean(sim, "response_time", "response_time", episode.end - dt.timedelta(minutes=15), episode.end)
        assert late > before + 1.2


def test_an_error_storm_fails_requests():
    sim = one_incident("error_storm", (20, 30), 0.4)
    for storm in sim.incidents:
        a, b = storm.start + dt.timedelta(minutes=1), storm.end
        share = window_mean(sim, "request_count", "req_fail", a, b) / (
            window_mean(sim, "request_count", "req_fail", a, b) + window_mean(sim, "request_count", "req_success", a, b)
        )
        before = window_mean(sim, "request_count", "req_fail", *hour_before(storm))
        assert share == pytest.approx(0.4, abs=0.05) and before < 0.01


def test_a_collector_gap_silences_every_stream_without_a_failure():
    sim = one_incident("collector_outage", (10, 20), 0.0)
    for gap in sim.incidents:
        assert gap.failure_time is None
        for frame in sim.samples.values():
            assert not ((frame.index >= gap.start + dt.timedelta(seconds=10)) & (frame.index < gap.end)).any()


@pytest.mark.parametrize("streams", [("cpu", "requests", "response_time"), ("memory",)])
def test_a_stream_subset_writes_only_its_collections(db, streams):
    profile = dataclasses.replace(QUIET, streams=streams, incidents=(IncidentSpec("memory_leak", 2.0, (30, 40), 2.0),))
    settings = app_settings(S, profile)
    sim = simulator.simulate(START, START + dt.timedelta(hours=12), seed=2, settings=S, profile=profile)
    wanted = {STREAMS_BY_NAME[n].collection for n in streams}
    assert set(sim.samples) == wanted
    simulator.write(db, sim, settings)
    holding = {c for c in db.list_collection_names() if db[c].count_documents({})}  # indexes exist for every stream
    assert holding == wanted | {"incidents", ROLLUPS_COLLECTION}  # and the frame rows (telemetry/rollups.py)
    assert db["incidents"].count_documents({}) == len(sim.incidents) > 0


@pytest.mark.parametrize("interval", [5.0, 30.0, 60.0])
def test_the_scrape_interval_is_honoured(interval):
    profile = dataclasses.replace(QUIET, scrape_interval_s=interval)
    sim = simulator.simulate(START, START + dt.timedelta(hours=6), seed=1, settings=S, profile=profile)
    for frame in sim.samples.values():
        gaps = np.diff(frame.index.asi8) / 1e9
        assert gaps.min() >= interval * 5 / 6 - 0.01 and gaps.max() <= interval + 0.01
        assert np.median(gaps) == pytest.approx(interval * 11 / 12, rel=0.05)


def test_app_settings_describe_the_service():
    profile = dataclasses.replace(QUIET, streams=("cpu", "requests"), scrape_interval_s=30.0, capacity_scale=2.0)
    settings = app_settings(S, profile)
    assert settings.streams == ("cpu", "requests") and settings.scrape_interval_s == 30.0
    assert settings.request_rate_cuts == (30.0, 60.0, 120.0)
    assert S.streams == STREAM_NAMES  # the original is untouched


@pytest.mark.parametrize("shape", TRAFFIC_SHAPES)
def test_every_traffic_shape_gives_a_day_with_ground_truth(shape):
    profile = dataclasses.replace(sample_profile(5), traffic=shape)
    a = simulator.simulate(START, START + dt.timedelta(days=1), seed=6, settings=S, profile=profile)
    b = simulator.simulate(START, START + dt.timedelta(days=1), seed=6, settings=S, profile=profile)
    rates = a.samples["request_count"]["req_success"]
    assert rates.std() > 0 and rates.min() >= 0
    assert a.incidents == b.incidents and all(a.samples[c].equals(b.samples[c]) for c in a.samples)


def test_diurnal_traffic_peaks_at_its_hour_and_rests_at_weekends():
    profile = dataclasses.replace(QUIET, traffic="diurnal", peak_hour=15.0, base_level=0.1, weekend_level=0.4, load_factor=0.05)
    monday = dt.datetime(2026, 5, 4, tzinfo=UTC)
    sim = simulator.simulate(monday, monday + dt.timedelta(days=7), seed=2, settings=S, profile=profile)
    rate = sim.samples["request_count"]["req_success"].resample("1h").mean()
    assert rate.groupby(rate.index.hour).mean().idxmax() in (14, 15, 16)
    weekday = rate[rate.index.dayofweek < 5].mean()
    weekend = rate[rate.index.dayofweek >= 5].mean()
    assert weekend < 0.6 * weekday


def test_held_out_apps_are_never_pretrained_on():
    corner = dataclasses.replace(QUIET, traffic="diurnal", incidents=(IncidentSpec("slow_dependency", 1.0, (10, 20), 1.0),))
    assert in_held_out_corner(corner) and is_held_out(corner)
    assert not in_held_out_corner(dataclasses.replace(corner, traffic="flat"))
    assert is_held_out(sample_profile(min(HELD_OUT_SEEDS)))
    train = list(pretraining_profiles(60))
    assert len(train) == 60 and not any(is_held_out(p) for p in train)
    unseen = held_out_profiles(6)
    assert len(unseen) == 6 and all(is_held_out(p) for p in unseen)
    assert any(in_held_out_corner(p) for p in unseen) and any(p.seed in HELD_OUT_SEEDS for p in unseen)


def test_list_family_prints_profiles_as_json():
    rows = json.loads(format_family(3, first_seed=10))
    assert [r["seed"] for r in rows] == [10, 11, 12]
    assert AppProfile.from_dict(rows[0]) == sample_profile(10)
    assert all(isinstance(r["held_out"], bool) for r in rows)


def test_simulate_command_writes_a_sampled_app(settings, db, tmp_path):
    from pycemaker.cli import main

    config = tmp_path / "pycemaker.toml"
    config.write_text(f'mongo_uri = "{settings.mongo_uri}"\ndatabase = "{settings.database}"\n')
    profile = sample_profile(0)
    assert main(["--config", str(config), "simulate", "--days", "0.1", "--profile-seed", "0", "--no-progress"]) == 0
    wanted = {STREAMS_BY_NAME[n].collection for n in profile.streams}
    assert {c for c in db.list_collection_names() if db[c].count_documents({})} - {"incidents", ROLLUPS_COLLECTION} == wanted
    times = [d["time_series"] for d in db[next(iter(wanted))].find({}, {"time_series": 1}).sort("time_series", 1)]
    gaps = np.diff([t.timestamp() for t in times])
    assert np.median(gaps) == pytest.approx(profile.scrape_interval_s * 11 / 12, rel=0.1)
