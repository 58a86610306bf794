"""Scoring a candidate on a block of windows (training/scoring.py): the health source, every method on the same
minutes, the current model through onnxruntime (torch-free)."""

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from forecasting import registry
from telemetry import simulator
from telemetry.frames import minute_frame
from telemetry.settings import Settings
from forecasting.contract import HEALTH
from forecasting.forecaster import to_original
from forecasting.windows import Scaling
from training import scoring

V1 = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "v1"
N, H, Q = 20, 30, (0.1, 0.5, 0.9)


def test_validate_scores_every_method_on_the_same_minutes_and_picks_the_health_source():
    settings = Settings()
    minutes = 400
    rng = np.random.default_rng(1)
    values = np.column_stack([
        rng.uniform(0.1, 0.2, minutes), rng.uniform(0.1, 0.2, minutes), rng.uniform(1, 5, minutes),
        np.zeros(minutes), rng.uniform(0.05, 0.1, minutes), np.full(minutes, 11 / 12),
    ])
    values[225:228, HEALTH] = np.nan  # in every window's horizon: 3 x 3 minutes nobody is scored on
    scaling = Scaling.fit(values[:200])
    origins = np.array([200, 210, 220])
    truth = np.nan_to_num(values[origins[:, None] + np.arange(H)])  # [N, H, T]: every stream forecast perfectly
    scaled = np.repeat(scaling.transform(truth)[..., None], 3, axis=-1)
    scaled[:, :, HEALTH, :] = scaling.transform(np.full_like(truth, 0.5))[:, :, HEALTH, None]  # health: poor
    v = scoring.validate(scaled, values, origins, scaling, Q, 120, settings)
    mae = v.metrics["health_mae"]
    # Low streams -> every flag 0 -> derived health 1.0; realised health 11/12: derived is off by 1/12.
    assert mae["derived"] == pytest.approx(1 / 12, abs=1e-6)
    assert mae["direct"] == pytest.approx(11 / 12 - 0.5, abs=1e-6)
    # The run chooses between direct and the mean of the two: (1 + 0.5) / 2 against 11/12.
    assert mae["mean"] == pytest.approx(11 / 12 - 0.75, abs=1e-6)
    assert v.health_source == "mean" and mae["model"] == mae["mean"]
    assert np.allclose(v.health(), (v.health("direct") + v.health("derived")) / 2)
    assert v.metrics["scored_minutes"] == 3 * H - 9
    assert v.metrics["stream_mae"]["cpu"]["model"] == pytest.approx(0, abs=1e-9)

    # Served as scored: serving's to_original gives each source's calibrated health, and the spreads reach it.
    offsets = np.tile(np.array([-0.05, 0.0, 0.04]), (H, 1))
    spread = {"cpu": 0.02}
    scored = scoring.validate(scaled, values, origins, scaling, Q, 120, settings, health_offsets=offsets, flag_spread=spread)
    for source in scoring.HEALTH_SOURCES:
        served = to_original(scaled, scaling, source, settings, offsets, spread)[:, :, HEALTH, :]
        np.testing.assert_allclose(served, scored.health(source), atol=1e-12)


@pytest.fixture()
def frame_for_v1():
    start = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(hours=6)
    return minute_frame(simulator.simulate(start, end, seed=2, settings=Settings()).samples, start, end, Settings())


def test_the_current_model_runs_through_onnxruntime_on_the_candidates_origins(frame_for_v1, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(V1, models)
    version = registry.current_version(models)
    origins = np.array([120, 150, 180])
    health = scoring.registry_model_values(models, version, frame_for_v1, origins, Settings())[0][:, :, HEALTH, 1]
    assert health.shape == (3, 180) and ((health >= 0) & (health <= 1)).all()
    # Its own L (120) must fit before the first origin, else it cannot be compared.
    with pytest.raises(scoring.NotComparable, match="reaches before the data"):
        scoring.registry_model_values(models, version, frame_for_v1, np.array([60]), Settings())


def test_a_current_model_with_other_features_or_a_broken_file_is_not_comparable(frame_for_v1, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(V1, models)
    version = registry.current_version(models)
    card_path = models / version / registry.CARD
    card = json.loads(card_path.read_text())
    card["features"] = card["features"][:-2]
    card_path.write_text(json.dumps(card))
    with pytest.raises(scoring.NotComparable, match="other input features"):
        scoring.registry_model_values(models, version, frame_for_v1, np.array([150]), Settings())
    registry.model_path(models, version).write_bytes(b"not an onnx model")
    with pytest.raises(scoring.NotComparable, match="cannot load"):
        scoring.registry_model_values(models, version, frame_for_v1, np.array([150]), Settings())
