"""``pycemaker import-csv`` on a real NAB file, into a real embedded server."""

import argparse
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from evaluation import backtest, forecasters, series
from telemetry import store
from telemetry.commands import run_import_csv
from telemetry.importer import CsvImportError, import_csv, parse_scale
from evaluation.nab import nab_path

UTC = dt.timezone.utc
EC2 = nab_path("ec2_cpu_utilization_5f5533.csv")
ELB = nab_path("elb_request_count_8c0756.csv")


def test_import_is_complete_utc_in_the_original_shape_and_idempotent(db, settings):
    raw = pd.read_csv(EC2)
    result = import_csv(db, EC2, "cpu_usage", settings, scale=0.01)
    assert result.rows == result.inserted == len(raw) and result.skipped == 0
    assert db["cpu_usage"].count_documents({}) == len(raw)

    first = db["cpu_usage"].find_one({}, {"_id": 0}, sort=[("time_series", 1)])
    assert set(first) == {"time_series", "origin_time_series", "value", "consume_percent", "criticity"}
    # the naive timestamp is UTC: the same wall-clock time, zone UTC, and the epoch milliseconds agree
    stamp = pd.Timestamp(raw["timestamp"].iloc[0]).to_pydatetime().replace(tzinfo=UTC)
    assert first["time_series"] == stamp and first["time_series"].utcoffset() == dt.timedelta(0)
    assert first["origin_time_series"] == int(stamp.timestamp() * 1000)
    assert first["value"] == pytest.approx(raw["value"].iloc[0] / 100)
    assert first["consume_percent"] == f"{raw['value'].iloc[0]:.1f}%"
    assert first["criticity"] in ("low", "medium", "high", "critical")

    again = import_csv(db, EC2, "cpu_usage", settings, scale=0.01)
    assert again.inserted == 0 and again.duplicates == len(raw)
    assert db["cpu_usage"].count_documents({}) == len(raw)


def test_request_count_is_the_success_rate_and_fail_is_absent(db, settings):
    import_csv(db, ELB, "request_count", settings, scale=parse_scale("1/300"))
    doc = db["request_count"].find_one({}, {"_id": 0}, sort=[("time_series", 1)])
    assert "value_fail" not in doc
    assert doc["value_success"] == pytest.approx(pd.read_csv(ELB)["value"].iloc[0] / 300)
    frame = store.read_stream(db, store.STREAMS[2], dt.datetime(2014, 1, 1, tzinfo=UTC), dt.datetime(2015, 1, 1, tzinfo=UTC))
    assert frame["req_fail"].isna().all() and frame["req_success"].notna().all()


def test_bad_input_is_a_clear_error(db, settings, tmp_path):
    with pytest.raises(CsvImportError, match="unknown stream 'cpu'.*cpu_usage"):
        import_csv(db, EC2, "cpu", settings)
    bad = tmp_path / "bad.csv"
    bad.write_text("time,val\n2014-01-01 00:00:00,1\n")
    with pytest.raises(CsvImportError, match="'timestamp' and 'value'"):
        import_csv(db, bad, "cpu_usage", settings)
    with pytest.raises(CsvImportError, match="no such file"):
        import_csv(db, tmp_path / "missing.csv", "cpu_usage", settings)
    with pytest.raises(CsvImportError, match="positive"):
        parse_scale("-1")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("timestamp,value\n2014-01-01 00:00:00,1\nnot a time,2\n2014-01-01 00:05:00,x\n2014-01-01T01:10:00+01:00,3\n")
    result = import_csv(db, mixed, "response_time", settings)
    assert (result.rows, result.skipped) == (2, 2)
    times = [d["time_series"] for d in db["response_time"].find({}, {"time_series": 1}).sort("time_series", 1)]
    assert times[1] == dt.datetime(2014, 1, 1, 0, 10, tzinfo=UTC)  # an explicit zone is converted


def test_cli_handler(db, settings, capsys):
    args = argparse.Namespace(file=str(EC2), stream="cpu_usage", scale="0.01")
    assert run_import_csv(args, settings) == 0
    assert "4032 rows, 4032 new" in capsys.readouterr().out
    assert run_import_csv(argparse.Namespace(file=str(EC2), stream="nope", scale="1"), settings) == 2


def test_the_backtest_runs_on_the_imported_stream(db, settings):
    """One stream at 5-min cadence: a service frame of that stream (health from it alone), a daily reference season;
    with no registry model the registry columns are left out; the fitted model beats persistence."""
    import_csv(db, EC2, "cpu_usage", settings, scale=0.01)
    found = series.from_store(db, settings)
    assert len(found) == 1
    s = found[0]
    assert (s.channels, s.cadence_minutes, s.season_steps, s.multivariate) == (("cpu", "health"), 5, 288, False)
    methods = forecasters.build_methods(("persistence", "seasonal_naive", "autoets", "lstm"), settings)
    result = backtest.run_backtest(s, methods, origins=20, horizon_minutes=180, progress=False)
    assert result.methods == ["persistence", "seasonal_naive", "autoets"]  # no model in this test's registry
    assert len(result.origins) == 20 and result.origins[0] >= 2 * 288
    rows = result.metric_rows((60,))
    assert all(np.isfinite(r["mase"]) for r in rows)
    assert backtest.relative(rows, "autoets", "persistence", "cpu", 60, "mase") < 1.0
