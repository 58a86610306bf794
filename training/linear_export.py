"""ONNX graphs of the linear baselines (:mod:`forecasting.linear`), under the same contract as the LSTM.

``window`` [batch, L, F] -> the first T channels (the scaled targets) -> per target, a matrix
product with its weights [L, H] (one Einsum) -> plus the bias -> plus the band offsets [H, T, Q] ->
``quantiles`` [batch, H, T, Q]. Built with ``onnx.helper`` (no exporter: the graph is five nodes),
checked with ``onnx.checker`` and the contract (:func:`training.export.check_onnx`), and compared with
the numpy reference :meth:`forecasting.linear.LinearModel.predict_scaled` on held-back windows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from forecasting.contract import INPUT, OUTPUT
from forecasting.forecaster import cpu_session
from forecasting.linear import LinearModel
from training.export import OPSET, PARITY_TOLERANCE, ExportReport, batched_difference, check_onnx

log = logging.getLogger(__name__)


def linear_graph(model: LinearModel, n_features: int) -> onnx.ModelProto:
    T, L, H = model.weights.shape
    Q = len(model.quantiles)
    consts = [
        numpy_helper.from_array(np.array([0], np.int64), "starts"),
        numpy_helper.from_array(np.array([T], np.int64), "ends"),
        numpy_helper.from_array(np.array([2], np.int64), "axes"),
        numpy_helper.from_array(np.array([3], np.int64), "last_axis"),
        numpy_helper.from_array(model.weights.astype(np.float32), "weights"),  # [T, L, H]
        numpy_helper.from_array(model.bias.T.astype(np.float32), "bias_ht"),  # [H, T]
        numpy_helper.from_array(model.offsets.astype(np.float32), "offsets"),  # [H, T, Q]
    ]
    nodes = [
        helper.make_node("Slice", [INPUT, "starts", "ends", "axes"], ["targets"]),  # [B, L, T]
        helper.make_node("Einsum", ["targets", "weights"], ["product"], equation="blt,tlh->bht"),  # [B, H, T]
        helper.make_node("Add", ["product", "bias_ht"], ["point"]),
        helper.make_node("Unsqueeze", ["point", "last_axis"], ["point_q"]),  # [B, H, T, 1]
        helper.make_node("Add", ["point_q", "offsets"], [OUTPUT]),  # [B, H, T, Q]
    ]
    graph = helper.make_graph(
        nodes, f"pycemaker_{model.kind}",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", L, n_features])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", H, T, Q])],
        initializer=consts,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pycemaker")
    proto.ir_version = 9  # onnxruntime 1.32 reads IR 9 and older
    return proto


def export_linear(model: LinearModel, path: Path, held_back: np.ndarray, threads: int = 1) -> ExportReport:
    """Write, check, and measure parity against the numpy reference on ``held_back`` windows [N, L, F]."""
    n_features = held_back.shape[2]
    onnx.save(linear_graph(model, n_features), str(path))
    T, L, H = model.weights.shape
    opset = check_onnx(path, L, n_features, H, T, len(model.quantiles))
    worst = batched_difference(cpu_session(path, threads), held_back, model.predict_scaled)
    report = ExportReport(opset, worst, int(len(held_back)), path.stat().st_size, "onnx.helper")
    log.info("exported %s baseline (opset %d, %.0f KiB): parity %.1e over %d windows (tolerance %.0e)",
             model.kind, opset, report.size_bytes / 1024, worst, len(held_back), PARITY_TOLERANCE)
    return report


__all__ = ["linear_graph", "export_linear"]
