"""The leak check: does the served model time a leak's failure on an app it never saw, and keep quiet without it?

For a held-out member of the app family that suffers memory leaks (:func:`telemetry.app_family.held_out_profiles`'
seeds), two runs of the same app are simulated over the same four days, with the same seed:

- *with the leak*: the profile's incidents replaced by its leak alone, at a fixed speed (``leak_minutes`` from the
  leak's start to the crash) and its own curve (``strength``), about one a day; the last leak that starts after
  ``history_days`` of history is the one checked;
- *without*: the profile with no incidents at all.

At each of ``leads`` minutes before the leak's failure (the simulator's ground truth: the first minute the leak
fails health, or the crash), the model forecasts from the frame up to then, and its expected time to failure is
serving's (serving/eta.py): the first minute of the P50 health path at or below ``failure_threshold``, measured
from now. The check passes at a lead when that time is within +-``tolerance`` (50%) of the true lead. Without the
leak, at the same minutes, the state must be "no failure within the horizon" (no P50 crossing).

The model is the one the service would serve after ``history_days``: with ``train`` (a training run on a frame,
``training.pipeline.train_frame``, passed in by ``pycemaker evaluate-family``), the model a run on the leaky app's
history promotes (every kind competes, as ``pycemaker train --once`` runs them); without, the shipped base model
zero-shot (what a service with an empty registry serves, ``base_models_dir``). The base model's answer is recorded
beside the served one either way. Torch-free: the models run through onnxruntime (``train`` brings its own torch).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from forecasting import registry
from forecasting.forecaster import OnnxForecaster
from forecasting import exhaustion
from forecasting.contract import HEALTH, TARGETS, median_index
from telemetry import simulator
from telemetry.app_family import AppProfile, IncidentSpec, app_settings, sample_profile, HELD_OUT_SEEDS
from telemetry.frames import cadence_for, minute_frame
from telemetry.settings import Settings

UTC = dt.timezone.utc
FIRST_DAY = dt.datetime(2026, 6, 1, tzinfo=UTC)
#: ``train(frame, settings)``: one training run on ``frame`` into ``settings.models_dir``; returns its summary.
Train = Callable[[pd.DataFrame, Settings], dict[str, Any]]


@dataclass(frozen=True)
class LeakCheckConfig:
    #: Held-out seeds checked (each must have a leak among its incidents and a memory stream).
    seeds: tuple[int, ...] = ()
    #: How many held-out leak profiles when ``seeds`` is empty (the first ones, in seed order).
    profiles: int = 6
    history_days: float = 3.0
    leak_minutes: float = 120.0
    leads: tuple[int, ...] = (30, 20, 10)
    tolerance: float = 0.5
    run_seed: int = 3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def leaks_memory(profile: AppProfile) -> bool:
    """Whether ``profile`` suffers memory leaks and exposes memory (what the check can time)."""
    return "memory" in profile.streams and any(i.kind == "memory_leak" for i in profile.incidents)


def leak_profiles(count: int) -> list[AppProfile]:
    """The first ``count`` held-out profiles that suffer leaks and expose memory."""
    out = []
    for seed in sorted(HELD_OUT_SEEDS):
        p = sample_profile(seed)
        if leaks_memory(p):
            out.append(p)
        if len(out) == count:
            break
    return out


def twins(profile: AppProfile, leak_minutes: float) -> tuple[AppProfile, AppProfile]:
    """``profile`` with its leak alone (at ``leak_minutes`` to the crash, its own curve), and with no incident."""
    spec = next(i for i in profile.incidents if i.kind == "memory_leak")
    leaky = dataclasses.replace(profile, incidents=(IncidentSpec("memory_leak", 1.0, (leak_minutes, leak_minutes), spec.strength),))
    return leaky, dataclasses.replace(profile, incidents=())


def simulate(profile: AppProfile, settings: Settings, days: float, run_seed: int) -> tuple[pd.DataFrame, list[simulator.Incident]]:
    """``days`` of ``profile``'s app per minute (its own settings), and its incidents."""
    start = FIRST_DAY
    end = start + dt.timedelta(days=days)
    sim = simulator.simulate(start, end, seed=run_seed * 100_003 + (profile.seed or 0), settings=settings, profile=profile)
    service = app_settings(settings, profile)
    return minute_frame(sim.samples, start, end, service, cadence_for(None, service)), sim.incidents


def checked_leak(incidents: list[simulator.Incident], history_days: float) -> simulator.Incident | None:
    """The last leak that starts after the history and fails."""
    after = FIRST_DAY + dt.timedelta(days=history_days)
    leaks = [i for i in incidents if i.type == "memory_leak" and i.start >= after and i.failure_time is not None]
    return leaks[-1] if leaks else None


