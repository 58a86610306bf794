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

The model is the shipped base model zero-shot (what a service with an empty registry serves, ``base_models_dir``).
Torch-free: the model runs through onnxruntime.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting import registry
from forecasting.forecaster import OnnxForecaster
from forecasting.contract import HEALTH, median_index
from telemetry import simulator
from telemetry.app_family import AppProfile, IncidentSpec, app_settings, sample_profile, HELD_OUT_SEEDS
from telemetry.frames import cadence_for, minute_frame
from telemetry.settings import Settings

UTC = dt.timezone.utc
FIRST_DAY = dt.datetime(2026, 6, 1, tzinfo=UTC)


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


def leak_profiles(count: int) -> list[AppProfile]:
    """The first ``count`` held-out profiles that suffer leaks and expose memory."""
    out = []
    for seed in sorted(HELD_OUT_SEEDS):
        p = sample_profile(seed)
        if "memory" in p.streams and any(i.kind == "memory_leak" for i in p.incidents):
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


def expected_ttf_minutes(forecaster: OnnxForecaster, frame: pd.DataFrame, now: pd.Timestamp, threshold: float,
                         quantile: float = 0.5) -> float | None:
    """Serving's expected time to failure at ``now`` (serving/status.py, serving/eta.py): the forecast from the last
    scored minute up to ``now``, its P50 health's first minute at or below ``threshold`` (from the second step on),
    in minutes from ``now``; None: no failure within the horizon. ``quantile`` 0.1: the *earliest* (P10 path)."""
    observed = frame[(frame.index <= now) & frame["health"].notna()]
    minute = observed.index[-1]
    forecast = forecaster.forecast(frame[frame.index <= now], minute)
    index = median_index(forecaster.quantiles) if quantile == 0.5 else forecaster.quantiles.index(quantile)
    p50 = forecast.values[:, HEALTH, index]
    hits = np.flatnonzero(p50[1:] <= threshold)
    if not len(hits):
        return None
    at = forecast.times[int(hits[0]) + 1]
    return max(0.0, (at - now).total_seconds()) / 60.0


def check_profile(profile: AppProfile, settings: Settings, forecaster_for, config: LeakCheckConfig) -> dict[str, Any]:
    """One profile: at each lead, the expected time to failure with the leak and the state without it."""
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
    forecaster = forecaster_for(service)
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
        ttf = expected_ttf_minutes(forecaster, frame, now, service.failure_threshold)
        without = expected_ttf_minutes(forecaster, quiet, now, service.failure_threshold)
        earliest = expected_ttf_minutes(forecaster, frame, now, service.failure_threshold, quantile=0.1)
        within = ttf is not None and abs(ttf - lead) <= config.tolerance * lead
        leads.append({"lead_minutes": lead, "at": now.isoformat(), "expected_ttf_minutes": ttf,
                      "error_share": None if ttf is None else round((ttf - lead) / lead, 3), "within": bool(within),
                      "earliest_ttf_minutes": earliest,
                      "without_leak_ttf_minutes": without, "without_leak_no_failure": without is None})
    return {**row, "leads": leads}


def base_forecaster_for(settings: Settings):
    """The shipped base model (``base_models_dir``), zero-shot, for a service's settings."""
    base = Path(settings.base_models_dir)
    version = registry.current_or_newest(base)
    if version is None:
        raise ValueError(f"no base model in {base} (`pycemaker pretrain`)")
    return lambda service: OnnxForecaster(base, version, service), version


def run(settings: Settings, config: LeakCheckConfig) -> dict[str, Any]:
    """Every profile's check, and the summary: the share of (profile, lead) points within the tolerance, and of
    points where the app without the leak said no failure."""
    forecaster_for, version = base_forecaster_for(settings)
    profiles = [sample_profile(s) for s in config.seeds] if config.seeds else leak_profiles(config.profiles)
    rows = [check_profile(p, settings, forecaster_for, config) for p in profiles]
    points = [lead for r in rows for lead in r["leads"]]
    summary = {"model": version, "points": len(points), "within": sum(p["within"] for p in points),
               "no_failure_without_leak": sum(p["without_leak_no_failure"] for p in points)}
    for lead in config.leads:
        at = [p for p in points if p["lead_minutes"] == lead]
        summary[f"within_at_{lead}"] = f"{sum(p['within'] for p in at)}/{len(at)}"
    return {"config": config.to_dict(), "summary": summary, "apps": rows}


__all__ = ["LeakCheckConfig", "leak_profiles", "twins", "checked_leak", "expected_ttf_minutes", "check_profile", "run"]
