"""One ONNX graph that averages other graphs of the contract: a blend of forecasters.

``window`` [batch, L, F] (L: the longest member's input window) -> each member reads the last L_i steps
of it (one ``Slice``) -> its own graph, its names prefixed -> the members' ``quantiles`` [batch, H, T, Q]
averaged (``Sum``, then a ``Mul`` by 1/n) -> ``quantiles``. Every member must forecast the same horizon,
targets and quantiles, in the same scaling (the blend's card has one), which the caller sees to. Checked with
``onnx.checker`` and the contract (:func:`training.export.check_onnx`), and compared with the mean of the
members run one by one through onnxruntime on held-back windows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.compose import add_prefix

from forecasting.contract import INPUT, OUTPUT
from forecasting.forecaster import cpu_session
from training.export import PARITY_TOLERANCE, ExportError, ExportReport, batched_difference, check_onnx

log = logging.getLogger(__name__)


def _input_steps(proto: onnx.ModelProto) -> int:
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    return int(dims[1].dim_value)


def blend_graph(members: Sequence[onnx.ModelProto], n_features: int) -> onnx.ModelProto:
    """The mean of ``members`` (each with the contract's one input and output) as one graph."""
    if not members:
        raise ExportError("a blend needs at least one member")
    opsets = {(o.domain, o.version) for m in members for o in m.opset_import}
    domains = {d for d, _ in opsets}
    if len(domains) != len(opsets):
        raise ExportError(f"the members import different versions of one opset: {sorted(opsets)}")
    steps = [_input_steps(m) for m in members]
    L = max(steps)
    nodes, initializers, value_info, outputs = [], [], [], []
    for i, (member, member_steps) in enumerate(zip(members, steps)):
        prefix = f"m{i}_"
        prefixed = add_prefix(member, prefix)
        graph = prefixed.graph
        initializers += [numpy_helper.from_array(np.array([L - member_steps], np.int64), f"{prefix}slice_start"),
                         numpy_helper.from_array(np.array([L], np.int64), f"{prefix}slice_end"),
                         numpy_helper.from_array(np.array([1], np.int64), f"{prefix}slice_axis")]
        nodes.append(helper.make_node("Slice", [INPUT, f"{prefix}slice_start", f"{prefix}slice_end", f"{prefix}slice_axis"],
                                      [graph.input[0].name]))
        nodes += list(graph.node)
        initializers += list(graph.initializer)
        value_info += list(graph.value_info)
        outputs.append(graph.output[0].name)
    initializers.append(numpy_helper.from_array(np.array(1.0 / len(members), np.float32), "blend_weight"))
    nodes += [helper.make_node("Sum", outputs, ["blend_sum"]),
              helper.make_node("Mul", ["blend_sum", "blend_weight"], [OUTPUT])]
    out_shape = [d.dim_param or d.dim_value for d in members[0].graph.output[0].type.tensor_type.shape.dim]
    graph = helper.make_graph(
        nodes, "pycemaker_blend",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", L, n_features])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", *out_shape[1:]])],
        initializer=initializers, value_info=value_info,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets)],
                              producer_name="pycemaker")
    proto.ir_version = max(m.ir_version for m in members)
    return proto


def export_blend(member_paths: Sequence[Path], path: Path, held_back: np.ndarray, threads: int = 1) -> ExportReport:
    """Write the blend of the ONNX files ``member_paths``, check it, and measure parity against the mean of the members
    run one by one on ``held_back`` windows [N, L, F] (L: the longest member's)."""
    members = [onnx.load(str(p)) for p in member_paths]
    n_features = held_back.shape[2]
    proto = blend_graph(members, n_features)
    onnx.save(proto, str(path))
    out = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    opset = check_onnx(path, held_back.shape[1], n_features, out[1], out[2], out[3])
    sessions = [(cpu_session(p, threads), _input_steps(m)) for p, m in zip(member_paths, members)]

    def members_mean(batch: np.ndarray) -> np.ndarray:
        return np.mean([s.run([OUTPUT], {INPUT: np.ascontiguousarray(batch[:, -steps:])})[0] for s, steps in sessions], axis=0)

    worst = batched_difference(cpu_session(path, threads), held_back, members_mean)
    report = ExportReport(opset, worst, int(len(held_back)), path.stat().st_size, "onnx.compose")
    log.info("exported a blend of %d (opset %d, %.0f KiB): parity %.1e over %d windows (tolerance %.0e)",
             len(members), opset, report.size_bytes / 1024, worst, len(held_back), PARITY_TOLERANCE)
    return report


__all__ = ["blend_graph", "export_blend"]