def time_to_failure(forecaster: OnnxForecaster, frame: pd.DataFrame, now: pd.Timestamp, settings: Settings,
                    trend_options: dict[str, float] | None = None) -> dict[str, Any]:
    """Serving's time to failure at ``now`` (serving/status.py, serving/eta.py), in minutes from ``now`` (None: no
    failure within the horizon): the forecast from the last scored minute up to ``now``; ``expected`` the earliest of
    the P50 health path's first minute at or below the threshold and the first minute at or after the memory floor's
    trend reaching ``memory_exhaustion`` (forecasting/exhaustion.py), ``cause`` which. Beside it, each rule alone:
    ``health`` (the rule before memory exhaustion), ``memory`` (the floor's trend) and ``model_memory`` (the model's
    own P50 memory path reaching the level: the other way, measured). ``trend_options``: other constants for the floor's
    trend (:func:`forecasting.exhaustion.memory_trend`), as bench/leak_rule_bench.py compares them."""
    observed = frame[(frame.index <= now) & frame["health"].notna()]
    minute = observed.index[-1]
    forecast = forecaster.forecast(frame[frame.index <= now], minute)
    times, mid = forecast.times, median_index(forecaster.quantiles)

    def minutes(index: int | None) -> float | None:
        return None if index is None else round(max(0.0, (times[index] - now).total_seconds()) / 60.0, 2)

    health = _first(forecast.values[:, HEALTH, mid] <= settings.failure_threshold)
    memory = model_memory = None
    level = settings.memory_exhaustion
    if level is not None and "memory" in settings.streams:
        reach = exhaustion.exhaustion_minutes(frame.loc[frame.index <= now, "memory"].to_numpy(), level,
                                              **(trend_options or {}))
        memory = None if reach is None else exhaustion.reach_index(times, now + pd.Timedelta(minutes=reach))
        model_memory = _first(forecast.values[:, TARGETS.index("memory"), mid] >= level)
    found = [(i, cause) for i, cause in ((health, "health"), (memory, "memory_exhaustion")) if i is not None]
    index, cause = min(found, key=lambda f: f[0]) if found else (None, None)
    return {"expected": minutes(index), "cause": cause, "health": minutes(health), "memory": minutes(memory),
            "model_memory": minutes(model_memory)}


def _first(fails: np.ndarray, start: int = 1) -> int | None:
    hits = np.flatnonzero(fails[start:])
    return int(start + hits[0]) if len(hits) else None


def expected_ttf_minutes(forecaster: OnnxForecaster, frame: pd.DataFrame, now: pd.Timestamp, settings: Settings) -> float | None:
    """Serving's expected time to failure at ``now`` in minutes (None: no failure within the horizon)."""
    return time_to_failure(forecaster, frame, now, settings)["expected"]


def served_model(frame: pd.DataFrame, service: Settings, config: LeakCheckConfig, train: Train,
                 models_dir: Path) -> tuple[OnnxForecaster, dict[str, Any]]:
    """The model a run on the first ``history_days`` of ``frame`` promotes (a registry of its own in ``models_dir``)."""
    service = dataclasses.replace(service, models_dir=models_dir)
    past = frame[frame.index < pd.Timestamp(FIRST_DAY + dt.timedelta(days=config.history_days))].copy()
    past.attrs = dict(frame.attrs)
    summary = train(past, service)
    version = summary.get("promoted") or summary.get("version")
    if not version:
        raise RuntimeError(f"the run on the leaky app's history promoted nothing: {summary.get('reason')}")
    kind = next((c["kind"] for c in summary.get("candidates", []) if c["version"] == version), None)
    return OnnxForecaster(models_dir, version, service), {"kind": kind, "version": version, "plan": summary.get("plan")}


def check_profile(profile: AppProfile, settings: Settings, forecaster_for, config: LeakCheckConfig,
                  train: Train | None = None) -> dict[str, Any]:
    """One profile: at each lead, the expected time to failure with the leak and the state without it, by the served
    model (:func:`served_model` with ``train``, else the base model zero-shot: ``forecaster_for``) and by the base model."""
    days = config.history_days + 1.0
    leaky, healthy = twins(profile, config.leak_minutes)
    frame, incidents = simulate(leaky, settings, days, config.run_seed)
    quiet, _ = simulate(healthy, settings, days, config.run_seed)
    leak = checked_leak(incidents, config.history_days)
    row: dict[str, Any] = {"profile": profile.name, "traffic": profile.traffic, "strength": leaky.incidents[0].strength,
                           "streams": list(profile.streams)}
    if leak is None:
        return {**row, "leak": None, "leads": []}
    service = app_settings(settings, profile)
    base = forecaster_for(service)
    with tempfile.TemporaryDirectory(prefix="pycemaker-leak-") as tmp:
        if train is None:
            served, row["served"] = base, {"kind": "base", "version": base.version, "zero_shot": True}
        else:
            served, row["served"] = served_model(frame, service, config, train, Path(tmp) / "models")
        row.update(_check_leads(frame, quiet, leak, service, served, base, config))
    return row


