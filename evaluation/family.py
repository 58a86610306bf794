"""Apps pretraining never saw: zero-shot, fine-tuned, from scratch and the baselines on the day after the history.

For each held-out member of the app family (:func:`telemetry.app_family.held_out_profiles`: held-out
seeds, then the held-out corner) and each history length (1, 3, 7 days): the app is simulated for the
history plus one day; one training run (injected as ``train``: ``pycemaker evaluate-family`` passes
:func:`training.pipeline.train_frame`) sees the history only, into a registry of its own; then every
candidate of that run, and the one it promoted ("served"), forecasts every minute of the following day
through onnxruntime, as serving runs it. Per method:

- ``mase_60``: MAE of the P50 health over leads 1-60 min, divided by the run's seasonal naive's on the
  same points (below 1: better than repeating the last season);
- warnings (:mod:`forecasting.warnings`, the product's rule): failure episodes in the day warned at
  least ``min_lead_minutes`` ahead (share of those whose lead could be scored; every episode, the app's own
  threshold flapping included), incidents whose failure starts a new episode and those of them warned (the
  goal's measure; also the predictable ones), and false alarms per 24 healthy hours.

A kind the run did not fit (the LSTM needs its split of the history: not on one day) is ``null``
with the run's reason. Torch-free: the models are the registry's ONNX files.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from forecasting import exhaustion, metrics, registry
from forecasting.contract import HEALTH, median_index
from forecasting.forecaster import OnnxForecaster
from forecasting.warnings import TtfConfig
from forecasting.warnings import score as score_warnings
from forecasting.windows import target_values
from evaluation import leak_check
from evaluation.leak_check import Train
from telemetry import simulator
from telemetry.app_family import AppProfile, app_settings, held_out_profiles
from telemetry.frames import cadence_for, minute_frame
from telemetry.settings import Settings

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
#: The simulated histories start on a Monday (as pretraining's), shifted per app.
FIRST_DAY = dt.datetime(2026, 6, 1, tzinfo=UTC)
#: The columns, in order: the run's kinds, and the one it promoted.
METHODS = ("base", "blend", "finetuned", "lstm", "seasonal_naive", "ets", "served")
MASE_MINUTES = 60
#: What the run judged each candidate on (its held-back block), kept beside the next day's figures.
HELD_BACK_SCORES = ("windows", "health_rmse", "health_mae", "coverage", "warned", "false_alarms", "held_back")

@dataclass(frozen=True)
class FamilyEvalConfig:
    profiles: int = 8
    history_days: tuple[float, ...] = (1.0, 3.0, 7.0)
    #: Simulation run seed (which run of each app; pretraining used 1).
    run_seed: int = 3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def app_history(profile: AppProfile, history_days: float, settings: Settings, run_seed: int) -> tuple[pd.DataFrame, int, list[dict], Settings]:
    """History plus one day of ``profile``'s app, per minute with its own settings; the history's rows; the incidents."""
    service = app_settings(settings, profile)
    seed = profile.seed if profile.seed is not None else 0
    start = FIRST_DAY + dt.timedelta(hours=(seed * 7) % 168)
    end = start + dt.timedelta(days=history_days + 1)
    sim = simulator.simulate(start, end, seed=run_seed * 100_003 + seed, settings=settings, profile=profile)
    frame = minute_frame(sim.samples, start, end, service, cadence_for(None, service))
    return frame, int(round(history_days * 1440)), [i.document() for i in sim.incidents], service


def memory_exhaustion_steps(frame: pd.DataFrame, origins: np.ndarray, settings: Settings, horizon: int) -> np.ndarray:
    """Per origin, the first step of a forecast path (step 0: the origin's minute) at which memory is expected to reach
    ``memory_exhaustion``: the memory floor's trend over the minutes before the origin (forecasting/exhaustion.py, as
    the status reads it); ``horizon``: not within it, or the rule off, or no memory stream."""
    out = np.full(len(origins), horizon, dtype=int)
    if settings.memory_exhaustion is None or "memory" not in settings.streams or "memory" not in frame.columns:
        return out
    memory = frame["memory"].to_numpy(dtype=float)
    back = exhaustion.TREND_MINUTES + exhaustion.FLOOR_MINUTES
    for n, origin in enumerate(np.asarray(origins, dtype=int)):
        reach = exhaustion.exhaustion_minutes(memory[max(0, origin - back):origin], settings.memory_exhaustion)
        if reach is not None:
            out[n] = min(horizon, max(1, int(np.ceil(reach - 1e-9))))  # float noise is no extra minute
    return out


def score_day(forecast: np.ndarray, reference: np.ndarray | None, frame: pd.DataFrame, origins: np.ndarray,
              incidents: list[dict], quantiles: Sequence[float], settings: Settings,
              memory_steps: np.ndarray | None = None) -> dict[str, Any]:
    """One method's P50 health [N, H, Q] from every minute of the day: MASE against ``reference``'s, and its warnings.
    ``memory_steps`` (:func:`memory_exhaustion_steps`): a path fails from that step on too (memory exhaustion, as the
    status counts it); the MASE reads the health forecast alone."""
    values = target_values(frame)
    leads = min(MASE_MINUTES, forecast.shape[1])
    rows = origins[:, None] + np.arange(leads)[None, :]
    actual = np.where(rows < len(values), values[np.minimum(rows, len(values) - 1), HEALTH], np.nan)
    median = forecast[:, :leads, median_index(quantiles)]
    out: dict[str, Any] = {"windows": int(len(origins))}
    if reference is not None:
        mask = metrics.common_mask(actual, median, reference[:, :leads])
        mae, ref = metrics.mae(median, actual, mask), metrics.mae(reference[:, :leads], actual, mask)
        out.update(mae_60=mae, seasonal_naive_mae_60=ref, mase_60=mae / ref if ref > 0 else float("nan"))
    config = TtfConfig(**{**dataclasses.asdict(TtfConfig.from_settings(settings, 1)), "horizon_minutes": forecast.shape[1]})
    paths = forecast[:, :, median_index(quantiles)]
    if memory_steps is not None:
        paths = np.where(np.arange(paths.shape[1])[None, :] >= np.asarray(memory_steps)[:, None], 0.0, paths)
    result = score_warnings("family", frame.index, frame["health"].to_numpy(), incidents, origins, paths, config)
    scored = sum(e["scored"] for e in result.episodes.values())
    warned = sum(e["warned"] for e in result.episodes.values())
    # The goal's denominator: incidents whose failure starts a new episode (not the app flapping about the threshold
    # with no incident, a "scheduled" episode), and those of them that could be seen coming (forecasting/warnings.py).
    new = [i for i in result.incidents if i.kind == "new failure"]
    predictable = [i for i in new if i.predictable]
    out.update(new_failure_incidents=len(new), new_failure_warned=sum(i.warned for i in new),
               predictable_incidents=len(predictable), predictable_warned=sum(i.warned for i in predictable))
    out.update(episodes=int(scored), warned=int(warned), warned_share=warned / scored if scored else None,
               false_alarms=int(result.false_alarms), incident_alarms=int(result.incident_alarms),
               healthy_hours=round(float(result.healthy_hours), 2),
               false_alarms_per_24_healthy_hours=(result.false_alarms / (result.healthy_hours / 24.0)
                                                  if result.healthy_hours > 0 else None))
    return out


def evaluate_app(profile: AppProfile, history_days: float, settings: Settings, train: Train, run_seed: int) -> dict[str, Any]:
    """One unseen app with ``history_days`` of history: the run on the history, every method on the next day."""
    began = time.perf_counter()
    frame, history, incidents, service = app_history(profile, history_days, settings, run_seed)
    row: dict[str, Any] = {"profile": profile.name, "traffic": profile.traffic, "streams": list(profile.streams),
                           "incidents": sorted({i.kind for i in profile.incidents}), "history_days": history_days}
    with tempfile.TemporaryDirectory(prefix="pycemaker-family-") as tmp:
        service = dataclasses.replace(service, models_dir=Path(tmp) / "models")
        past = frame.iloc[:history].copy()
        past.attrs = dict(frame.attrs)
        summary = train(past, service)
        trained = time.perf_counter()
        versions = {c["kind"]: c["version"] for c in summary.get("candidates", [])}  # a fresh registry: all the run's
        versions["served"] = summary.get("promoted") or summary.get("version")
        row["run"] = {"plan": summary.get("plan"), "promoted_kind": next(
            (c["kind"] for c in summary.get("candidates", []) if c["version"] == versions["served"]), None),
            "skipped": {f["kind"]: f["error"] for f in summary.get("failed", [])}, "seconds": round(trained - began, 1),
            "held_back": {c["kind"]: {k: c["scores"].get(k) for k in HELD_BACK_SCORES}
                          for c in summary.get("candidates", []) if c.get("scores")}}
        runners = {m: OnnxForecaster(service.models_dir, versions[m], service) for m in METHODS if versions.get(m)}
        origins = np.arange(max([history] + [r.input_steps for r in runners.values()]), len(frame))
        health = {m: r.forecast_batch(frame, origins)[:, :, HEALTH, :] for m, r in runners.items()}
        naive = runners.get("seasonal_naive")
        reference = health["seasonal_naive"][:, :, median_index(naive.quantiles)] if naive is not None else None
        horizon = max((h.shape[1] for h in health.values()), default=0)
        steps = memory_exhaustion_steps(frame, origins, service, horizon)
        row["methods"] = {m: score_day(health[m], reference, frame, origins, incidents, runners[m].quantiles, service,
                                       np.minimum(steps, health[m].shape[1]))
                          if m in runners else None for m in METHODS}
    row["seconds"] = round(time.perf_counter() - began, 1)
    log.info("%s, %g day(s): run %s (served %s) in %.0f s", profile.name, history_days, row["run"]["plan"],
             row["run"]["promoted_kind"], row["seconds"])
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per history length and method: the median MASE over apps, and the warnings pooled over apps."""
    out: dict[str, Any] = {}
    for days in sorted({r["history_days"] for r in rows}):
        part = [r for r in rows if r["history_days"] == days]
        methods = {}
        for m in METHODS:
            scored = [r["methods"][m] for r in part if r["methods"].get(m)]
            if not scored:
                methods[m] = None
                continue
            mases = [s["mase_60"] for s in scored if s.get("mase_60") is not None and np.isfinite(s["mase_60"])]
            episodes, warned = sum(s["episodes"] for s in scored), sum(s["warned"] for s in scored)
            alarms, hours = sum(s["false_alarms"] for s in scored), sum(s["healthy_hours"] for s in scored)
            pooled = {k: sum(s.get(k, 0) for s in scored) for k in ("new_failure_incidents", "new_failure_warned",
                                                                      "predictable_incidents", "predictable_warned")}
            if not all("new_failure_incidents" in s for s in scored):  # a JSON from before these were counted
                pooled = {}
            methods[m] = {"apps": len(scored), "median_mase_60": float(np.median(mases)) if mases else None, **pooled,
                          "episodes": episodes, "warned": warned, "warned_share": warned / episodes if episodes else None,
                          "false_alarms_per_24_healthy_hours": alarms / (hours / 24.0) if hours > 0 else None}
        out[f"{days:g}"] = methods
    return out


