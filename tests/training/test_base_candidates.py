"""The shipped base model in every run: zero-shot ("base"), blended with ETS ("blend") and fine-tuned ("finetuned"),
beside the others.

On the real server: a simulated member of the app family pretraining never saw is written to the
store, ``train_once`` runs champion/challenger, and the candidates' recorded scores and verdicts
are checked against the selection rules (training/selection.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import pytest

from forecasting import registry
from telemetry import simulator
from telemetry.app_family import app_settings, held_out_profiles
from tests.training.conftest import RAW_TAIL, tiny_fit_config

pytest.importorskip("torch")

from training import selection  # noqa: E402
from training.pipeline import train_once  # noqa: E402

UTC = dt.timezone.utc
END = dt.datetime(2026, 5, 6, tzinfo=UTC)
#: Enough for the LSTM's split (2001 minutes at L=120, H=180), so every kind is fitted.
HOURS = 36
pytestmark = pytest.mark.slow


def write_app(settings, db, profile, hours: float = HOURS) -> None:
    sim = simulator.simulate(END - dt.timedelta(hours=hours), END, 5, settings, profile=profile)
    simulator.write(db, sim, settings, raw_since=END - RAW_TAIL)  # rollups before the last hour (conftest.py)


def entries(card: registry.ModelCard) -> list[selection.Entry]:
    out = []
    for c in card.selection["candidates"]:
        fields = {f.name for f in dataclasses.fields(selection.Scores)}
        scores = selection.Scores(**{k: v for k, v in c["scores"].items() if k in fields})
        out.append(selection.Entry(c["kind"], c["version"], scores, champion=c["champion"], gate_failures=c["gate_failures"],
                                   verdict=c["verdict"]))
    return out


def test_a_family_app_pretraining_never_saw_scores_base_and_finetuned_with_the_others(settings, db):
    profile = held_out_profiles(1)[0]
    service = app_settings(settings, profile)
    write_app(service, db, profile)
    result = train_once(service, db, config=tiny_fit_config(max_epochs=2), progress_bar=False)
    assert result.status == "succeeded" and result.promoted, result.error or result.reason
    card = registry.read_card(service.models_dir, result.version)
    judged = entries(card)
    kinds = {e.kind for e in judged}
    assert {"seasonal_naive", "ets", "base", "blend", "finetuned", "lstm"} <= kinds
    for e in judged:  # a fresh registry: every entry is this run's (the interim winner defends as the champion)
        assert e.scores.held_back and e.scores.windows > 0 and math.isfinite(e.scores.health_mae), e

    # The zero-shot candidate is the shipped graph as it is, its band calibrated on this service's windows.
    base = next(registry.read_card(service.models_dir, e.version) for e in judged if e.kind == "base")
    shipped = registry.current_or_newest(service.base_models_dir)
    assert (service.models_dir / base.version / registry.MODEL).read_bytes() == \
        registry.model_path(service.base_models_dir, shipped).read_bytes()
    assert base.training["base_version"] == shipped and base.streams == list(profile.streams)
    assert base.calibration["health"]["validation_windows"] == base.metrics["validation_windows"] > 0
    # The blend: the base model and an ETS fitted here, in the base model's scaling, averaged in one graph.
    blend = next(registry.read_card(service.models_dir, e.version) for e in judged if e.kind == "blend")
    assert blend.training["base_version"] == shipped and blend.training["members"] == ["base", "ets"]
    assert blend.scaling == base.scaling and blend.health_source in ("direct", "mean")
    assert blend.input_steps == max(base.input_steps, blend.training["ets"]["input_steps"])
    assert blend.onnx["exporter"] == "onnx.compose" and blend.onnx["parity_max_abs_diff"] <= blend.onnx["parity_tolerance"]
    assert blend.calibration["health"]["validation_windows"] > 0
    tuned = next(registry.read_card(service.models_dir, e.version) for e in judged if e.kind == "finetuned")
    assert tuned.training["base_version"] == shipped and 1 <= tuned.training["epochs"] <= service.finetune_epochs
    assert tuned.onnx["parity_max_abs_diff"] <= tuned.onnx["parity_tolerance"]
    assert "refit" not in tuned.training  # a full plan serves the fine-tuning it scored (the refit is a short plan's)

    # Every card derives health with the samples' spreads this run fitted (5 s scrapes: a minute's flag is a fraction);
    # seasonal naive's health is the health a season back, the goals' reference.
    cards = [registry.read_card(service.models_dir, e.version) for e in judged]
    assert cards[0].flag_spread and all(c.flag_spread == cards[0].flag_spread for c in cards)
    assert all(0 < s < service.cuts()[name][0] for name, s in cards[0].flag_spread.items())
    assert next(c for c in cards if c.kind == "seasonal_naive").health_source == "direct"

    # The rules: the base model is held to the seasonal-naive gate; the promoted model is the run's unbeaten eligible one.
    naive = next(e for e in judged if e.kind == "seasonal_naive")
    ratio = next(e for e in judged if e.kind == "base").scores.health_mae / naive.scores.health_mae
    base_entry = next(c for c in card.selection["candidates"] if c["kind"] == "base")
    assert (ratio > service.gate_naive_ratio) == any("seasonal naive" in g for g in base_entry["gate_failures"])
    winner = next(e for e in judged if e.version == result.version)
    assert winner.verdict in ("promoted", "kept")  # kept: the interim winner defended
    assert not winner.gate_failures and not any(selection.beats(e, winner) for e in judged if not e.gate_failures)


def test_a_day_of_history_fine_tunes_the_base_model_on_its_fit_block(settings, db):
    """Too short for the LSTM's split, long enough to fine-tune: the first run on a new service fine-tunes."""
    profile = held_out_profiles(1)[0]
    service = app_settings(settings, profile)
    write_app(service, db, profile, hours=24)
    result = train_once(service, db, config=tiny_fit_config(max_epochs=2), progress_bar=False)
    assert result.status == "succeeded" and result.promoted, result.error or result.reason
    card = registry.read_card(service.models_dir, result.version)
    assert card.selection["plan"] == "short"
    assert {f["kind"]: f["verdict"] for f in card.selection["failed"]} == {"lstm": "skipped"}
    judged = {e.kind: e for e in entries(card)}
    assert {"base", "finetuned"} <= set(judged) and judged["finetuned"].scores.windows == judged["base"].scores.windows > 0
    tuned = registry.read_card(service.models_dir, judged["finetuned"].version)
    assert tuned.training["train_windows"] > 0 and tuned.calibration["health"]["validation_windows"] > 0
    # Scored as fitted on the fit block, served as refitted on every window of the day for the epochs it kept.
    assert tuned.training["best_epoch"] >= 0
    assert tuned.training["refit"]["epochs"] == tuned.training["best_epoch"] + 1
    assert tuned.training["refit"]["train_windows"] > 2 * tuned.training["train_windows"]
    assert tuned.onnx["parity_max_abs_diff"] <= tuned.onnx["parity_tolerance"]