def _check_leads(frame: pd.DataFrame, quiet: pd.DataFrame, leak: simulator.Incident, service: Settings,
                 served: OnnxForecaster, base: OnnxForecaster, config: LeakCheckConfig) -> dict[str, Any]:
    row: dict[str, Any] = {}
    failure = pd.Timestamp(leak.failure_time)
    began, restart = pd.Timestamp(leak.start).floor("1min"), pd.Timestamp(leak.end)
    run_up = frame["health"][(frame.index >= began) & (frame.index < failure.floor("1min"))]
    down = frame["health"][(frame.index >= failure.floor("1min")) & (frame.index < restart)]
    row["leak"] = {"start": leak.start.isoformat(), "failure_time": leak.failure_time.isoformat(),
                   "run_up_minutes": round((failure - pd.Timestamp(leak.start)).total_seconds() / 60, 1),
                   # What health shows of it: its lowest in the run-up, and the minutes from the failure to the restart
                   # with those that fail by the warning rule (health at or below the threshold, or no data).
                   "run_up_min_health": None if run_up.dropna().empty else round(float(run_up.min()), 3),
                   "failure_minutes": int(len(down)),
                   "failing_minutes": int(((down <= service.failure_threshold) | down.isna()).sum())}
    leads = []
    for lead in config.leads:
        now = failure - pd.Timedelta(minutes=lead)
        if now < pd.Timestamp(leak.start):
            continue
        ttf = time_to_failure(served, frame, now, service)
        without = time_to_failure(served, quiet, now, service)
        zero_shot = ttf if base is served else time_to_failure(base, frame, now, service)
        expected = ttf["expected"]
        leads.append({"lead_minutes": lead, "at": now.isoformat(), "expected_ttf_minutes": expected, "cause": ttf["cause"],
                      "error_share": None if expected is None else round((expected - lead) / lead, 3),
                      "within": within(expected, lead, config),
                      "health_ttf_minutes": ttf["health"], "memory_ttf_minutes": ttf["memory"],
                      "model_memory_ttf_minutes": ttf["model_memory"],
                      "base_zero_shot_ttf_minutes": zero_shot["expected"], "base_zero_shot_cause": zero_shot["cause"],
                      "without_leak_ttf_minutes": without["expected"], "without_leak_cause": without["cause"],
                      "without_leak_no_failure": without["expected"] is None})
    return {**row, "leads": leads}


def base_forecaster_for(settings: Settings):
    """The shipped base model (``base_models_dir``), zero-shot, for a service's settings."""
    base = Path(settings.base_models_dir)
    version = registry.current_or_newest(base)
    if version is None:
        raise ValueError(f"no base model in {base} (`pycemaker pretrain`)")
    return lambda service: OnnxForecaster(base, version, service), version


def within(ttf: float | None, lead: float, config: LeakCheckConfig) -> bool:
    """Whether an expected time to failure is within the tolerance of the true lead."""
    return ttf is not None and abs(ttf - lead) <= config.tolerance * lead


def run(settings: Settings, config: LeakCheckConfig, train: Train | None = None) -> dict[str, Any]:
    """Every profile's check (the served model: a run's with ``train``, else the base model zero-shot), and the summary:
    the share of (profile, lead) points within the tolerance, and of points where the app without the leak said no
    failure."""
    forecaster_for, version = base_forecaster_for(settings)
    profiles = [sample_profile(s) for s in config.seeds] if config.seeds else leak_profiles(config.profiles)
    rows = [check_profile(p, settings, forecaster_for, config, train) for p in profiles]
    points = [lead for r in rows for lead in r["leads"]]
    summary = {"model": version, "served": "trained" if train is not None else "base_zero_shot",
               "memory_exhaustion": settings.memory_exhaustion, "points": len(points),
               "within": sum(p["within"] for p in points),
               "no_failure_without_leak": sum(p["without_leak_no_failure"] for p in points),
               # Each rule alone, on the same points: the P50 health crossing, the model's own P50 memory path.
               "within_by_health_alone": sum(within(p["health_ttf_minutes"], p["lead_minutes"], config) for p in points),
               "within_by_model_memory_alone": sum(within(p["model_memory_ttf_minutes"], p["lead_minutes"], config) for p in points),
               "within_by_base_zero_shot": sum(within(p["base_zero_shot_ttf_minutes"], p["lead_minutes"], config) for p in points)}
    for lead in config.leads:
        at = [p for p in points if p["lead_minutes"] == lead]
        summary[f"within_at_{lead}"] = f"{sum(p['within'] for p in at)}/{len(at)}"
    return {"config": config.to_dict(), "summary": summary, "apps": rows}


__all__ = ["LeakCheckConfig", "Train", "leaks_memory", "leak_profiles", "twins", "checked_leak", "time_to_failure", "expected_ttf_minutes",
           "served_model", "check_profile", "within", "run"]
