"""The candidates of a training run: every kind fitted on the same frame, scored, exported and carded.

- :func:`run_data`: what every candidate shares: the plan (:func:`training.data.plan_run`), the
  scaling (fitted on the fit block only), the model inputs and the season (:mod:`forecasting.seasonality`).
- :func:`build_baseline`: a baseline of :mod:`forecasting.linear`, exported by ``training/linear_export.py``.
- :func:`build_lstm`: the Lightning LSTM (``training/fit.py``), calibrated on the validation windows and
  exported by ``training/export.py``.
- :func:`build_base`: the shipped base model (``pycemaker pretrain``) zero-shot, its band calibrated on this service.
- :func:`build_blend`: the base model zero-shot and damped ETS averaged in one graph, calibrated as the base model.
- :func:`build_finetuned`: the base model fine-tuned on this service's windows, then as the LSTM (on a short
  history, the network exported is the fine-tuning refitted on all of it).

Nothing here touches the registry: ``training/pipeline.py`` judges and registers.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting import calibration, flag_spread, linear, registry
from forecasting.contract import FEATURES, HEALTH, INPUT, OUTPUT, TARGETS
from forecasting.seasonality import Season, detect_season
from forecasting.windows import Scaling, feature_matrix, target_values
from telemetry.settings import Settings
from training import scoring
from training.data import NotEnoughData, RunPlan, frame_step_minutes, plan_run, steps
from training.export import ExportReport
from training.provenance import git_commit, package_versions

UTC = dt.timezone.utc
#: In-sample windows scored when there is no held-back block (evenly spaced).
IN_SAMPLE_WINDOWS = 2000


class RunStopped(RuntimeError):
    """The run was asked to stop (the trainer is shutting down) before it finished."""


@dataclass
class RunData:
    """What every candidate of a run is fitted and scored on."""

    frame: pd.DataFrame
    plan: RunPlan
    #: Minutes per row (a minute, or the data's own step for coarse data), and the as-of tolerance of its health.
    step_minutes: int
    tolerance_s: float
    #: [rows, T] targets in original units (NaN where missing), their scaling, scaled, and the model inputs [rows, F].
    values: np.ndarray
    scaling: Scaling
    targets_scaled: np.ndarray
    features: np.ndarray
    season: Season
    #: Per health input, the spread of a minute's samples (forecasting/flag_spread.py), fitted on the fit block:
    #: every candidate's derived health is scored with it, and its card keeps it.
    flag_spread: dict[str, float]
    #: A fleet run's services (the primary, whose frame this is, first), and the other services' frames: the LSTM is
    #: fitted on all of them and every candidate scored on each held-back block. Empty: a one-service run.
    services: tuple[str, ...] = ()
    pool: tuple[tuple[str, pd.DataFrame], ...] = ()

    def steps(self, minutes: int) -> int:
        """Whole rows in ``minutes`` (at least one)."""
        return steps(minutes, self.step_minutes)

    def data_range(self, input_steps: int) -> dict[str, Any]:
        """The minutes the blocks cover (ISO-8601 UTC), for the card."""
        index, plan, step = self.frame.index, self.plan, pd.Timedelta(minutes=self.step_minutes)
        out: dict[str, Any] = {
            "start": index[0].isoformat(), "end": (index[-1] + step).isoformat(),
            "minutes": int(len(index) * self.step_minutes), "plan": plan.name,
            "fit": {"start": index[0].isoformat(), "end": (index[plan.fit_end - 1] + step).isoformat()},
        }
        if len(plan.test):
            out["test"] = {"start": index[plan.test[0] - input_steps].isoformat(), "windows": int(len(plan.test))}
        return out


def run_data(frame: pd.DataFrame, settings: Settings, services: tuple[str, ...] = (),
             pool: tuple[tuple[str, pd.DataFrame], ...] = ()) -> RunData:
    step = frame_step_minutes(frame)
    plan = plan_run(len(frame), settings, step)
    values = target_values(frame)
    scaling = Scaling.fit(values[: plan.fit_end])
    gate = min(steps(settings.gate_horizon_minutes, step), steps(settings.horizon_minutes, step))
    season = detect_season(values[: plan.fit_end], cadence_minutes=step, horizon_steps=gate)
    cadence = frame.attrs.get("cadence")
    tolerance = cadence.tolerance_s if cadence is not None else settings.alignment_tolerance_s
    spread = flag_spread.fit(frame.iloc[: plan.fit_end], settings)
    return RunData(frame, plan, step, tolerance, values, scaling, scaling.transform(values), feature_matrix(frame, scaling), season,
                   spread, tuple(services), tuple(pool))


@dataclass
class Candidate:
    """A fitted, exported and carded model of one kind, not yet in the registry."""

    kind: str
    onnx_path: Path
    card: registry.ModelCard
    export: ExportReport
    #: Its forecasts on the held-back test windows (None: no held-back block) and on the windows it was
    #: fitted on (scored when nothing is held back).
    test: scoring.Validation | None
    in_sample: scoring.Validation | None = None
    #: The windows that chose its health source (and calibrated the LSTM's band).
    validation: scoring.Validation | None = None
    #: The LSTM's fit and its windows (training/fit.py, training/datamodule.py).
    fit: Any = None
    windows: Any = None

    @property
    def input_steps(self) -> int:
        return self.card.input_steps


#: The longest input window a baseline reads (its weights are [T, L, H] floats in the ONNX file).
MAX_BASELINE_INPUT = 1440


def baseline_input_steps(kind: str, data: RunData, settings: Settings) -> int:
    """A baseline's input window in rows: the settings' L, or more when the season needs it, at most the history.

    Seasonal naive needs one whole season; damped ETS estimates the seasonal profile from the window,
    so it reads up to four seasons (at most :data:`MAX_BASELINE_INPUT` minutes, and never less than one).
    """
    season = data.season.steps(data.step_minutes) or 0
    longest = data.steps(MAX_BASELINE_INPUT)
    seasons = 1 if kind == linear.SEASONAL_NAIVE else max(1, min(4, longest // season)) if season else 1
    return min(max(data.steps(settings.input_minutes), season * seasons), data.plan.rows)


def _windows(features: np.ndarray, origins: np.ndarray, input_minutes: int) -> np.ndarray:
    return features[origins[:, None] + np.arange(-input_minutes, 0)[None, :]]


def in_sample_origins(data: RunData, input_minutes: int) -> np.ndarray:
    origins = np.arange(input_minutes, data.plan.fit_end)
    if len(origins) > IN_SAMPLE_WINDOWS:
        origins = origins[np.linspace(0, len(origins) - 1, IN_SAMPLE_WINDOWS).round().astype(int)]
    return origins


def _fit_baseline(kind: str, data: RunData, settings: Settings, L: int, H: int, features: np.ndarray,
                 targets_scaled: np.ndarray) -> linear.LinearModel:
    """A baseline of ``kind`` reading ``L`` rows, fitted on the fit block of ``features`` and ``targets_scaled`` (the run's
    scaling, or another's: the blend's ETS is fitted in the base model's), with the run's season when it fits in ``L``."""
    season = data.season.steps(data.step_minutes)
    return linear.fit_linear(kind, features, targets_scaled, data.plan.fit_end, L, H,
                             season if season and season <= L else None, tuple(settings.quantiles))


def _parity_origins(data: RunData, L: int) -> np.ndarray:
    """The origins an export's parity is measured on: up to 512 held-back ones, else the frame's end."""
    held_back = data.plan.test[data.plan.test >= L]
    return held_back[:512] if len(held_back) else np.array([data.plan.rows])


def build_baseline(kind: str, data: RunData, settings: Settings, workdir: Path, *, scored_by_caller: bool = False) -> Candidate:
    """Fit, choose the health source, score, export and card a baseline of ``kind`` (forecasting/linear.py).

    ``scored_by_caller``: a service's own baseline in a fleet run (training/pipeline.py ``_own_baselines``), which the
    per-service choice scores on the service's held-back block through its exported model: only the validation
    block's choice of health source is computed here (the in-sample windows too when there is no validation block),
    not the held-back scores (``test`` None) nor the in-sample ones, which nothing reads then (most of a fleet
    run's per-service time was these validations).
    """
    from training.linear_export import export_linear

    began = time.perf_counter()
    L, H, quantiles = baseline_input_steps(kind, data, settings), data.steps(settings.horizon_minutes), tuple(settings.quantiles)
    model = _fit_baseline(kind, data, settings, L, H, data.features, data.targets_scaled)

    def validate(origins: np.ndarray, source: str | None = None) -> scoring.Validation | None:
        origins = origins[origins >= L]
        if not len(origins):
            return None
        scaled = model.predict_scaled(_windows(data.features, origins, L))
        return scoring.validate(scaled, data.values, origins, data.scaling, quantiles, L, settings, health_source=source,
                                flag_spread=data.flag_spread)

    # Seasonal naive forecasts health by its value a season back, as the textbook's does: the reference the goals'
    # MASE is set against (docs/model.md). Health derived from its streams would be another forecaster.
    fixed = "direct" if kind == "seasonal_naive" else None
    chooser, in_sample = validate(data.plan.validation, fixed), None
    if chooser is None or not scored_by_caller:
        in_sample = validate(in_sample_origins(data, L), fixed)
        chooser = chooser or in_sample
    source = chooser.health_source if chooser is not None else "direct"
    test = None if scored_by_caller else validate(data.plan.test, source)
    if in_sample is not None and in_sample.health_source != source:
        in_sample = validate(in_sample.origins, source)
    onnx_path = workdir / f"{kind}.onnx"
    report = export_linear(model, onnx_path, _windows(data.features, _parity_origins(data, L), L), threads=settings.onnx_threads)
    card = _card(
        kind, settings, data, L, H, source, {},
        metrics={**(chooser.metrics if chooser is not None else {}), "test": test.metrics if test is not None else {},
                 "season": data.season.to_dict()},
        training={"seconds": round(time.perf_counter() - began, 2), "fit": model.params, "season_steps": model.season_steps,
                  **({"services": list(data.services[:1])} if data.services else {})},
        onnx=report.to_dict(),
    )
    return Candidate(kind, onnx_path, card, report, test, in_sample, chooser)


def build_lstm(
    data: RunData,
    settings: Settings,
    config,
    workdir: Path,
    *,
    progress_bar: bool = True,
    stop: threading.Event | None = None,
) -> Candidate:
    """Fit the LSTM on the plan's blocks, calibrate its health band on the validation windows, score, export and card it."""
    began = time.perf_counter()
    windows = lstm_windows(data, settings, config)
    windows.setup("fit")
    pooled = [data.services[0]] + [data.pool[i - 1][0] for i in windows.used[1:]] if data.pool else list(data.services)
    fitted = _fit(windows, settings, config, progress_bar, stop, "fitting")
    return _learned("lstm", fitted, windows, data, settings, config, workdir, began, {"services": pooled} if pooled else None)


def build_base(data: RunData, settings: Settings, workdir: Path) -> Candidate:
    """The shipped base model zero-shot (``Settings.base_models_dir``): its ONNX graph as it is, its health band
    calibrated split-conformally on this service's fit block, scored on the same windows as every candidate."""
    began = time.perf_counter()
    base_dir, version, runner = _base_runner(data, settings)
    base_card = runner.card
    scored = _zero_shot_scores(runner.predict_scaled, base_card.input_steps, runner.scaling,
                               feature_matrix(data.frame, runner.scaling), data, settings, base_card)
    onnx = {**base_card.onnx, "copied_from": f"{base_dir.name}/{version}"}
    report = ExportReport(int(onnx.get("opset", 0)), float(onnx.get("parity_max_abs_diff", float("nan"))),
                          int(onnx.get("parity_windows", 0)), int(onnx.get("size_bytes", 0)), str(onnx.get("exporter", "")))
    card = _card(
        "base", settings, data, base_card.input_steps, base_card.horizon_steps, scored.source, scored.calibration,
        metrics={**scored.metrics, "pretrained_calibration": base_card.calibration},
        training={"seconds": round(time.perf_counter() - began, 2), **_base_training(base_card, data)},
        onnx=onnx, scaling=runner.scaling,
    )
    return Candidate("base", registry.model_path(base_dir, version), card, report, scored.test, scored.in_sample, scored.chooser)


def build_blend(data: RunData, settings: Settings, workdir: Path) -> Candidate:
    """The base model zero-shot and damped ETS, averaged (``training/blend_export.py``): the ETS fitted on this
    service's fit block in the base model's scaling, so that one graph averages the two forecasts; the pair's health
    band calibrated and its health source (the members' health forecasts averaged, or health scored from their averaged
    streams) chosen as the base model's (:func:`build_base`).

    The base model knows what apps have in common and nothing of this service's level and day; ETS the reverse. On
    apps pretraining never saw, their mean forecasts better than either with a day of history (docs/model.md)."""
    from forecasting.forecaster import cpu_session
    from training.blend_export import export_blend
    from training.linear_export import export_linear

    began = time.perf_counter()
    base_dir, version, runner = _base_runner(data, settings)
    base_card, scaling = runner.card, runner.scaling
    H = base_card.horizon_steps
    ets_steps = baseline_input_steps(linear.ETS, data, settings)
    features = feature_matrix(data.frame, scaling)
    ets = _fit_baseline(linear.ETS, data, settings, ets_steps, H, features, scaling.transform(data.values))
    L = max(ets_steps, base_card.input_steps)
    origins = _parity_origins(data, L)
    ets_path, onnx_path = workdir / "blend-ets.onnx", workdir / "blend.onnx"
    export_linear(ets, ets_path, _windows(features, origins, ets_steps), threads=settings.onnx_threads)
    report = export_blend([registry.model_path(base_dir, version), ets_path], onnx_path,
                          _windows(features, origins, L), threads=settings.onnx_threads)
    session = cpu_session(onnx_path, settings.onnx_threads)

    def predict_scaled(windows: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT], {INPUT: windows.astype(np.float32, copy=False)})[0]

    scored = _zero_shot_scores(predict_scaled, L, scaling, features, data, settings, base_card)
    card = _card(
        "blend", settings, data, L, H, scored.source, scored.calibration, metrics=scored.metrics,
        training={"seconds": round(time.perf_counter() - began, 2), "members": ["base", linear.ETS],
                  "ets": {"input_steps": ets_steps, "fit": ets.params, "season_steps": ets.season_steps},
                  **_base_training(base_card, data)},
        onnx=report.to_dict(), scaling=scaling,
    )
    return Candidate("blend", onnx_path, card, report, scored.test, scored.in_sample, scored.chooser)


def _base_runner(data: RunData, settings: Settings):
    """The shipped base model's directory, version and onnxruntime runner; CandidateSkipped when it does not apply."""
    from forecasting.forecaster import OnnxForecaster

    base_dir = Path(settings.base_models_dir)
    version = _base_version(base_dir)
    runner = OnnxForecaster(base_dir, version, settings)
    _check_base_applies(runner.card, data, settings)
    return base_dir, version, runner


def _base_training(base_card: registry.ModelCard, data: RunData) -> dict[str, Any]:
    """What a card built on the base model zero-shot says of it."""
    return {"zero_shot": True, "base_version": base_card.version,
            **({"services": list(data.services[:1])} if data.services else {}),
            "pretrain": base_card.training.get("pretrain"), "network": base_card.training.get("network")}


@dataclass
class _ZeroShotScores:
    chooser: scoring.Validation | None
    test: scoring.Validation | None
    in_sample: scoring.Validation | None
    source: str
    calibration: dict

    @property
    def metrics(self) -> dict[str, Any]:
        chosen = self.chooser.metrics if self.chooser is not None else {}
        return {**chosen, "test": self.test.metrics if self.test is not None else {}}


def _zero_shot_scores(predict_scaled, L: int, scaling: Scaling, features: np.ndarray, data: RunData, settings: Settings,
                      base_card: registry.ModelCard) -> _ZeroShotScores:
    """The base model, alone or blended (``predict_scaled``: [B, L, F] -> [B, H, T, Q] in ``scaling``, reading windows of
    ``features``, the frame's inputs in that scaling), its band calibrated
    split-conformally on the service's minutes before the test block (the validation windows, else the fit block's),
    scored on the test windows (else in-sample); with nothing to calibrate on, the base model's own band and source."""
    quantiles = tuple(settings.quantiles)

    def validate(origins: np.ndarray, source: str | None = None, offsets: np.ndarray | None = None) -> scoring.Validation | None:
        origins = origins[origins >= L]
        if not len(origins):
            return None
        scaled = np.concatenate([predict_scaled(_windows(features, origins[i : i + 512], L))
                                 for i in range(0, len(origins), 512)])
        return scoring.validate(scaled, data.values, origins, scaling, quantiles, L, settings,
                                health_source=source, health_offsets=offsets, flag_spread=data.flag_spread)

    calibrating = data.plan.validation if len(data.plan.validation) else in_sample_origins(data, L)
    raw = validate(calibrating)
    offsets, entry, chooser = calibration.from_card(base_card.calibration), dict(base_card.calibration), None
    if raw is not None:
        offsets = calibration.conformal_offsets(raw.health(), raw.actual[:, :, HEALTH], quantiles)
        entry = calibration.to_card(offsets, len(raw.origins))
        chooser = validate(calibrating, raw.health_source, offsets)
    source = chooser.health_source if chooser is not None else base_card.health_source
    test = validate(data.plan.test, source, offsets)
    in_sample = None if test is not None else validate(in_sample_origins(data, L), source, offsets)
    return _ZeroShotScores(chooser, test, in_sample, source, entry)


def build_finetuned(
    data: RunData,
    settings: Settings,
    config,
    workdir: Path,
    *,
    progress_bar: bool = True,
    stop: threading.Event | None = None,
) -> Candidate:
    """The base model fine-tuned on this service's windows (its weights, its scaling; at most
    ``Settings.finetune_epochs`` epochs), then calibrated, scored and exported like the LSTM; on a short plan the
    network exported is the same fine-tuning refitted on the whole history (``Settings.finetune_refit``)."""
    from training.data import refit_window_data, window_data
    from training.pretrain import load_base_dir

    began = time.perf_counter()
    if config.distributed:  # the other processes of a DDP run fit the LSTM alone (training/pipeline.py)
        raise CandidateSkipped("fine-tuning runs on one device; this run is distributed (DDP)")
    base = load_base_dir(Path(settings.base_models_dir))
    if base is None:
        raise _no_base(Path(settings.base_models_dir))
    _check_base_applies(base.card, data, settings, same_window=True)
    net = base.card.training["network"]
    tuned = replace(config, hidden_size=net["hidden_size"], num_layers=net["num_layers"], n_harmonics=net["n_harmonics"],
                    level_sources=net.get("level_sources", False),
                    health_weight=net["health_weight"], learning_rate=FINETUNE_LEARNING_RATE,
                    max_epochs=max(1, min(config.max_epochs, settings.finetune_epochs)), patience=min(config.patience, 2))
    try:  # a short history fine-tunes on its fit block's windows (training/data.py, short_finetune_parts)
        windows = window_data(data.frame, settings, tuned, scaling=Scaling.from_dict(base.card.scaling), plan=data.plan)
    except NotEnoughData as exc:
        raise CandidateSkipped(str(exc)) from exc
    windows.setup("fit")
    fitted = _fit(windows, settings, tuned, progress_bar, stop, "fine-tuning",
                  network=base.network_factory(), initial_state=base.network().state_dict())

    def refit():
        """On a short plan, the same fine-tuning on every window of the history for the epochs the selected one kept:
        the most recent hours (the validation and held-back blocks, half of a one-day history) shape the weights too.
        Not on a full plan (the family evaluation measured no gain there, at up to a fit budget's more time)."""
        if not settings.finetune_refit or data.plan.lstm or fitted.best_epoch < 0:
            return None  # a full plan, or the base weights were kept: nothing to refit
        every = refit_window_data(windows, tuned)
        return every, _fit(every, settings, tuned, progress_bar, stop, "refitting", network=base.network_factory(),
                           initial_state=base.network().state_dict(), epochs=fitted.best_epoch + 1)

    return _learned("finetuned", fitted, windows, data, settings, tuned, workdir, began,
                    {"base_version": base.card.version, **({"services": list(data.services[:1])} if data.services else {})},
                    refit=refit)


def _fit(windows, settings: Settings, config, progress_bar: bool, stop: threading.Event | None, doing: str, **network):
    """Fit a network on ``windows`` (``network``: fit()'s network and initial_state), ending early when ``stop`` is set;
    a stopped fit raises :class:`RunStopped`."""
    from training.fit import StopWhenSet, fit

    extra = [StopWhenSet(stop)] if stop is not None else []
    fitted = fit(windows, tuple(settings.quantiles), config, progress_bar=progress_bar, callbacks=extra, **network)
    if stop is not None and stop.is_set():
        raise RunStopped(f"stopped while {doing}")
    return fitted


#: Fine-tuning steps more gently than a fit from scratch (FitConfig.learning_rate): the base weights are a good start.
FINETUNE_LEARNING_RATE = 1e-3


class CandidateSkipped(RuntimeError):
    """A kind that does not apply to this run (no base model, other steps): recorded as skipped, never a failure."""


def _base_version(base_dir: Path) -> str:
    version = registry.current_or_newest(base_dir)
    if version is None:
        raise _no_base(base_dir)
    return version


def _no_base(base_dir: Path) -> CandidateSkipped:
    return CandidateSkipped(f"no base model in {base_dir} (base_models_dir; `pycemaker pretrain` builds one)")


def _check_base_applies(card: registry.ModelCard, data: RunData, settings: Settings, same_window: bool = False) -> None:
    """CandidateSkipped unless the base model reads and writes this run's inputs (a stream subset is fine: masked)."""
    if list(card.features) != list(FEATURES) or list(card.targets) != list(TARGETS):
        raise CandidateSkipped("the base model's card lists other input features or targets than this trainer builds")
    if card.step_minutes != data.step_minutes:
        raise CandidateSkipped(f"the base model forecasts {card.step_minutes}-minute steps; this data has "
                               f"{data.step_minutes}-minute steps")
    if tuple(card.quantiles) != tuple(settings.quantiles):
        raise CandidateSkipped(f"the base model's quantiles {card.quantiles} are not the settings' {list(settings.quantiles)}")
    if same_window and (card.input_minutes, card.horizon_minutes) != (settings.input_minutes, settings.horizon_minutes):
        raise CandidateSkipped(f"the base model reads {card.input_minutes} and forecasts {card.horizon_minutes} minutes; "
                               f"the settings ask {settings.input_minutes} and {settings.horizon_minutes}")


def _learned(kind: str, fitted, windows, data: RunData, settings: Settings, config, workdir: Path, began: float,
             extra_training: dict | None = None, refit=None) -> Candidate:
    """A fitted network (the LSTM, the fine-tuned base): health band calibrated on the validation windows, scored on the
    test windows, exported with its parity check and carded. ``refit``: called once scored; the fit it returns (if
    any, with its windows) is exported in place of ``fitted``; the card keeps ``fitted``'s scores and offsets and
    records the refit (``training.refit``)."""
    import torch

    from training.export import export_and_verify

    def predict(part) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([fitted.model(torch.from_numpy(part.inputs[i : i + 512])) for i in range(0, len(part), 512)]).numpy()

    def validate(scaled, part, source=None, offsets=None, values=None) -> scoring.Validation:
        return scoring.validate(scaled, windows.values if values is None else values, part.origins, windows.scaling,
                                tuple(settings.quantiles), windows.input_minutes, settings, health_source=source,
                                health_offsets=offsets, flag_spread=data.flag_spread)

    # Validation chooses the health source and calibrates the health quantiles on its residuals ...
    val_scaled, test_scaled = predict(windows.validation), predict(windows.test)
    raw = validate(val_scaled, windows.validation, values=windows.validation_values)
    offsets = calibration.conformal_offsets(raw.health(), raw.actual[:, :, HEALTH], settings.quantiles)
    validation = validate(val_scaled, windows.validation, raw.health_source, offsets, values=windows.validation_values)
    # ... and the held-back test windows, where no choice was made, judge it (training/selection.py).
    test = validate(test_scaled, windows.test, raw.health_source, offsets)
    refit_windows, refitted = (refit() if refit is not None else None) or (None, None)
    scored = time.perf_counter()
    onnx_path = workdir / f"{kind}.onnx"
    report = export_and_verify((refitted or fitted).model, onnx_path, windows.test.inputs, windows.horizon_minutes, len(TARGETS),
                               len(settings.quantiles), threads=settings.onnx_threads)
    card = _card(
        kind, settings, data, windows.input_minutes, windows.horizon_minutes, validation.health_source,
        calibration.to_card(offsets, len(windows.validation)),
        metrics={
            **validation.metrics,
            "uncalibrated": {"health_mae": raw.metrics["health_mae"]["model"], "health_band": raw.metrics["health_band"]},
            "val_pinball_loss": fitted.best_val_loss,
            "test": test.metrics,
        },
        training={
            "seconds": round(time.perf_counter() - began, 2),
            "fit_seconds": round(fitted.fit_seconds, 2),
            "export_seconds": round(time.perf_counter() - scored, 2),
            "epochs": fitted.epochs,
            "best_epoch": fitted.best_epoch,
            "stopped_by": fitted.stopped_by,
            "epoch_seconds_mean": round(fitted.mean_epoch_seconds, 3),
            "epoch_seconds": [round(s, 3) for s in fitted.epoch_seconds],
            "history": fitted.history,
            "train_windows": len(windows.train),
            **({"refit": {"epochs": refitted.epochs, "train_windows": len(refit_windows.train),
                          "fit_seconds": round(refitted.fit_seconds, 2), "stopped_by": refitted.stopped_by}}
               if refitted is not None else {}),
            "device": fitted.device,
            "world_size": fitted.world_size,
            "precision": fitted.precision,
            "config": config.to_dict(),
            **(extra_training or {}),
        },
        onnx=report.to_dict(),
        scaling=windows.scaling,
    )
    return Candidate(kind, onnx_path, card, report, test, validation=validation, fit=fitted, windows=windows)


def lstm_windows(data: RunData, settings: Settings, config):
    """The LSTM's data module: the frame's windows, or in a fleet run every service's pooled with one scaling
    (the served contract's: :class:`training.datamodule.PooledWindowDataModule`)."""
    from training.data import window_data
    from training.datamodule import PooledWindowDataModule

    if not data.pool:
        return window_data(data.frame, settings, config)
    return PooledWindowDataModule(
        [data.frame] + [frame for _, frame in data.pool], data.steps(settings.input_minutes), data.steps(settings.horizon_minutes),
        batch_size=config.batch_size, train_stride=config.train_stride, seed=config.seed,
        max_train_windows=config.max_train_windows)


def _card(kind: str, settings: Settings, data: RunData, input_steps: int, horizon_steps: int, health_source: str,
          calibration_entry: dict, *, metrics: dict, training: dict, onnx: dict, scaling: Scaling | None = None) -> registry.ModelCard:
    return registry.ModelCard(
        version=registry.new_version(suffix=f"{kind}-{secrets.token_hex(3)}"),
        created_at=dt.datetime.now(UTC).isoformat(timespec="seconds"),
        kind=kind,
        step_minutes=data.step_minutes,
        tolerance_s=data.tolerance_s,
        streams=list(settings.streams),
        input_minutes=input_steps * data.step_minutes,
        horizon_minutes=horizon_steps * data.step_minutes,
        quantiles=list(settings.quantiles),
        features=list(FEATURES),
        targets=list(TARGETS),
        scaling=(scaling or data.scaling).to_dict(),
        health_source=health_source,
        flag_spread=dict(data.flag_spread),
        data_range=data.data_range(input_steps),
        calibration=calibration_entry,
        metrics=metrics,
        training={**training, "git_commit": git_commit(), "packages": package_versions()},
        onnx=onnx,
    )


__all__ = ["RunData", "RunStopped", "CandidateSkipped", "Candidate", "run_data", "build_baseline", "build_lstm", "build_base",
           "build_blend", "build_finetuned", "baseline_input_steps", "in_sample_origins", "lstm_windows"]
