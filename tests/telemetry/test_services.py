"""Services in the store: a ``service`` field per sample, the default service for samples without one."""

import datetime as dt

import pytest

from telemetry import simulator, store
from telemetry.catalogue import CPU, INCIDENTS_COLLECTION, MEMORY, to_document
from telemetry.services import DEFAULT_SERVICE, Service, service_named, valid_name
from telemetry.settings import SettingsError, load_settings

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _docs(stream, n, cuts, service=None, offset_s=0, **values):
    docs = [to_document(stream, T0 + dt.timedelta(seconds=5 * i + offset_s), values, cuts) for i in range(n)]
    return [d | {"service": service} for d in docs] if service else docs


def test_reads_are_per_service_and_the_default_service_owns_samples_without_one(db, settings):
    store.ensure_indexes(db)
    store.insert_idempotent(db, CPU.collection, _docs(CPU, 6, settings.cpu_cuts, cpu=0.1))  # the seed's shape: no field
    store.insert_idempotent(db, CPU.collection, _docs(CPU, 2, settings.cpu_cuts, "default", offset_s=2, cpu=0.2))
    store.insert_idempotent(db, CPU.collection, _docs(CPU, 4, settings.cpu_cuts, "web", cpu=0.7))  # same times: no clash
    end = T0 + dt.timedelta(minutes=1)

    default = store.read_stream(db, CPU, T0, end)
    assert default["cpu"].tolist() == [0.1, 0.2, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1]  # both spellings, in time order
    web = store.read_stream(db, CPU, T0, end, service_named("web"))
    assert web["cpu"].tolist() == [0.7] * 4
    assert store.read_stream(db, CPU, T0, end, service_named("nobody")).empty

    assert store.newest_sample_time(db, CPU, before=end) == T0 + dt.timedelta(seconds=25)
    assert store.newest_sample_time(db, CPU, before=end, service=service_named("web")) == T0 + dt.timedelta(seconds=15)
    assert store.data_range(db, service=service_named("web")) == (T0, T0 + dt.timedelta(seconds=15))
    assert store.recent_spacing_s(db, [CPU], service=service_named("web")) == 5.0


def test_another_default_name_owns_samples_without_a_field_and_its_own_name(db, settings):
    store.ensure_indexes(db)
    store.insert_idempotent(db, CPU.collection, _docs(CPU, 2, settings.cpu_cuts, cpu=0.1))
    store.insert_idempotent(db, CPU.collection, _docs(CPU, 1, settings.cpu_cuts, "shop", offset_s=60, cpu=0.3))
    shop = service_named("shop", default_name="shop")
    assert shop == Service("shop", True)
    frame = store.read_stream(db, CPU, T0, T0 + dt.timedelta(minutes=5), shop)
    assert frame["cpu"].tolist() == [0.1, 0.1, 0.3]
    services = store.list_services(db, [CPU], default_name="shop")
    assert list(services) == ["shop"] and services["shop"][CPU.collection].samples == 3


def test_list_services_gives_each_service_its_streams_and_range_within_the_bounds(db, settings):
    store.ensure_indexes(db)
    store.insert_idempotent(db, CPU.collection, _docs(CPU, 12, settings.cpu_cuts, cpu=0.1))
    store.insert_idempotent(db, CPU.collection, _docs(CPU, 3, settings.cpu_cuts, "b-svc", cpu=0.5))
    store.insert_idempotent(db, MEMORY.collection, _docs(MEMORY, 5, settings.memory_cuts, "b-svc", memory=0.5))
    store.insert_idempotent(db, MEMORY.collection, _docs(MEMORY, 2, settings.memory_cuts, "a-svc", memory=0.5))

    services = store.list_services(db, [CPU, MEMORY])
    assert list(services) == ["a-svc", "b-svc", "default"]
    assert set(services["a-svc"]) == {MEMORY.collection}
    assert services["b-svc"][CPU.collection] == store.StreamRange(T0, T0 + dt.timedelta(seconds=10), 3)
    assert services["b-svc"][MEMORY.collection].last == T0 + dt.timedelta(seconds=20)
    assert services["default"][CPU.collection] == store.StreamRange(T0, T0 + dt.timedelta(seconds=55), 12)

    since = store.list_services(db, [CPU, MEMORY], since=T0 + dt.timedelta(seconds=15))
    assert list(since) == ["b-svc", "default"]  # a-svc has nothing that recent
    assert since["default"][CPU.collection] == store.StreamRange(T0 + dt.timedelta(seconds=15), T0 + dt.timedelta(seconds=55), 9)
    assert list(store.list_services(db, [CPU, MEMORY], limit=2)) == ["a-svc", "b-svc"]


