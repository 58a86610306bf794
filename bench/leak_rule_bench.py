"""How the memory-exhaustion rule's constants were chosen: on pretraining members of the app family, never the held-out.

The leak check (evaluation/leak_check.py, docs/evaluation-family.md) reports the served time to failure on held-out
apps; choosing the rule's constants there would fit the report. This runs the same check on the first ``--apps``
pretraining members that leak and expose memory (``telemetry.app_family.pretraining_profiles``), at more leads,
for each variant of the floor's trend (forecasting/exhaustion.py) side by side:

- *within*: (app, lead) points where serving's expected time to failure (the base model's P50 health crossing and
  the floor's trend, the earlier) is within +-50% of the true lead, for leaks of 30, 60, 120 and 240 minutes from
  their start to the crash (the family's leaks run 15-240 min);
- *alarms without the leak*: on each app's twin without incidents, ten-minute checks over its last day at which the
  floor's trend alone reaches ``memory_exhaustion`` within the model's horizon (the false alarms it would add).

Writes bench/results/leak_rule.json and its block in docs/health.md (``figures:leak_rule``)::

    PYTHONPATH=. .venv/bin/python bench/leak_rule_bench.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.docblock import replace_block
from evaluation import leak_check
from forecasting import exhaustion
from telemetry.app_family import app_settings, pretraining_profiles
from telemetry.settings import Settings

RESULTS = Path(__file__).parent / "results" / "leak_rule.json"
DOC = Path(__file__).resolve().parents[1] / "docs" / "health.md"
UTC = dt.timezone.utc
LEADS = (40, 30, 20, 15, 10, 5)
#: Minutes from a leak's start to its crash, one twin each.
LEAK_MINUTES = (30, 60, 120, 240)
#: The variants compared: a name, whether the parabola may be used, the line's least R^2 and the trend's window
#: (minutes). The one with the served constants says so.
VARIANTS: tuple[dict[str, Any], ...] = (
    {"name": "line, R^2 >= 0.6, 30 min (the first rule)", "parabola": False, "min_r2": 0.6, "window": 30},
    {"name": "line, R^2 >= 0.8, 30 min", "parabola": False, "min_r2": 0.8, "window": 30},
    {"name": "parabola, R^2 >= 0.8, 30 min", "parabola": True, "min_r2": 0.8, "window": 30},
    {"name": "parabola, R^2 >= 0.8, 40 min", "parabola": True, "min_r2": 0.8, "window": 40},
    {"name": "parabola, R^2 >= 0.8, 50 min", "parabola": True, "min_r2": 0.8, "window": 50},
    {"name": "parabola, R^2 >= 0.8, 60 min", "parabola": True, "min_r2": 0.8, "window": 60},
)


def options(variant: dict[str, Any]) -> dict[str, float]:
    """The variant as :func:`forecasting.exhaustion.memory_trend`'s keyword arguments."""
    return {"min_r2": variant["min_r2"], "window": variant["window"],
            "min_curvature_t": exhaustion.MIN_CURVATURE_T if variant["parabola"] else math.inf}


def served(variant: dict[str, Any]) -> bool:
    """Whether ``variant`` is the rule serving uses (forecasting/exhaustion.py's constants)."""
    return (variant["parabola"] and variant["min_r2"] == exhaustion.MIN_R2
            and variant["window"] == exhaustion.TREND_MINUTES)


def leaky_apps(count: int) -> list:
    """The first ``count`` pretraining profiles that leak and expose memory."""
    found = []
    for profile in pretraining_profiles(10 * count):
        if leak_check.leaks_memory(profile):
            found.append(profile)
        if len(found) == count:
            break
    return found


def measure(apps: int, config: leak_check.LeakCheckConfig) -> dict[str, Any]:
    base = Settings()
    forecaster_for, version = leak_check.base_forecaster_for(base)
    tally = {v["name"]: {"within": {str(m): 0 for m in LEAK_MINUTES}, "alarms_without_leak": 0} for v in VARIANTS}
    points = {str(m): 0 for m in LEAK_MINUTES}
    checks, checked = 0, set()
    for profile in leaky_apps(apps):
        service = app_settings(base, profile)
        forecaster = forecaster_for(service)
        days = config.history_days + 1.0
        for minutes in LEAK_MINUTES:
            leaky, _ = leak_check.twins(profile, float(minutes))
            frame, incidents = leak_check.simulate(leaky, base, days, config.run_seed)
            leak = leak_check.checked_leak(incidents, config.history_days)
            if leak is None:
                continue
            checked.add(profile.name)
            failure = pd.Timestamp(leak.failure_time)
            for lead in config.leads:
                now = failure - pd.Timedelta(minutes=lead)
                if now < pd.Timestamp(leak.start):
                    continue
                points[str(minutes)] += 1
                for variant in VARIANTS:
                    ttf = leak_check.time_to_failure(forecaster, frame, now, service, options(variant))
                    tally[variant["name"]]["within"][str(minutes)] += leak_check.within(ttf["expected"], lead, config)
        if profile.name not in checked:
            continue
        _, healthy = leak_check.twins(profile, config.leak_minutes)
        memory = leak_check.simulate(healthy, base, days, config.run_seed)[0]["memory"]
        for now in memory.index[-24 * 60 :: 10]:
            checks += 1
            history = memory[memory.index <= now].to_numpy()
            for variant in VARIANTS:
                reach = exhaustion.exhaustion_minutes(history, service.memory_exhaustion, **options(variant))
                tally[variant["name"]]["alarms_without_leak"] += reach is not None and reach <= forecaster.horizon_minutes
    return {"model": version, "apps": len(checked), "points": points, "checks_without_leak": checks,
            "variants": [{**v, **tally[v["name"]], "served": served(v)} for v in VARIANTS]}


def render(result: dict) -> str:
    points = result["points"]
    lines = [
        f"Measured by `bench/leak_rule_bench.py` on {result['measured_at']} (bench/results/leak_rule.json): the first "
        f"{result['apps']} pretraining members of the app family that leak and expose memory (not the held-out ones), "
        f"the leak check's twins (docs/evaluation-family.md) with leaks of {', '.join(points)} minutes from their start "
        f"to the crash, at {', '.join(str(x) for x in result['config']['leads'])} minutes before the failure (the "
        f"points each), base model `{result['model']}` for the health crossing (it pretrained on other runs of these "
        f"apps, so its crossing does better here than on unseen ones); without the leak, "
        f"{result['checks_without_leak']} ten-minute checks over each twin's last day.",
        "",
        "| floor's trend | " + " | ".join(f"within +-50%, {m}-min leaks" for m in points) + " | all | alarms without the leak |",
        "|---|" + "---|" * (len(points) + 2),
    ]
    for v in result["variants"]:
        cells = " | ".join(f"{v['within'][m]}/{n}" for m, n in points.items())
        name = v["name"] + (" (served)" if v.get("served") else "")
        lines.append(f"| {name} | {cells} | {sum(v['within'].values())}/{sum(points.values())} | "
                     f"{v['alarms_without_leak']}/{result['checks_without_leak']} |")
    return "\n".join(lines) + "\n"


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=40, help="pretraining apps that leak to look at (default 40)")
    args = parser.parse_args()
    config = leak_check.LeakCheckConfig(leads=LEADS)
    began = time.perf_counter()
    result = measure(args.apps, config)
    result.update(config=config.to_dict(), seconds=round(time.perf_counter() - began, 1),
                  measured_at=dt.datetime.now(UTC).isoformat(timespec="seconds"))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    replace_block(DOC, "leak_rule", render(result))
    return result


if __name__ == "__main__":
    main()
