"""Atomic promotion: a reader polling the registry (as serving does) never sees a half-written model."""

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np

from forecasting import registry
from forecasting.forecaster import OnnxForecaster
from telemetry.settings import Settings

V1 = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "v1"


def test_a_concurrent_reader_never_sees_a_half_written_model(tmp_path):
    source_version = registry.current_version(V1)
    source_card = registry.read_card(V1, source_version)
    source_model = registry.model_path(V1, source_version)
    model_bytes = source_model.read_bytes()
    models = tmp_path / "models"
    first = dataclasses.replace(source_card, version="20260101T000000Z-000")
    registry.add_version(models, source_model, first)
    registry.activate(models, first.version)

    stop = threading.Event()
    seen: set[str] = set()
    problems: list[str] = []

    def reader() -> None:
        loads = 0
        while not stop.is_set():
            try:
                version = registry.current_version(models)
                card = registry.read_card(models, version)
                if card.version != version or card.status != registry.STATUS_PROMOTED:
                    problems.append(f"{version}: card says {card.version} / {card.status}")
                if registry.model_path(models, version).read_bytes() != model_bytes:
                    problems.append(f"{version}: partial model.onnx")
                for listed in registry.list_versions(models):
                    if not registry.model_path(models, listed.version).is_file():
                        problems.append(f"listed {listed.version} without its model")
                if loads < 5:  # now and then, load it as serving does
                    forecaster = OnnxForecaster(models, version, Settings(models_dir=models))
                    out = forecaster.predict_scaled(np.zeros((1, card.input_minutes, len(card.features)), np.float32))
                    problems.extend([] if np.isfinite(out).all() else [f"{version}: non-finite output"])
                    loads += 1
                seen.add(version)
            except Exception as exc:  # any error is a reader seeing something half-done
                problems.append(f"{type(exc).__name__}: {exc}")

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for i in range(1, 40):
            card = dataclasses.replace(source_card, version=f"20260101T000000Z-{i:03d}", status=registry.STATUS_CANDIDATE)
            registry.add_version(models, source_model, card)
            if i % 3:
                registry.activate(models, card.version, reason=f"promotion {i}")
            else:
                registry.reject(models, card.version, "not better")
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert problems == []
    assert len(seen) > 1  # the readers did watch promotions happen
    assert registry.current_version(models) == "20260101T000000Z-038"
    assert not [p for p in models.iterdir() if p.name.startswith(".") and p.name != "current"]  # no staging left
    rejected = registry.read_card(models, "20260101T000000Z-039")
    assert rejected.status == registry.STATUS_REJECTED and rejected.reason == "not better"
    # Version directories and pointers are readable by a server running as another user.
    assert (models / "current").stat().st_mode & 0o044 == 0o044
    assert (models / "20260101T000000Z-001").stat().st_mode & 0o055 == 0o055
    assert json.loads((models / "20260101T000000Z-001" / "card.json").read_text())["reason"] == "promotion 1"


def test_prune_keeps_the_newest_and_the_current(tmp_path):
    source_version = registry.current_version(V1)
    source_card = registry.read_card(V1, source_version)
    source_model = registry.model_path(V1, source_version)
    models = tmp_path / "models"
    for i in range(6):
        card = dataclasses.replace(source_card, version=f"20260101T00000{i}Z-x", created_at=f"2026-01-01T00:00:0{i}+00:00")
        registry.add_version(models, source_model, card)
    registry.activate(models, "20260101T000000Z-x")  # a rollback to the oldest
    pruned = registry.prune(models, keep=3)
    assert pruned == ["20260101T000001Z-x", "20260101T000002Z-x"]
    assert [c.version for c in registry.list_versions(models)] == [
        "20260101T000000Z-x", "20260101T000003Z-x", "20260101T000004Z-x", "20260101T000005Z-x",
    ]
