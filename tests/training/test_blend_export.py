"""One ONNX graph averaging two of the contract (training/blend_export.py): members with different input windows."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from forecasting import linear
from forecasting.contract import INPUT, OUTPUT
from training.blend_export import blend_graph, export_blend
from training.export import ExportError
from training.linear_export import export_linear

Q = (0.1, 0.5, 0.9)
H, F = 30, 6  # 3 targets, 3 other features


def _member(kind: str, L: int, series: np.ndarray, tmp_path) -> tuple:
    features = np.concatenate([series, np.ones_like(series)], axis=1).astype(np.float32)
    model = linear.fit_linear(kind, features, series, len(series), L, H, 60 if kind == linear.SEASONAL_NAIVE else None, Q)
    path = tmp_path / f"{kind}-{L}.onnx"
    export_linear(model, path, features[None, -L:])
    return model, path, features


def test_the_blend_is_the_mean_of_its_members_each_on_its_own_window(tmp_path):
    rng = np.random.default_rng(3)
    t = np.arange(600, dtype=float)
    series = np.stack([np.sin(2 * np.pi * t / 60), 0.01 * t, rng.normal(0, 1, len(t))], axis=1)
    short, short_path, features = _member(linear.ETS, 90, series, tmp_path)
    long, long_path, _ = _member(linear.SEASONAL_NAIVE, 240, series, tmp_path)
    origins = np.arange(300, 600, 7)
    windows = features[origins[:, None] + np.arange(-240, 0)[None, :]]  # the longest member's window

    report = export_blend([short_path, long_path], tmp_path / "blend.onnx", windows)
    got = ort.InferenceSession(str(tmp_path / "blend.onnx"), providers=["CPUExecutionProvider"]).run(
        [OUTPUT], {INPUT: windows})[0]
    expected = (short.predict_scaled(windows[:, -90:]) + long.predict_scaled(windows)) / 2
    assert got.shape == (len(origins), H, 3, len(Q))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # The members really differ (a blend of equals would pass the check above whatever it averaged).
    assert np.abs(short.predict_scaled(windows[:, -90:]) - long.predict_scaled(windows)).mean() > 0.1
    assert report.parity_ok and report.parity_windows == len(origins) and report.exporter == "onnx.compose"
    proto = onnx.load(str(tmp_path / "blend.onnx"))
    assert proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 240


def test_members_of_different_opset_versions_are_refused(tmp_path):
    series = np.random.default_rng(0).normal(0, 1, (300, 3))
    _, path, _ = _member(linear.ETS, 60, series, tmp_path)
    member = onnx.load(str(path))
    other = onnx.load(str(path))
    other.opset_import[0].version = member.opset_import[0].version - 1
    with pytest.raises(ExportError, match="opset"):
        blend_graph([member, other], F)
