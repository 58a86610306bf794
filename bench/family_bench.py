"""The app family at a glance: one simulated day of each of the first profiles, what fails and how fast.

Writes bench/results/family.json and its figures block in docs/simulator.md.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np

from bench.docblock import replace_block
from telemetry import simulator
from telemetry.app_family import app_settings, sample_profile
from telemetry.frames import cadence_for
from telemetry.health import minute_health
from telemetry.settings import Settings

RESULTS = Path(__file__).parent / "results" / "family.json"
DOC = Path(__file__).resolve().parents[1] / "docs" / "simulator.md"
UTC = dt.timezone.utc


def main(profiles: int = 40, days: float = 1.0) -> dict:
    base = Settings()
    start = dt.datetime(2026, 5, 4, tzinfo=UTC)
    end = start + dt.timedelta(days=days)
    failing, seconds = [], []
    episodes, caused = collections.Counter(), collections.Counter()
    for seed in range(profiles):
        profile = sample_profile(seed)
        settings = app_settings(base, profile)
        began = time.perf_counter()
        sim = simulator.simulate(start, end, seed=1, settings=base, profile=profile)
        seconds.append(time.perf_counter() - began)
        health = minute_health(sim.samples, start, end, settings, tolerance_s=cadence_for(None, settings).tolerance_s)["health"]
        failing.append(float((health.dropna() <= settings.failure_threshold).mean()))
        for incident in sim.incidents:
            episodes[incident.type] += 1
            caused[incident.type] += incident.failure_time is not None
    shares = np.asarray(failing)
    result = {
        "what": f"profiles 0-{profiles - 1} of the app family, {days:g} simulated day each (run seed 1)",
        "failing_minute_share": {
            "min": round(float(shares.min()), 3), "median": round(float(np.median(shares)), 3),
            "max": round(float(shares.max()), 3), "profiles_below_1pct": int((shares < 0.01).sum()),
            "profiles_above_40pct": int((shares > 0.4).sum()),
        },
        "incidents": {k: {"episodes": episodes[k], "caused_a_failure": caused[k]} for k in sorted(episodes)},
        "simulate_seconds_per_day_median": round(float(np.median(seconds)) / days, 3),
        "measured_at": dt.datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    replace_block(DOC, "family", render(result))
    return result


def render(result: dict) -> str:
    """The docs/simulator.md figures ("The app family"), from a family.json."""
    share, incidents = result["failing_minute_share"], result["incidents"]
    caused = ", ".join(f"{v['caused_a_failure']} of {v['episodes']} `{k}`" for k, v in incidents.items())
    return (
        f"`bench/family_bench.py` ({result['what']}): the share of failing minutes has median "
        f"{100 * share['median']:.1f}% (min {100 * share['min']:.0f}%, max {100 * share['max']:.0f}%; "
        f"{share['profiles_below_1pct']} profiles below 1%, {share['profiles_above_40pct']} above 40%). "
        f"Episodes that caused a failure: {caused}. A simulated day takes about "
        f"{result['simulate_seconds_per_day_median']:.2f} s.\n"
    )


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
