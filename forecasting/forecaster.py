"""Run a registry model with onnxruntime (CPU, no torch): per-minute frames in, quantile forecasts out.

The ONNX contract is :mod:`forecasting.contract` (written by ``training/export.py``, described by
the model card).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from forecasting import calibration, flag_spread, registry
from forecasting.contract import BOUNDS, HEALTH, INPUT, OUTPUT, TARGETS, median_index
from forecasting.windows import Scaling, feature_matrix, lookback_minutes, window_at
from telemetry.catalogue import STREAM_COLUMNS
from telemetry.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Forecast:
    """Quantile forecasts for the minutes ``times`` (starting at the origin minute)."""

    origin: pd.Timestamp
    times: pd.DatetimeIndex
    quantiles: tuple[float, ...]
    #: [H, len(TARGETS), len(quantiles)] in original units, quantiles non-decreasing.
    values: np.ndarray
    model_version: str

    def target(self, name: str) -> np.ndarray:
        """[H, Q] for one target."""
        return self.values[:, TARGETS.index(name), :]

    def median(self, name: str) -> np.ndarray:
        return self.target(name)[:, median_index(self.quantiles)]


def session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # On a 2-core box onnxruntime's default thread pools multiply tail latency under load.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def cpu_session(path: Path, threads: int):
    """An onnxruntime session of the ONNX file ``path`` on the CPU, with :func:`session_options`."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])


