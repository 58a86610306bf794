"""`pycemaker models list|activate` (rollback) and the CLI's promise not to import torch for them."""

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

from forecasting import registry
from telemetry.settings import Settings
from training import commands

REPO = Path(__file__).resolve().parents[2]
V1 = REPO / "tests" / "fixtures" / "models" / "v1"


def test_the_training_commands_module_does_not_import_torch():
    code = (
        "import sys, argparse; import training.commands as c; p = argparse.ArgumentParser(); c.register(p.add_subparsers());"
        "a = p.parse_args(['train', '--once', '--quick', '--days', '2']); assert a.quick and a.days == 2.0;"
        "assert 'torch' not in sys.modules and 'lightning' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def registry_with_three_versions(tmp_path: Path) -> Settings:
    settings = Settings(models_dir=tmp_path / "models")
    source = registry.read_card(V1, registry.current_version(V1))
    model = registry.model_path(V1, source.version)
    for i, status in enumerate(["promoted", "promoted", "rejected"]):
        card = dataclasses.replace(source, version=f"2026010{i + 1}T000000Z-ab", created_at=f"2026-01-0{i + 1}T00:00:00+00:00")
        registry.add_version(settings.models_dir, model, card)
        if status == "promoted":
            registry.activate(settings.models_dir, card.version, reason="beat seasonal naive")
        else:
            registry.reject(settings.models_dir, card.version, "not below seasonal naive")
    return settings


def test_models_list_groups_versions_by_run_and_marks_the_current_one(tmp_path, capsys):
    settings = registry_with_three_versions(tmp_path)
    assert commands.run_models_list(argparse.Namespace(), settings) == 0
    lines = capsys.readouterr().out.splitlines()
    # Cards from before runs were recorded (registry format 1, no selection): one "run" each, an LSTM each.
    assert [line.split()[1] for line in lines if line.startswith("run ")] == [
        "20260101T000000Z-ab", "20260102T000000Z-ab", "20260103T000000Z-ab"]
    rows = {next(word for word in line.split() if word.startswith("2026")): line for line in lines if not line.startswith("run ")}
    assert rows["20260102T000000Z-ab"].startswith("  *") and "promoted" in rows["20260102T000000Z-ab"]
    assert "lstm" in rows["20260102T000000Z-ab"]
    assert "rejected" in rows["20260103T000000Z-ab"] and "not below seasonal naive" in rows["20260103T000000Z-ab"]
    empty = Settings(models_dir=tmp_path / "none")
    assert "no models" in commands.format_versions(empty)


def test_the_run_summary_lists_every_candidate_with_its_verdict():
    card = registry.read_card(V1, registry.current_version(V1))
    card.selection = {
        "run_id": "r1", "plan": "full", "season_minutes": 60, "reason": "ets is the best of this run",
        "candidates": [
            {"kind": "ets", "version": "v-ets", "champion": False, "verdict": "promoted", "why": "ets is the best of this run",
             "scores": {"windows": 10, "health_mae": 0.021, "health_rmse": 0.03, "coverage": 0.8, "episodes": 4, "warned": 3, "false_alarms": 1}},
            {"kind": "lstm", "version": "v-lstm", "champion": False, "verdict": "refused", "why": "P10-P90 coverage 98.0% is outside",
             "scores": {"windows": 10, "health_rmse": 0.02, "coverage": 0.98, "episodes": 4, "warned": 3, "false_alarms": 0}},
        ],
        "failed": [{"kind": "seasonal_naive", "verdict": "failed", "error": "OSError: disk full"}],
    }
    text = commands.summarise(card)
    assert text.startswith("run r1: full plan, season 60 min; ets is the best of this run")
    ets, lstm, naive = (next(line for line in text.splitlines() if line.strip().startswith(k)) for k in ("ets", "lstm", "seasonal"))
    assert "0.0210  0.0300" in ets and "80%" in ets and "3/4" in ets and "promoted" in ets
    assert "refused: P10-P90 coverage 98.0%" in lstm and "failed: OSError: disk full" in naive


def test_models_activate_rolls_back_and_refuses_rejected_versions_without_force(tmp_path, capsys):
    settings = registry_with_three_versions(tmp_path)
    activate = lambda version, force=False: commands.run_models_activate(  # noqa: E731
        argparse.Namespace(version=version, force=force), settings
    )
    assert activate("20260101T000000Z-ab") == 0
    assert registry.current_version(settings.models_dir) == "20260101T000000Z-ab"
    assert "current model: 20260101T000000Z-ab (was 20260102T000000Z-ab)" in capsys.readouterr().out
    assert "activated by hand" in registry.read_card(settings.models_dir, "20260101T000000Z-ab").reason

    assert activate("20260103T000000Z-ab") == 1  # rejected by the gates
    assert registry.current_version(settings.models_dir) == "20260101T000000Z-ab"
    assert activate("20260103T000000Z-ab", force=True) == 0
    assert registry.current_version(settings.models_dir) == "20260103T000000Z-ab"

    assert activate("20990101T000000Z-nope") == 1
    assert registry.current_version(settings.models_dir) == "20260103T000000Z-ab"
