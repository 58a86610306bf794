"""Real history in, a model out: a NAB series imported as a one-stream service, trained up to T, backtested after T.

The commands a user runs, in subprocesses against the session's real server: ``import-csv``,
``train --once --end T --days N`` (the service configured with one stream), then ``backtest --start T``,
whose ``served`` column is the model the run promoted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from evaluation.nab import nab_path
from forecasting import registry
from tests.conftest import REPO

pytest.importorskip("torch")
pytestmark = pytest.mark.slow


def cli(settings, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MONGO_URI": settings.mongo_uri, "PYCEMAKER_DATABASE": settings.database,
           "PYCEMAKER_MODELS_DIR": str(settings.models_dir), "PYCEMAKER_STREAMS": "cpu", "PYCEMAKER_MAX_EPOCHS": "3"}
    return subprocess.run([sys.executable, "-m", "pycemaker", *args], env=env, cwd=settings.models_dir.parent,
                          capture_output=True, text=True, timeout=timeout)


def test_an_imported_series_trains_up_to_t_and_the_served_model_is_backtested_after_t(settings, tmp_path):
    path = nab_path("rds_cpu_utilization_cc0c53.csv")
    done = cli(settings, "import-csv", str(path), "--stream", "cpu_usage", "--scale", "0.01")
    assert done.returncode == 0, done.stderr[-2000:]
    times = pd.to_datetime(pd.read_csv(path)["timestamp"], utc=True)
    end = (times.iloc[0] + 0.7 * (times.iloc[-1] - times.iloc[0])).floor("5min")
    days = (end - times.iloc[0]).total_seconds() / 86400

    trained = cli(settings, "train", "--once", "--end", end.isoformat(), "--days", f"{days:.3f}", "--no-progress")
    assert trained.returncode == 0, trained.stderr[-3000:]
    card = registry.read_card(settings.models_dir, registry.current_version(settings.models_dir))
    assert card.step_minutes == 5 and card.streams == ["cpu"] and card.selection["plan"] == "full"
    assert pd.Timestamp(card.data_range["end"]) == end
    assert {c["kind"] for c in card.selection["candidates"]} == {"seasonal_naive", "ets", "lstm"}
    # The base model forecasts 1-minute steps: on 5-minute data its kinds are skipped, never failed.
    assert {f["kind"]: f["verdict"] for f in card.selection["failed"]} == {"base": "skipped", "blend": "skipped",
                                                                           "finetuned": "skipped"}

    out = tmp_path / "backtest"
    tested = cli(settings, "backtest", "--start", end.isoformat(), "--origins", "12", "--horizons", "60",
                 "--methods", "persistence,seasonal_naive,served,lstm", "--no-ttf", "--no-progress", "--out", str(out))
    assert tested.returncode == 0, tested.stderr[-3000:]
    (entry,) = json.loads((out / "backtest.json").read_text())["series"]
    assert entry["summary"]["first_origin"] >= end.isoformat() and entry["summary"]["cadence_minutes"] == 5
    rows = {(r["method"], r["channel"]): r for r in entry["metrics"] if r["horizon_minutes"] == 60}
    assert {"served", "lstm", "seasonal_naive", "persistence"} <= {m for m, _ in rows}
    served = rows[("served", "cpu")]
    assert set(served) >= {"method", "channel", "horizon_minutes", "mae", "rmse", "mase", "coverage"}
    assert served["points"] > 0 and 0 < served["mase"] < 5