def test_indexes_of_a_single_service_database_are_replaced(db, settings):
    db[CPU.collection].create_index([("time_series", 1)], unique=True, name="time_series_unique")
    db[INCIDENTS_COLLECTION].create_index([("start", 1)], unique=True, name="start_unique")
    store.insert_idempotent(db, CPU.collection, _docs(CPU, 2, settings.cpu_cuts, cpu=0.1))
    store.ensure_indexes(db)
    store.ensure_indexes(db)  # idempotent
    indexes = db[CPU.collection].index_information()
    assert "time_series_unique" not in indexes
    assert indexes["service_time_series_unique"]["key"] == [("service", 1), ("time_series", 1)]
    assert indexes["service_time_series_unique"]["unique"] is True
    assert "start_unique" not in db[INCIDENTS_COLLECTION].index_information()
    # Still idempotent for the default service (no field), and per service.
    again = store.insert_idempotent(db, CPU.collection, _docs(CPU, 2, settings.cpu_cuts, cpu=0.1))
    other = store.insert_idempotent(db, CPU.collection, _docs(CPU, 2, settings.cpu_cuts, "web", cpu=0.1))
    assert (again.inserted, again.duplicates, other.inserted) == (0, 2, 2)


def test_service_names():
    assert all(valid_name(n) for n in ("svc-01", "a", "A.b_c-9", "x" * 63))
    assert not any(valid_name(n) for n in ("", "-a", ".a", "a b", "a/b", "x" * 64, "ä"))
    with pytest.raises(ValueError, match="not a valid service name"):
        service_named("../etc")
    assert service_named(None) == DEFAULT_SERVICE and service_named("default") == DEFAULT_SERVICE
    assert service_named("web").filters() == [{"service": "web"}]


def test_default_service_setting(monkeypatch):
    monkeypatch.setenv("PYCEMAKER_DEFAULT_SERVICE", "shop")
    assert load_settings().default_service == "shop"
    monkeypatch.setenv("PYCEMAKER_DEFAULT_SERVICE", "no good")
    with pytest.raises(SettingsError, match="default_service"):
        load_settings()


def test_simulated_services_differ_and_write_their_name(db, settings):
    names = [simulator.fleet_service(42, i, 3) for i in (1, 2, 3)]
    assert [n for n, _, _ in names] == ["svc-01", "svc-02", "svc-03"]
    assert len({seed for _, seed, _ in names}) == 3 and len({scale for _, _, scale in names}) == 3
    assert all(0.75 <= scale <= 1.4 for _, _, scale in names)
    assert simulator.fleet_service(42, 7, 120)[0] == "svc-007"

    end = T0 + dt.timedelta(hours=1)
    for name, seed, scale in names[:2]:
        sim = simulator.simulate(T0, end, seed, settings, capacity_scale=scale)
        simulator.write(db, sim, settings, service=name)
    assert db[CPU.collection].count_documents({"service": {"$exists": False}}) == 0
    one = store.read_stream(db, CPU, T0, end, service_named("svc-01"))
    two = store.read_stream(db, CPU, T0, end, service_named("svc-02"))
    assert len(one) > 500 and len(two) > 500 and not one.index.equals(two.index)
    assert store.read_stream(db, CPU, T0, end).empty  # nothing for the default service
    assert set(store.list_services(db)) == {"svc-01", "svc-02"}


def test_simulate_command_writes_k_services(db, settings, tmp_path):
    from pycemaker.cli import main

    config = tmp_path / "pycemaker.toml"
    config.write_text(f'mongo_uri = "{settings.mongo_uri}"\ndatabase = "{settings.database}"\n')
    assert main(["--config", str(config), "simulate", "--days", "0.03", "--services", "3", "--no-progress"]) == 0
    services = store.list_services(db)
    assert list(services) == ["svc-01", "svc-02", "svc-03"]
    assert all(set(streams) == {s.collection for s in simulator.STREAMS} for streams in services.values())
    assert main(["--config", str(config), "simulate", "--days", "0", "--services", "0"]) == 2
