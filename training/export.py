"""ONNX export of a fitted network, the checker, and parity against torch.

The contract (:mod:`forecasting.contract`, read by :class:`forecasting.forecaster.OnnxForecaster`): input
``window`` float32 [batch, L, len(FEATURES)], output ``quantiles`` float32
[batch, H, len(TARGETS), len(quantiles)] in scaled units, the batch axis dynamic.
A model is promoted only if the checker passes and onnxruntime agrees with torch on
held-back windows to within :data:`PARITY_TOLERANCE`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch

from forecasting.contract import INPUT, OUTPUT
from forecasting.forecaster import cpu_session

log = logging.getLogger(__name__)
OPSET = 18
#: Largest absolute difference (scaled units) allowed between onnxruntime and torch.
PARITY_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported graph is invalid or does not honour the contract."""


@dataclass(frozen=True)
class ExportReport:
    opset: int
    parity_max_abs_diff: float
    parity_windows: int
    size_bytes: int
    #: The exporter used: "dynamo" (torch.export) or "torchscript" (the legacy fallback).
    exporter: str

    @property
    def parity_ok(self) -> bool:
        return bool(np.isfinite(self.parity_max_abs_diff) and self.parity_max_abs_diff <= PARITY_TOLERANCE)

    def to_dict(self) -> dict:
        return {
            "input": INPUT,
            "output": OUTPUT,
            "opset": self.opset,
            "exporter": self.exporter,
            "parity_max_abs_diff": self.parity_max_abs_diff,
            "parity_windows": self.parity_windows,
            "parity_tolerance": PARITY_TOLERANCE,
            "size_bytes": self.size_bytes,
        }


def export_onnx(model: torch.nn.Module, path: Path, input_minutes: int, n_features: int, opset: int = OPSET) -> str:
    """Write ``model`` (float32, CPU, eval mode) as ONNX; returns the exporter used.

    The torch.export-based exporter is tried first; the TorchScript exporter is the fallback
    for a torch build where it fails (both give the same contract).
    """
    model = model.to("cpu").float().eval()
    example = torch.zeros(2, input_minutes, n_features)
    path = Path(path)
    try:
        with _quiet():
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT],
                output_names=[OUTPUT],
                opset_version=opset,
                dynamo=True,
                dynamic_shapes={INPUT: {0: torch.export.Dim("batch")}},
                external_data=False,
                verbose=False,
            )
        return "dynamo"
    except Exception as exc:  # the dynamo exporter raises many kinds of errors
        log.warning("torch.export-based ONNX export failed (%s); using the TorchScript exporter", exc)
    with _quiet():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT],
            output_names=[OUTPUT],
            opset_version=opset,
            dynamo=False,
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        )
    return "torchscript"


@contextlib.contextmanager
def _quiet():
    """The exporters narrate every pass on stdout and warn about internals; keep that out of logs."""
    noisy = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export")]
    levels = [logger.level for logger in noisy]
    for logger in noisy:
        logger.setLevel(logging.ERROR)  # "torchvision is not installed", pass-by-pass INFO
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(noisy, levels):
            logger.setLevel(level)


def strip_debug_metadata(path: Path) -> None:
    """Drop the exporter's per-node stack traces and FX dumps (local paths, a third of a small file)."""
    proto = onnx.load(str(path))
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.save(proto, str(path))


def check_onnx(path: Path, input_minutes: int, n_features: int, horizon_minutes: int, n_targets: int, n_quantiles: int) -> int:
    """``onnx.checker`` plus the contract's names, ranks and static sizes; returns the opset."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx raises ValidationError and friends
        raise ExportError(f"onnx.checker refused {path.name}: {exc}") from exc
    proto = onnx.load(str(path), load_external_data=False)
    graph = proto.graph
    model_opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    expect = {
        INPUT: (graph.input, [None, input_minutes, n_features]),
        OUTPUT: (graph.output, [None, horizon_minutes, n_targets, n_quantiles]),
    }
    for name, (values, dims) in expect.items():
        found = [v for v in values if v.name == name]
        if not found:
            raise ExportError(f"{path.name} has no {name!r} ({'input' if values is graph.input else 'output'})")
        shape = found[0].type.tensor_type.shape.dim
        actual = [d.dim_value if d.HasField("dim_value") else None for d in shape]
        if len(actual) != len(dims) or any(d is not None and a != d for a, d in zip(actual, dims)):
            raise ExportError(f"{name!r} has shape {actual}, expected {dims} (None: dynamic)")
        if actual[0] is not None:
            raise ExportError(f"{name!r} has a static batch axis ({actual[0]})")
    if model_opset < 17:
        raise ExportError(f"opset {model_opset} < 17")
    return model_opset


def batched_difference(session, windows: np.ndarray, expected: Callable[[np.ndarray], np.ndarray],
                       batch_size: int = 256) -> float:
    """Largest |``session``'s output - ``expected(batch)``| over ``windows`` [N, L, F], in batches (a graph's parity
    with its reference, computed batch by batch)."""
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    worst = 0.0
    for i in range(0, len(windows), batch_size):
        batch = windows[i : i + batch_size]
        worst = max(worst, float(np.max(np.abs(session.run([OUTPUT], {INPUT: batch})[0] - expected(batch)))))
    return worst


def parity(model: torch.nn.Module, path: Path, windows: np.ndarray, batch_size: int = 256, threads: int = 1) -> float:
    """Largest |onnxruntime - torch| over ``windows`` [N, L, F] (also run one at a time: the batch axis is dynamic)."""
    session = cpu_session(path, threads)
    model = model.to("cpu").float().eval()
    worst = 0.0
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    batches = [windows[:1]] + [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
    with torch.no_grad():
        for batch in batches:
            if not len(batch):
                continue
            expected = model(torch.from_numpy(batch)).numpy()
            got = session.run([OUTPUT], {INPUT: batch})[0]
            if got.shape != expected.shape:
                return float("inf")
            worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst


def export_and_verify(
    model: torch.nn.Module,
    path: Path,
    held_back: np.ndarray,
    horizon_minutes: int,
    n_targets: int,
    n_quantiles: int,
    threads: int = 1,
) -> ExportReport:
    """Export, check and measure parity on ``held_back`` windows [N, L, F]."""
    _, input_minutes, n_features = held_back.shape
    exporter = export_onnx(model, path, input_minutes, n_features)
    strip_debug_metadata(path)
    opset = check_onnx(path, input_minutes, n_features, horizon_minutes, n_targets, n_quantiles)
    diff = parity(model, path, held_back, threads=threads)
    report = ExportReport(opset, diff, int(len(held_back)), path.stat().st_size, exporter)
    log.info("exported %s (%s, opset %d, %.0f KiB): parity max abs diff %.2e over %d windows",
             path.name, exporter, opset, report.size_bytes / 1024, diff, len(held_back))
    return report
