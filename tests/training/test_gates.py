"""The promotion gates: parity, the evaluation's bar against seasonal naive, the band's coverage, the current model
(decide() on known numbers, torch-free)."""

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
from forecasting.contract import HEALTH, TARGETS
from forecasting.windows import Scaling
from training import gates
from training.export import PARITY_TOLERANCE

V1 = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "v1"
N, H, Q = 20, 30, (0.1, 0.5, 0.9)


SETTINGS = Settings()  # gates: RMSE over min(60, H) = 30 leads <= 0.8 x seasonal naive's, coverage 70-90%


def validation_with(model_error: float, naive_error: float, coverage: float = 0.8, seed: int = 0) -> gates.Validation:
    """Health actuals in [0.2, 0.8]; the model and seasonal naive off by exactly the given amounts;
    the P10-P90 band holds the observation in the first ``coverage`` share of the windows, misses it in the rest."""
    rng = np.random.default_rng(seed)
    actual = np.full((N, H, len(TARGETS)), 0.5)
    actual[:, :, HEALTH] = rng.uniform(0.2, 0.8, (N, H))
    actual[0, :5, HEALTH] = np.nan  # missing minutes are scored by nobody
    values = np.repeat(actual[..., None], 3, axis=-1) + np.array([-0.1, 0.0, 0.1])
    values[round(coverage * N):, :, HEALTH, :] += 0.2  # the band above the observation
    values[:, :, HEALTH, 1] = actual[:, :, HEALTH] + model_error
    naive = actual.copy()
    naive[:, :, HEALTH] += naive_error
    persistence = actual + 0.3
    return gates.Validation(np.arange(N) + 200, values, actual, naive, persistence, Q, values[:, :, HEALTH, :])


def decide(v: gates.Validation, parity: float = 3e-6, current=None, bootstrap: bool = False) -> gates.Decision:
    return gates.decide(v, parity, PARITY_TOLERANCE, current, SETTINGS, bootstrap=bootstrap)


def test_a_candidate_well_below_seasonal_naive_with_a_calibrated_band_is_promoted_when_there_is_no_current_model():
    decision = decide(validation_with(0.02, 0.05))
    assert decision.promote
    checks = decision.checks
    assert checks["horizon_minutes"] == H  # the model's horizon is shorter than gate_horizon_minutes (60)
    assert checks["health_rmse"] == pytest.approx(0.02) and checks["seasonal_naive_health_rmse"] == pytest.approx(0.05)
    assert checks["seasonal_naive_ratio"] == pytest.approx(0.4) and checks["coverage"] == pytest.approx(0.8, abs=0.01)
    assert "no current model" in decision.reason and "30-min health RMSE 0.0200 = 0.40 x seasonal naive's 0.0500" in decision.reason


@pytest.mark.parametrize("model_error", [0.041, 0.05, 0.08, -0.06])
def test_a_candidate_not_well_below_seasonal_naive_is_refused(model_error):
    """The bar is the evaluation's: at most 0.8 x seasonal naive's RMSE, not merely below it."""
    decision = decide(validation_with(model_error, 0.05))
    assert not decision.promote
    assert "x seasonal naive's 0.0500 (at most 0.80)" in decision.reason


@pytest.mark.parametrize("coverage", [0.6, 0.95])
def test_a_candidate_whose_band_is_too_narrow_or_too_wide_is_refused(coverage):
    decision = decide(validation_with(0.02, 0.05, coverage=coverage))
    assert not decision.promote
    assert "P10-P90 coverage" in decision.reason and "is outside 70%-90%" in decision.reason


@pytest.mark.parametrize("diff", [2e-4, float("nan"), float("inf")])
def test_a_candidate_failing_parity_is_refused_however_accurate(diff):
    decision = decide(validation_with(0.0, 0.05), parity=diff, bootstrap=True)
    assert not decision.promote
    assert decision.reason.startswith("ONNX parity")


