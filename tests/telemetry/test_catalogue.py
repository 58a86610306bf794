import datetime as dt

import numpy as np
import pandas as pd
import pytest

from telemetry.catalogue import CPU, REQUESTS, RESPONSE_TIME, criticity, flag_of, to_document
from telemetry.settings import Settings

S = Settings()
UTC = dt.timezone.utc


@pytest.mark.parametrize(
    "value, label",
    [(0.0, "low"), (0.25, "low"), (0.2501, "medium"), (0.5, "medium"), (0.75, "high"), (0.7501, "critical"), (1.0, "critical")],
)
def test_utilisation_criticity_edges(value, label):
    assert criticity(value, S.cpu_cuts) == label
    assert criticity(value, S.memory_cuts) == label


@pytest.mark.parametrize("value, label", [(15, "low"), (15.01, "medium"), (30, "medium"), (60, "high"), (60.5, "critical")])
def test_request_rate_criticity_edges(value, label):
    assert criticity(value, S.request_rate_cuts) == label


@pytest.mark.parametrize("value, label", [(0.3, "low"), (0.6, "medium"), (1.0, "high"), (1.0001, "critical")])
def test_response_time_criticity_edges(value, label):
    assert criticity(value, S.response_time_cuts) == label


def test_every_value_gets_exactly_one_flag_and_nan_stays_unknown():
    values = np.array([0.0, 0.25, 0.26, 0.5, 0.51, 0.75, 0.76, np.nan])
    assert flag_of(values, S.cpu_cuts)[:-1].tolist() == [0, 0, 1, 1, 2, 2, 3]
    assert np.isnan(flag_of(values, S.cpu_cuts)[-1])


def test_documents_have_the_original_shape():
    t = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    cpu = to_document(CPU, t, {"cpu": 0.123}, S.cpu_cuts)
    assert cpu == {
        "time_series": t,
        "origin_time_series": int(t.timestamp() * 1000),
        "value": 0.123,
        "consume_percent": "12.3%",
        "criticity": "low",
    }
    req = to_document(REQUESTS, t, {"req_success": 20.0, "req_fail": 12.0}, S.request_rate_cuts)
    assert req["value_success"] == 20.0 and req["value_fail"] == 12.0
    assert req["criticity"] == "high"  # 32 req/s in total
    assert "consume_percent" not in req
    rt = to_document(RESPONSE_TIME, t, {"response_time": 1.5}, S.response_time_cuts)
    assert rt["criticity"] == "critical"


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        to_document(CPU, dt.datetime(2026, 1, 1), {"cpu": 0.1}, S.cpu_cuts)


def test_the_request_rate_counts_a_missing_fail_rate_as_none_and_is_missing_only_without_both():
    nan = float("nan")
    assert REQUESTS.flag_input({"req_success": 20.0, "req_fail": 3.0}) == 23.0
    assert REQUESTS.flag_input({"req_success": 20.0, "req_fail": nan}) == 20.0  # a history of successes only
    assert np.isnan(REQUESTS.flag_input({"req_success": nan, "req_fail": nan}))
    series = REQUESTS.flag_input({"req_success": pd.Series([1.0, nan, nan]), "req_fail": pd.Series([2.0, 4.0, nan])})
    assert isinstance(series, pd.Series)
    np.testing.assert_array_equal(series.to_numpy(), [3.0, 4.0, nan])
