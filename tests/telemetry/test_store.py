import datetime as dt
import time

import pytest

from telemetry import store
from telemetry.catalogue import CPU, MEMORY, REQUESTS, RESPONSE_TIME, to_document
from telemetry.settings import Settings, mask_uri
from tests.ports import free_port

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _docs(stream, n, cuts, **values):
    return [to_document(stream, T0 + dt.timedelta(seconds=5 * i), values, cuts) for i in range(n)]


def test_schema_round_trip(db, settings):
    store.ensure_indexes(db)
    store.insert_idempotent(db, CPU.collection, _docs(CPU, 3, settings.cpu_cuts, cpu=0.4))
    store.insert_idempotent(
        db, REQUESTS.collection, _docs(REQUESTS, 3, settings.request_rate_cuts, req_success=40.0, req_fail=2.5)
    )
    raw = db[CPU.collection].find_one({}, {"_id": 0})
    assert raw["value"] == 0.4 and raw["consume_percent"] == "40.0%" and raw["criticity"] == "medium"
    assert raw["time_series"] == T0 and raw["origin_time_series"] == int(T0.timestamp() * 1000)

    samples = store.read_samples(db, T0, T0 + dt.timedelta(minutes=1))
    assert list(samples) == [CPU.collection, MEMORY.collection, REQUESTS.collection, RESPONSE_TIME.collection]
    assert samples[CPU.collection]["cpu"].tolist() == [0.4, 0.4, 0.4]
    assert samples[REQUESTS.collection][["req_success", "req_fail"]].iloc[0].tolist() == [40.0, 2.5]
    assert samples[MEMORY.collection].empty
    assert str(samples[CPU.collection].index.tz) == "UTC"


def test_writes_are_idempotent(db, settings):
    store.ensure_indexes(db)
    docs = _docs(CPU, 10, settings.cpu_cuts, cpu=0.1)
    first = store.insert_idempotent(db, CPU.collection, docs)
    retry = store.insert_idempotent(db, CPU.collection, docs[5:] + _docs(CPU, 12, settings.cpu_cuts, cpu=0.1)[10:])
    assert (first.inserted, first.duplicates) == (10, 0)
    assert (retry.inserted, retry.duplicates) == (2, 5)
    assert db[CPU.collection].count_documents({}) == 12


def test_naive_datetimes_in_the_database_read_as_utc(db):
    # Another tool wrote a naive datetime: BSON dates are UTC, so it reads back as UTC.
    naive = dt.datetime(2026, 3, 1, 12, 0, 5)
    db[CPU.collection].insert_one({"time_series": naive, "value": 0.3})
    frame = store.read_stream(db, CPU, T0, T0 + dt.timedelta(minutes=1))
    assert frame.index[0].to_pydatetime() == naive.replace(tzinfo=UTC)
    latest = store.newest_sample_times(db)[CPU.collection]
    assert latest.tzinfo is not None and latest == naive.replace(tzinfo=UTC)


def test_reads_refuse_naive_bounds(db):
    with pytest.raises(ValueError, match="timezone-aware"):
        store.read_stream(db, CPU, dt.datetime(2026, 1, 1), T0)


def test_missing_values_read_as_nan_and_order_is_fixed(db):
    db[RESPONSE_TIME.collection].insert_many(
        [
            {"time_series": T0 + dt.timedelta(seconds=10), "value": 0.2},
            {"time_series": T0, "value": None},
        ]
    )
    frame = store.read_stream(db, RESPONSE_TIME, T0, T0 + dt.timedelta(minutes=1))
    assert frame.index.is_monotonic_increasing
    assert frame["response_time"].isna().tolist() == [True, False]


def test_data_range_and_incidents(db):
    assert store.data_range(db) is None
    db[CPU.collection].insert_many([{"time_series": T0, "value": 0.1}, {"time_series": T0 + dt.timedelta(hours=1), "value": 0.1}])
    assert store.data_range(db) == (T0, T0 + dt.timedelta(hours=1))


def test_unreachable_database_fails_fast_with_the_host_never_the_password():
    port = free_port()
    settings = Settings(mongo_uri=f"mongodb://admin:hunter2@127.0.0.1:{port}/", mongo_timeout_ms=300)
    began = time.monotonic()
    with pytest.raises(store.DatabaseUnavailable) as err:
        store.connect(settings)
    assert time.monotonic() - began < 5
    assert f"127.0.0.1:{port}" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_mask_uri():
    assert mask_uri("mongodb://u:p%40ss@h1:1,h2:2/db?x=1") == "mongodb://u:***@h1:1,h2:2/db?x=1"
    assert mask_uri("mongodb://h:1/") == "mongodb://h:1/"