def test_the_candidate_must_beat_the_current_model_on_the_same_windows():
    v = validation_with(0.02, 0.05)
    actual = v.actual[:, :, HEALTH]
    better_current = ("20260101T000000Z-old", actual + 0.01)
    worse_current = ("20260101T000000Z-old", actual - 0.03)
    refused = decide(v, current=better_current)
    assert not refused.promote
    assert "30-min health RMSE 0.0200 is not below the current model 20260101T000000Z-old's 0.0100" in refused.reason
    assert refused.checks["current_model"]["health_rmse"] == pytest.approx(0.01)
    promoted = decide(v, current=worse_current)
    assert promoted.promote and "beats current model" in promoted.reason
    # A tie is not better, nor is a difference within float noise (the same model, torch vs onnxruntime).
    assert not decide(v, current=("x", actual + 0.02)).promote
    assert not decide(v, current=("x", actual + 0.02 + gates.CURRENT_MODEL_MARGIN / 2)).promote
    assert decide(v, current=("x", actual + 0.02 + 3 * gates.CURRENT_MODEL_MARGIN)).promote


def test_a_current_model_with_a_shorter_horizon_is_compared_on_the_overlap():
    v = validation_with(0.02, 0.05)
    v.values[:, 10:, HEALTH, 1] += 0.5  # the candidate is bad beyond minute 10...
    current = ("short", v.actual[:, :10, HEALTH] + 0.03)  # ...which the current model does not forecast
    decision = decide(v, current=current)
    assert decision.checks["current_model"]["horizon_minutes_compared"] == 10
    assert decision.checks["current_model"]["candidate_health_rmse"] == pytest.approx(0.02)
    assert decision.checks["current_model"]["health_rmse"] == pytest.approx(0.03)
    # Not refused for the current model (better over its 10 minutes) but for seasonal naive over all 30.
    assert not decision.promote and decision.reason.startswith("30-min health RMSE 0.4")
    assert "x seasonal naive's 0.0500" in decision.reason and "current model" not in decision.reason


def test_a_current_model_that_cannot_be_compared_does_not_block_promotion():
    reason = gates.NotComparable("its card lists other input features or targets than this trainer builds")
    decision = decide(validation_with(0.02, 0.05), current=("old", reason))
    assert decision.promote
    assert "current model old not comparable: its card lists other input features" in decision.reason


def test_bootstrap_waives_only_the_baseline_and_band_gates_and_only_without_a_current_model():
    v = validation_with(0.07, 0.05, coverage=0.5)
    waived = decide(v, bootstrap=True)
    assert waived.promote and "gates waived" in waived.reason and len(waived.checks["waived"]) == 2
    with_current = decide(v, current=("old", v.actual[:, :, HEALTH] + 0.1), bootstrap=True)
    assert not with_current.promote


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
    v = gates.validate(scaled, values, origins, scaling, Q, 120, settings)
    mae = v.metrics["health_mae"]
    # Low streams -> every flag 0 -> derived health 1.0; realised health 11/12: derived is off by 1/12.
    assert mae["derived"] == pytest.approx(1 / 12, abs=1e-6)
    assert mae["direct"] == pytest.approx(11 / 12 - 0.5, abs=1e-6)
    assert v.health_source == "derived" and mae["model"] == mae["derived"]
    assert v.metrics["scored_minutes"] == 3 * H - 9
    assert v.metrics["stream_mae"]["cpu"]["model"] == pytest.approx(0, abs=1e-9)


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
    health = gates.current_model_health(models, version, frame_for_v1, origins, Settings())
    assert health.shape == (3, 180) and ((health >= 0) & (health <= 1)).all()
    # Its own L (120) must fit before the first origin, else it cannot be compared.
    with pytest.raises(gates.NotComparable, match="reaches before the data"):
        gates.current_model_health(models, version, frame_for_v1, np.array([60]), Settings())


def test_a_current_model_with_other_features_or_a_broken_file_is_not_comparable(frame_for_v1, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(V1, models)
    version = registry.current_version(models)
    card_path = models / version / registry.CARD
    card = json.loads(card_path.read_text())
    card["features"] = card["features"][:-2]
    card_path.write_text(json.dumps(card))
    with pytest.raises(gates.NotComparable, match="other input features"):
        gates.current_model_health(models, version, frame_for_v1, np.array([150]), Settings())
    registry.model_path(models, version).write_bytes(b"not an onnx model")
    with pytest.raises(gates.NotComparable, match="cannot load"):
        gates.current_model_health(models, version, frame_for_v1, np.array([150]), Settings())