def with_leak_check(settings: Settings, result: dict[str, Any], out: Path | None = None,
                    train: Train | None = None) -> dict[str, Any]:
    """``result`` with the leak check (:mod:`evaluation.leak_check`: the model ``train``'s run promotes, else the base
    model zero-shot) run and added as ``leak_check``; written to ``out``."""
    began = time.perf_counter()
    check = leak_check.run(settings, leak_check.LeakCheckConfig(), train)
    result = {**result, "leak_check": {**check, "seconds": round(time.perf_counter() - began, 1),
                                       "measured_at": dt.datetime.now(UTC).isoformat(timespec="seconds")}}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(registry.json_safe(result), indent=2) + "\n")
    return result


def run(settings: Settings, config: FamilyEvalConfig, train: Train, out: Path | None = None) -> dict[str, Any]:
    began = time.perf_counter()
    rows = [evaluate_app(p, days, settings, train, config.run_seed)
            for p in held_out_profiles(config.profiles) for days in config.history_days]
    result = {"what": "unseen app-family profiles: every kind of a run on 1/3/7 days of history, scored on the next day "
                      "(60-min health MASE vs the run's seasonal naive; warnings >= min_lead ahead, false alarms)",
              "config": config.to_dict(), "summary": summarise(rows), "apps": rows,
              "seconds": round(time.perf_counter() - began, 1),
              "measured_at": dt.datetime.now(UTC).isoformat(timespec="seconds")}
    result = with_leak_check(settings, result, train=train)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(registry.json_safe(result), indent=2) + "\n")
    return result


__all__ = ["FamilyEvalConfig", "METHODS", "app_history", "evaluate_app", "run", "score_day", "summarise", "with_leak_check"]
