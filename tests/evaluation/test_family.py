"""Unseen family profiles (evaluation/family.py): the next day's scores, on known numbers and on one real run."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from evaluation import family
from telemetry.app_family import held_out_profiles
from telemetry.settings import Settings


def test_a_perfect_forecast_has_mase_zero_and_seasonal_naive_is_the_unit():
    times = pd.date_range("2026-06-01", periods=600, freq="1min", tz="UTC")
    health = 0.9 + 0.05 * np.sin(np.arange(600) / 30.0)
    frame = pd.DataFrame({"health": health}, index=times)
    for name in ("cpu", "memory", "req_success", "req_fail", "response_time"):
        frame[name] = 1.0
    origins = np.arange(200, 500)
    perfect = np.stack([health[o : o + 60] for o in origins])[:, :, None].repeat(3, axis=2)
    shifted = np.stack([health[o - 60 : o] for o in origins])
    scores = family.score_day(perfect, shifted, frame, origins, [], (0.1, 0.5, 0.9), Settings())
    assert scores["mase_60"] == pytest.approx(0.0, abs=1e-9) and scores["seasonal_naive_mae_60"] > 0
    assert scores["windows"] == 300 and scores["false_alarms"] == 0 and scores["episodes"] == 0
    same = family.score_day(shifted[:, :, None].repeat(3, axis=2), shifted, frame, origins, [], (0.1, 0.5, 0.9), Settings())
    assert same["mase_60"] == pytest.approx(1.0)


def test_a_rising_memory_floor_warns_as_the_status_does_and_not_when_the_rule_is_off():
    """Flat healthy health, memory rising 0.005 of the heap a minute from 0.3: the floor's trend reaches 0.95 after
    130 minutes; every origin whose line reaches it within the horizon warns, and MASE is the health forecast's alone."""
    times = pd.date_range("2026-06-01", periods=400, freq="1min", tz="UTC")
    frame = pd.DataFrame({"health": 0.9, "memory": 0.3 + 0.005 * np.arange(400.0)}, index=times)
    for name in ("cpu", "req_success", "req_fail", "response_time"):
        frame[name] = 0.1
    origins = np.arange(100, 300)
    steps = family.memory_exhaustion_steps(frame, origins, Settings(), 60)
    # From origin o the floor (rows before o, their lowest over 10 minutes) is 0.3 + 0.005 * (o - 10), at 0.005/min:
    # it reaches 0.95 ceil((0.95 - 0.3) / 0.005 - (o - 10)) = 140 - o steps ahead, past the 60-step horizon until o = 81.
    assert list(steps[:5]) == [40, 39, 38, 37, 36]
    assert steps[40] == 1 and (steps[40:] == 1).all()
    assert (family.memory_exhaustion_steps(frame, origins, dataclasses.replace(Settings(), memory_exhaustion=None), 60) == 60).all()
    flat = np.full((len(origins), 60, 3), 0.9)
    quiet = family.score_day(flat, None, frame, origins, [], (0.1, 0.5, 0.9), Settings())
    warned = family.score_day(flat, None, frame, origins, [], (0.1, 0.5, 0.9), Settings(), steps)
    assert quiet["false_alarms"] == 0 and warned["false_alarms"] >= 1  # no failure follows: a false alarm


@pytest.mark.slow
def test_one_unseen_app_with_a_day_of_history_scores_every_kind_the_run_fitted(tmp_path):
    pytest.importorskip("torch")
    from training.fit import FitConfig
    from training.pipeline import train_frame

    def train(frame, settings):
        return train_frame(frame, dataclasses.replace(settings, candidate_kinds=("seasonal_naive", "ets", "base", "lstm")),
                           FitConfig(max_epochs=1))

    profile = held_out_profiles(1)[0]
    row = family.evaluate_app(profile, 1.0, Settings(), train, run_seed=3)
    methods = row["methods"]
    assert methods["lstm"] is None and methods["finetuned"] is None  # one day: no LSTM split
    assert "lstm" in row["run"]["skipped"]
    assert methods["seasonal_naive"]["mase_60"] == pytest.approx(1.0)
    for name in ("base", "ets", "served"):
        assert np.isfinite(methods[name]["mase_60"]) and methods[name]["windows"] == 1440
    assert row["run"]["promoted_kind"] in ("seasonal_naive", "ets", "base")
    held_back = row["run"]["held_back"]  # what the run judged on, beside the next day
    assert set(held_back) == {"seasonal_naive", "ets", "base"}
    for scores in held_back.values():
        assert scores["held_back"] and scores["windows"] > 0 and 0 < scores["health_mae"] <= scores["health_rmse"]
    summary = family.summarise([row])
    assert summary["1"]["base"]["median_mase_60"] == pytest.approx(methods["base"]["mase_60"])
    json.dumps(summary)


def test_the_family_page_is_what_its_json_renders():
    """docs/evaluation-family.md holds exactly what `pycemaker evaluate-family --render-only` writes from the JSON."""
    import json

    from evaluation import family_document
    from tests.conftest import REPO

    result = json.loads((REPO / "bench/results/family_eval.json").read_text())
    page = (REPO / "docs/evaluation-family.md").read_text()
    assert page == family_document.render(result, "../bench/results/family_eval.json")
    served_one_day = result["summary"]["1"]["served"]["median_mase_60"]
    assert f"| served 60-min MASE <= 0.8 x seasonal naive's, 1 day of history | {served_one_day:.3f} |" in page


def test_the_goal_counts_new_failure_incidents_not_every_episode():
    """Two failure episodes in the day: a dip with no incident (the app's own peak) and a leak's failure. Both are
    episodes; only the leak is a new-failure incident, warned here by a perfect forecast."""
    times = pd.date_range("2026-06-01", periods=600, freq="1min", tz="UTC")
    health = np.full(600, 0.9)
    health[200:205] = 0.1  # no incident
    health[400:420] = 0.1  # the leak's failure
    frame = pd.DataFrame({"health": health}, index=times)
    for name in ("cpu", "memory", "req_success", "req_fail", "response_time"):
        frame[name] = 1.0
    origins = np.arange(130, 540)
    perfect = np.stack([np.concatenate([health[o : o + 60], np.full(max(0, o + 60 - 600), 0.9)])[:60] for o in origins])
    leak = {"type": "memory_leak", "start": times[340].to_pydatetime(), "failure_time": times[400].to_pydatetime(),
            "end": times[420].to_pydatetime()}
    scores = family.score_day(perfect[:, :, None].repeat(3, axis=2), None, frame, origins, [leak], (0.1, 0.5, 0.9), Settings())
    assert scores["episodes"] == 2 and scores["warned"] == 2
    assert (scores["new_failure_incidents"], scores["new_failure_warned"]) == (1, 1)
    assert (scores["predictable_incidents"], scores["predictable_warned"]) == (1, 1)
    row = {"history_days": 1.0, "methods": {m: (scores if m == "base" else None) for m in family.METHODS}}
    pooled = family.summarise([row])["1"]["base"]
    assert (pooled["new_failure_incidents"], pooled["new_failure_warned"]) == (1, 1)
