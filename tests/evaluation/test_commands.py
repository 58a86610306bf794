"""``pycemaker backtest``: parsing, and a small run that writes its markdown, JSON and plots."""

import json

import pytest

from evaluation.commands import run_backtest
from pycemaker.cli import build_parser
from telemetry import simulator
from telemetry.settings import SettingsError


def parse(*argv):
    return build_parser().parse_args(["backtest", *argv])


def test_backtest_on_a_simulated_range(fixture_settings, tmp_path, capsys):
    args = parse("--simulate-seed", "5", "--days", "2", "--origins", "20", "--methods", "persistence,seasonal_naive,lstm",
                 "--out", str(tmp_path), "--no-progress")
    assert run_backtest(args, fixture_settings) == 0
    out = capsys.readouterr().out
    assert "### health" in out and "| 60 min | LSTM (ONNX) |" in out and "### time to failure" in out
    payload = json.loads((tmp_path / "backtest.json").read_text())
    entry = payload["series"][0]
    assert entry["summary"]["origins"] == 20 and entry["summary"]["methods"] == ["persistence", "seasonal_naive", "lstm"]
    assert {t["method"] for t in entry["ttf"]} == {"lstm", "seasonal_naive"}
    assert len(list(tmp_path.glob("*.png"))) == 2


@pytest.mark.slow
def test_backtest_reads_the_store(db, settings, tmp_path, capsys):
    import datetime as dt

    start = dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(days=1, hours=4)
    # Raw samples for the last hour, rollups before (what the backtest reads): writing 28 h of raw samples costs 15 s.
    simulator.write(db, simulator.simulate(start, end, 8, settings), settings, raw_since=end - dt.timedelta(hours=1))
    args = parse("--origins", "20", "--methods", "persistence,seasonal_naive", "--out", str(tmp_path), "--no-progress")
    assert run_backtest(args, settings) == 0
    assert "all four streams, per minute" in capsys.readouterr().out


def test_bad_arguments_are_clear(fixture_settings, tmp_path):
    with pytest.raises(SettingsError, match="unknown method"):
        run_backtest(parse("--simulate-seed", "5", "--methods", "prophet", "--out", str(tmp_path)), fixture_settings)
    with pytest.raises(SettingsError, match="needs a zone"):
        run_backtest(parse("--start", "2026-06-01T00:00"), fixture_settings)


def test_evaluation_never_imports_torch(tmp_path):
    """The LSTM is run through onnxruntime: evaluation works where only a model registry is present."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.evaluation.conftest import FIXTURE_MODELS

    code = (
        "import sys, datetime as dt, dataclasses\n"
        "from pathlib import Path\n"
        "from telemetry.settings import Settings\n"
        "from evaluation import backtest, commands, forecasters, pipeline, report, series, ttf\n"
        f"s = dataclasses.replace(Settings(), models_dir=Path({str(FIXTURE_MODELS)!r}))\n"
        "start = dt.datetime(2026, 7, 6, tzinfo=dt.timezone.utc)\n"
        "data = series.from_simulation(3, start, start + dt.timedelta(days=1, hours=6), s)\n"
        "methods = forecasters.build_methods(('seasonal_naive', 'lstm', 'autoets'), s)\n"
        "backtest.run_backtest(data, methods, origins=2, horizon_minutes=60, progress=False)\n"
        "ttf.score_method(methods[1], data, start_row=1440)\n"
        "assert 'torch' not in sys.modules and 'lightning' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=300)
