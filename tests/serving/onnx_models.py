"""Small, deterministic ONNX models that honour the serving contract, built without torch.

The contract (telemetry/forecaster.py): input ``window`` float32 [batch, L, len(FEATURES)],
output ``quantiles`` float32 [batch, H, len(TARGETS), len(quantiles)] in scaled units.

Every model here is ``last observed value + trend * step + drift * step`` with fixed
quantile offsets, so a test can say exactly what it must forecast:

- :func:`persistence_model`: repeats the last observed minute (bands at fixed offsets);
- :func:`declining_model`: health falls by a fixed amount per minute (a known crossing time);
- :func:`trend_model`: extrapolates each stream's slope over the last ``lag`` minutes (a leak
  that climbs keeps climbing; a flat calm stays flat).

With :func:`identity_scaling` the scaled units are the original units, so the numbers in a
test are the numbers on the wire.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from forecasting import registry
from forecasting.contract import FEATURES, TARGETS
from forecasting.windows import LOG_CHANNELS, Scaling

UTC = dt.timezone.utc
OPSET = 17


def identity_scaling() -> Scaling:
    """Scaled units == original units (no log, mean 0, std 1)."""
    n = len(TARGETS)
    return Scaling(TARGETS, (False,) * n, (0.0,) * n, (1.0,) * n)


def log_scaling() -> Scaling:
    """Unit scaling, on log1p for the heavy-tailed channels (as training scales them)."""
    n = len(TARGETS)
    return Scaling(TARGETS, tuple(t in LOG_CHANNELS for t in TARGETS), (0.0,) * n, (1.0,) * n)


def build_onnx(
    input_minutes: int,
    horizon_minutes: int,
    quantiles: Sequence[float],
    *,
    trend_lag: int | None = None,
    trend_gain: Sequence[float] | None = None,
    drift: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
    band_growth: float = 0.0,
) -> bytes:
    """``q[h, t, k] = last[t] + gain[t] * slope[t] * (h + 1) + drift[t] * (h + 1) + offset[k] * (1 + growth * h)``.

    ``slope = (last - window[L - 1 - lag]) / lag`` (scaled units per minute); ``offsets`` are per
    quantile (default -0.05, 0, +0.05 for three quantiles).
    """
    L, H, T, Q, F = input_minutes, horizon_minutes, len(TARGETS), len(quantiles), len(FEATURES)
    steps = np.arange(1, H + 1, dtype=np.float32).reshape(1, H, 1)
    drift_c = np.asarray(drift if drift is not None else [0.0] * T, np.float32).reshape(1, 1, T) * steps
    if offsets is None:
        offsets = np.linspace(-0.05, 0.05, Q) if Q > 1 else [0.0]
    growth = (1.0 + band_growth * np.arange(H, dtype=np.float32)).reshape(1, H, 1, 1)
    offsets_c = (np.asarray(offsets, np.float32).reshape(1, 1, 1, Q) * growth) * np.ones((1, 1, T, 1), np.float32)

    inits = [
        numpy_helper.from_array(np.array([L - 1], np.int64), "last_start"),
        numpy_helper.from_array(np.array([L], np.int64), "last_end"),
        numpy_helper.from_array(np.array([1], np.int64), "axis_time"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([T], np.int64), "n_targets"),
        numpy_helper.from_array(np.array([2], np.int64), "axis_channel"),
        numpy_helper.from_array(np.array([-1], np.int64), "axis_last"),
        numpy_helper.from_array(drift_c.astype(np.float32), "drift"),
        numpy_helper.from_array(offsets_c.astype(np.float32), "offsets"),
    ]
    nodes = [
        helper.make_node("Slice", ["window", "last_start", "last_end", "axis_time"], ["last_all"]),
        helper.make_node("Slice", ["last_all", "zero", "n_targets", "axis_channel"], ["last"]),  # [B,1,T]
    ]
    level = "last"
    if trend_lag:
        gain = np.asarray(trend_gain if trend_gain is not None else [1.0] * T, np.float32).reshape(1, 1, T)
        inits += [
            numpy_helper.from_array(np.array([L - 1 - trend_lag], np.int64), "prev_start"),
            numpy_helper.from_array(np.array([L - trend_lag], np.int64), "prev_end"),
            numpy_helper.from_array((gain / trend_lag * steps).astype(np.float32), "trend_steps"),
        ]
        nodes += [
            helper.make_node("Slice", ["window", "prev_start", "prev_end", "axis_time"], ["prev_all"]),
            helper.make_node("Slice", ["prev_all", "zero", "n_targets", "axis_channel"], ["prev"]),
            helper.make_node("Sub", ["last", "prev"], ["delta"]),  # [B,1,T]
            helper.make_node("Mul", ["delta", "trend_steps"], ["trend"]),  # [B,H,T]
            helper.make_node("Add", ["last", "trend"], ["trended"]),
        ]
        level = "trended"
    nodes += [
        helper.make_node("Add", [level, "drift"], ["path"]),  # [B,H,T]
        helper.make_node("Unsqueeze", ["path", "axis_last"], ["path4"]),  # [B,H,T,1]
        helper.make_node("Add", ["path4", "offsets"], ["quantiles"]),  # [B,H,T,Q]
    ]
    graph = helper.make_graph(
        nodes,
        "test_forecaster",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", L, F])],
        [helper.make_tensor_value_info("quantiles", TensorProto.FLOAT, ["batch", H, T, Q])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tests.serving")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def install(
    models_dir: Path,
    version: str,
    onnx_bytes: bytes,
    *,
    input_minutes: int,
    horizon_minutes: int,
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    scaling: Scaling | None = None,
    health_source: str = "direct",
    activate: bool = True,
    created_at: dt.datetime | None = None,
    kind: str = "lstm",
) -> registry.ModelCard:
    """Add a version to a registry (as training would) and optionally point ``current`` at it."""
    models_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = models_dir.parent / f".{version}.onnx"
    onnx_path.write_bytes(onnx_bytes)
    card = registry.ModelCard(
        version=version,
        created_at=(created_at or dt.datetime(2026, 3, 1, tzinfo=UTC)).isoformat(),
        input_minutes=input_minutes,
        horizon_minutes=horizon_minutes,
        quantiles=list(quantiles),
        features=list(FEATURES),
        targets=list(TARGETS),
        scaling=(scaling or identity_scaling()).to_dict(),
        health_source=health_source,
        metrics={"test": {"health_mae": 0.05}},
        training={"builder": "tests/serving/onnx_models.py"},
        kind=kind,
    )
    registry.add_version(models_dir, onnx_path, card)
    onnx_path.unlink()
    if activate:
        registry.activate(models_dir, version)
    return registry.read_card(models_dir, version)


def persistence_model(models_dir: Path, version: str = "v-persist", *, L: int = 30, H: int = 15, **kw) -> registry.ModelCard:
    return install(models_dir, version, build_onnx(L, H, (0.1, 0.5, 0.9)), input_minutes=L, horizon_minutes=H, **kw)


def declining_model(
    models_dir: Path, version: str = "v-decline", *, rate: float = 0.02, L: int = 30, H: int = 60, **kw
) -> registry.ModelCard:
    """Health (identity-scaled) falls by ``rate`` per minute from the last observed minute."""
    drift = [0.0] * len(TARGETS)
    drift[TARGETS.index("health")] = -rate
    onnx_bytes = build_onnx(L, H, (0.1, 0.5, 0.9), drift=drift, offsets=(-0.1, 0.0, 0.1))
    return install(models_dir, version, onnx_bytes, input_minutes=L, horizon_minutes=H, **kw)


def trend_model(
    models_dir: Path, version: str = "v-trend", *, lag: int = 10, L: int = 30, H: int = 60, **kw
) -> registry.ModelCard:
    """Every stream extrapolated along its slope over the last ``lag`` minutes; health derived from them."""
    kw.setdefault("health_source", "derived")
    kw.setdefault("scaling", log_scaling())
    onnx_bytes = build_onnx(L, H, (0.1, 0.5, 0.9), trend_lag=lag, offsets=(-0.02, 0.0, 0.02), band_growth=0.05)
    return install(models_dir, version, onnx_bytes, input_minutes=L, horizon_minutes=H, **kw)