def test_a_three_stream_service_gets_base_and_finetuned_forecasts(settings, db):
    """No JVM memory: the base model's memory channel is masked, never a crash."""
    profile = dataclasses.replace(held_out_profiles(1)[0], streams=("cpu", "requests", "response_time"))
    service = app_settings(settings, profile)
    write_app(service, db, profile)
    result = train_once(service, db, config=tiny_fit_config(max_epochs=1), progress_bar=False)
    assert result.status == "succeeded" and result.promoted, result.error or result.reason
    card = registry.read_card(service.models_dir, result.version)
    assert not [f for f in card.selection["failed"] if f["kind"] in ("base", "blend", "finetuned")], card.selection["failed"]
    for kind in ("base", "blend", "finetuned"):
        version = next(c["version"] for c in card.selection["candidates"] if c["kind"] == kind)
        kind_card = registry.read_card(service.models_dir, version)
        assert kind_card.streams == ["cpu", "requests", "response_time"]
        assert math.isfinite(kind_card.metrics["scores"]["health_rmse"])
        assert kind_card.metrics["test"]["health_mae"]["model"] < 0.2


def test_without_a_base_model_the_run_skips_its_kinds_and_still_promotes(settings, db, tmp_path):
    profile = held_out_profiles(1)[0]
    service = dataclasses.replace(app_settings(settings, profile), base_models_dir=tmp_path / "no-base",
                                  candidate_kinds=("seasonal_naive", "base", "blend", "finetuned"))
    write_app(service, db, profile, hours=6)
    result = train_once(service, db, config=tiny_fit_config(max_epochs=1), progress_bar=False)
    assert result.promoted, result.error or result.reason
    card = registry.read_card(service.models_dir, result.version)
    assert card.kind == "seasonal_naive"
    assert {f["kind"]: f["verdict"] for f in card.selection["failed"]} == {"base": "skipped", "blend": "skipped",
                                                                           "finetuned": "skipped"}