class OnnxForecaster:
    """One loaded registry version. Stateless after construction, safe to share between threads."""

    def __init__(self, models_dir: Path, version: str, settings: Settings):
        self.card = registry.read_card(models_dir, version)
        self.version = version
        # Health derived from forecast streams is scored from the streams the model was trained on.
        self.settings = dataclasses.replace(settings, streams=tuple(self.card.streams)) if tuple(self.card.streams) != settings.streams else settings
        self.scaling = Scaling.from_dict(self.card.scaling)
        self.quantiles = tuple(self.card.quantiles)
        self.health_offsets = calibration.from_card(self.card.calibration)
        path = registry.model_path(models_dir, version)
        try:
            self.session = cpu_session(path, settings.onnx_threads)
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
            raise registry.RegistryError(f"cannot load {path}: {exc}") from exc
        self._input = self.card.onnx.get("input", INPUT)
        self._output = self.card.onnx.get("output", OUTPUT)

    @property
    def input_minutes(self) -> int:
        return self.card.input_minutes

    @property
    def horizon_minutes(self) -> int:
        return self.card.horizon_minutes

    @property
    def step_minutes(self) -> int:
        return self.card.step_minutes

    @property
    def input_steps(self) -> int:
        return self.card.input_steps

    @property
    def horizon_steps(self) -> int:
        return self.card.horizon_steps

    @property
    def lookback_minutes(self) -> int:
        """Minutes of history before an origin that one forecast reads (:func:`forecasting.windows.lookback_minutes`)."""
        return lookback_minutes(self.input_minutes, self.step_minutes)

    def predict_scaled(self, windows: np.ndarray) -> np.ndarray:
        """[B, L, F] -> [B, H, T, Q] scaled, straight from the network."""
        return self.session.run([self._output], {self._input: windows.astype(np.float32, copy=False)})[0]

    def to_original(self, scaled: np.ndarray) -> np.ndarray:
        """[B, H, T, Q] scaled -> original units, bounded, quantiles sorted, health per the card (source, calibration)."""
        return to_original(scaled, self.scaling, self.card.health_source, self.settings, self.health_offsets,
                           self.card.flag_spread)

    @property
    def kind(self) -> str:
        return self.card.kind

    def forecast_batch(self, frame: pd.DataFrame, origins: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """``[N, H, T, Q]`` original units from the input windows before many ``origins`` (row positions) of one frame.

        The same inputs as :meth:`forecast` at each origin: the features are computed over the whole
        frame, but each row depends only on earlier minutes (forward fill, fixed scaling), and each
        window holds only the ``input_minutes`` before its origin. Every origin needs that many rows before it.
        """
        origins = np.asarray(origins, dtype=int)
        L = self.input_steps
        if len(origins) and origins.min() < L:
            raise ValueError(f"model {self.version} needs {L} steps of input before each origin")
        features = feature_matrix(frame, self.scaling)
        offsets = np.arange(-L, 0)
        chunks = [self.to_original(self.predict_scaled(features[origins[i : i + batch_size, None] + offsets[None, :]]))
                  for i in range(0, len(origins), batch_size)]
        shape = (0, self.horizon_steps, len(self.card.targets), len(self.quantiles))
        return np.concatenate(chunks) if chunks else np.empty(shape)

    def forecast_many(self, requests: list[tuple[pd.DataFrame, pd.Timestamp]]) -> list[Forecast]:
        """One horizon's forecast for each ``(frame, origin)`` (of different services), in ONE network run.

        Each equals :meth:`forecast` ``(frame, origin)``: the same input window per request, stacked on the
        batch axis (the network and :func:`to_original` treat every batch row on its own).
        """
        if not requests:
            return []
        origins = [pd.Timestamp(origin).floor(f"{self.step_minutes}min") for _, origin in requests]
        windows = np.concatenate([window_at(frame, origin, self.scaling, self.input_steps, self.step_minutes)
                                  for (frame, _), origin in zip(requests, origins)])
        values = self.to_original(self.predict_scaled(windows))
        freq = f"{self.step_minutes}min"
        return [Forecast(origin, pd.date_range(origin, periods=self.horizon_steps, freq=freq), self.quantiles,
                         values[i, : self.horizon_steps], self.version)
                for i, origin in enumerate(origins)]

    def forecast(self, frame: pd.DataFrame, origin: pd.Timestamp, steps: int | None = None) -> Forecast:
        """Forecast ``steps`` frame steps (default: the model's horizon) from the input window of ``frame`` before ``origin``.

        Beyond the model's own horizon, the forecast is rolled forward: the median path is
        appended as if observed and the model is run again from the end of what it has. Bands
        of rolled steps are conditional on that median path, so they are narrower than the truth.
        """
        horizon = steps or self.horizon_steps
        step = pd.Timedelta(minutes=self.step_minutes)
        origin = pd.Timestamp(origin).floor(f"{self.step_minutes}min")
        history = frame.copy()
        chunks: list[np.ndarray] = []
        step_origin = origin
        produced = 0
        while produced < horizon:
            x = window_at(history, step_origin, self.scaling, self.input_steps, self.step_minutes)
            chunk = self.to_original(self.predict_scaled(x))[0]
            chunks.append(chunk)
            produced += len(chunk)
            if produced < horizon:
                history = _append_median(history, chunk, step_origin, self.quantiles, self.step_minutes)
                step_origin += len(chunk) * step
        values = np.concatenate(chunks)[:horizon]
        times = pd.date_range(origin, periods=horizon, freq=f"{self.step_minutes}min")
        return Forecast(origin, times, self.quantiles, values, self.version)


def to_original(
    scaled: np.ndarray,
    scaling: Scaling,
    health_source: str,
    settings: Settings,
    health_offsets: np.ndarray | None = None,
    spread: Mapping[str, float] | None = None,
) -> np.ndarray:
    """[B, H, T, Q] scaled -> original units, bounded, quantiles sorted, health per ``health_source`` ("direct": the
    network's; "derived": scored from the streams with the samples' ``spread``, :mod:`forecasting.flag_spread`; "mean":
    the two averaged), each calibrated by ``health_offsets`` [H, Q] (:mod:`forecasting.calibration`; None: as the
    network says).

    A function (not only a method) so the trainer scores a candidate exactly as serving will run it.
    """
    values = scaling.inverse(scaled, axis=2)
    for i, name in enumerate(TARGETS):
        lo, hi = BOUNDS[name]
        values[:, :, i, :] = np.clip(values[:, :, i, :], lo, hi)
    values = np.sort(values, axis=-1)  # quantiles never cross
    direct = calibration.apply(values[:, :, HEALTH, :], health_offsets, BOUNDS["health"])
    derived = None
    if health_source != "direct":
        derived = calibration.apply(derive_health(values, settings, spread), health_offsets, BOUNDS["health"])
    values[:, :, HEALTH, :] = source_health(health_source, direct, derived)
    return values


def source_health(health_source: str, direct: np.ndarray, derived: np.ndarray | None) -> np.ndarray:
    """The health quantiles ``health_source`` serves, from the (calibrated) direct and derived ones: "derived" the
    latter, "mean" their average, anything else the direct one. Serving and the trainer's scoring both read it here."""
    if health_source == "derived":
        return derived
    return (direct + derived) / 2 if health_source == "mean" else direct


def _append_median(
    history: pd.DataFrame, chunk: np.ndarray, origin: pd.Timestamp, quantiles: tuple[float, ...], step_minutes: int
) -> pd.DataFrame:
    mid = median_index(quantiles)
    times = pd.date_range(origin, periods=len(chunk), freq=f"{step_minutes}min")
    future = pd.DataFrame(chunk[:, :, mid], index=times, columns=list(TARGETS))
    kept = history[history.index < origin]
    return pd.concat([kept, future.reindex(columns=history.columns)])


def derive_health(values: np.ndarray, settings: Settings, spread: Mapping[str, float] | None = None) -> np.ndarray:
    """Health quantiles scored from forecast streams: [B, H, T, Q] -> [B, H, Q].

    Flags rise with every stream, so health at quantile q is scored from the streams at
    quantile 1 - q (the pessimistic end of each stream gives the low end of health). A minute's
    flags are those of its samples spread by ``spread`` about the forecast value (per health input,
    fitted on the service's minutes: :mod:`forecasting.flag_spread`; none: the hard cuts).
    """
    columns = {name: values[:, :, TARGETS.index(name), :] for name in STREAM_COLUMNS}
    flags = flag_spread.flags(columns, settings, spread)
    return (1.0 - flags / settings.max_flag_sum)[..., ::-1]


def load_current(settings: Settings) -> OnnxForecaster | None:
    """The promoted model, or None on a fresh install."""
    version = registry.current_version(settings.models_dir)
    return OnnxForecaster(settings.models_dir, version, settings) if version else None
