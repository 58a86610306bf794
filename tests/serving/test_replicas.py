"""Two API processes splitting the fleet (serving/replicas.py): each computes its share, both serve every service,
and when one dies the other takes its services over."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import uuid

import pytest
import requests

from serving.replicas import REPLICAS, STATUSES, owner
from telemetry import simulator
from telemetry.settings import Settings
from telemetry.store import connect
from tests.conftest import REPO
from tests.reliability.processes import start_serve, wait_for
from tests.serving.onnx_models import declining_model

UTC = dt.timezone.utc
COUNT = 8
HEARTBEAT_S, TIMEOUT_S = 0.5, 3.0


@pytest.fixture
def split_fleet(mongo_uri, tmp_path):
    """``COUNT`` services with the last 40 minutes of samples (the model's L is 30; and ten past now), a declining model,
    the env of a replica."""
    settings = Settings(mongo_uri=mongo_uri, database=f"replicas_{uuid.uuid4().hex[:8]}", models_dir=tmp_path / "models")
    declining_model(settings.models_dir, rate=0.01, L=30, H=60)
    db = connect(settings, autostart=False)
    now = dt.datetime.now(UTC)
    names = []
    for index in range(1, COUNT + 1):
        name, seed, scale = simulator.fleet_service(7, index, COUNT)
        sim = simulator.simulate(now - dt.timedelta(minutes=40), now + dt.timedelta(minutes=10), seed, settings, capacity_scale=scale)
        simulator.write(db, sim, settings, service=name)
        names.append(name)
    env = {**os.environ, "MONGO_URI": mongo_uri, "PYCEMAKER_DATABASE": settings.database,
           "PYCEMAKER_MODELS_DIR": str(settings.models_dir), "PYTHONPATH": str(REPO), "PYCEMAKER_REPLICA_SPLIT": "true",
           "PYCEMAKER_REPLICA_HEARTBEAT_S": str(HEARTBEAT_S), "PYCEMAKER_REPLICA_TIMEOUT_S": str(TIMEOUT_S)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        yield db, names, env, tmp_path
    finally:  # not dropped: the name is unique and the server's data dies with the session (dropping costs seconds)
        db.client.close()


def _serve(env: dict, cwd) -> tuple[subprocess.Popen, str]:
    return start_serve(env, cwd, workers=1, threads=2, new_session=True)


def _until(check, timeout_s: float, what: str):
    return wait_for(check, timeout_s, what, every=0.3)


def _live(db) -> list[str]:
    return sorted(doc["_id"] for doc in db[REPLICAS].find({"expires": {"$gt": dt.datetime.now(UTC)}}))


def _live_count(db, count: int) -> list[str] | None:
    ids = _live(db)
    return ids if len(ids) == count else None


def _fleet(base: str) -> dict[str, str]:
    try:
        body = requests.get(base + "/api/v1/fleet", timeout=5).json()
    except (requests.RequestException, ValueError):
        return {}
    return {entry["service"]: entry["state"] for entry in body["services"]}


def test_two_replicas_split_the_fleet_and_one_takes_over_when_the_other_dies(split_fleet):
    db, names, env, cwd = split_fleet
    (a, base_a), (b, base_b) = _serve(env, cwd), _serve(env, cwd)
    try:
        live = _until(lambda: _live_count(db, 2), 90, "two replicas registered")

        def split_done():
            stored = {doc["_id"]: doc["computed_by"] for doc in db[STATUSES].find({}, {"computed_by": 1})}
            return stored if all(stored.get(name) == owner(name, live) for name in names) else None

        stored = _until(split_done, 90, "every service stored by its owner")
        assert set(stored.values()) == set(live)  # both computed: each its rendezvous share, no service twice
        assert all(len([n for n in names if stored[n] == replica]) < COUNT for replica in live)

        def same_answers():
            fleet_a, fleet_b = _fleet(base_a), _fleet(base_b)
            every = sorted(fleet_a) == sorted(fleet_b) == sorted(names)
            known = every and all(state != "unknown" for state in fleet_a.values())
            return (fleet_a, fleet_b) if known and fleet_a == fleet_b else None

        fleet_a, _ = _until(same_answers, 30, "both replicas list every service with the same states")
        # One service's own status from the replica that does not own it is the owner's stored document.
        name = next(n for n in names if stored[n] != live[0])
        for base in (base_a, base_b):
            status = requests.get(f"{base}/api/v1/services/{name}/status", timeout=5).json()
            assert status["state"] == fleet_a[name]

        # Kill A outright (no deregistration): its heartbeat expires and B takes every service over.
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(30)
        survivor = _until(lambda: _live_count(db, 1), TIMEOUT_S + 30, "A's heartbeat expired")[0]
        assert survivor in live

        def taken_over():
            stored = {doc["_id"]: doc["computed_by"] for doc in db[STATUSES].find({}, {"computed_by": 1})}
            return all(stored.get(n) == survivor for n in names)

        _until(taken_over, 60, "the survivor computes every service")
        assert sorted(_until(lambda: _fleet(base_b), 10, "B answers")) == sorted(names)
    finally:
        for process in (a, b):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


def test_rendezvous_ownership_moves_only_the_services_of_a_replica_that_leaves():
    services = [f"svc-{i:03d}" for i in range(300)]
    three = ["r-a", "r-b", "r-c"]
    before = {name: owner(name, three) for name in services}
    counts = {replica: list(before.values()).count(replica) for replica in three}
    assert all(60 <= count <= 140 for count in counts.values()), counts  # about a third each
    after = {name: owner(name, ["r-a", "r-c"]) for name in services}
    moved = [name for name in services if before[name] != after[name]]
    assert moved and all(before[name] == "r-b" for name in moved)  # only r-b's services move
    assert sorted(moved) == sorted(name for name in services if before[name] == "r-b")
    assert owner("svc-001", reversed(three)) == before["svc-001"]  # the order of the live set does not matter
    assert owner("svc-001", []) is None
