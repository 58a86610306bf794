"""How the memory-exhaustion rule's constants were chosen: on pretraining members of the app family, never the held-out.

The leak check (evaluation/leak_check.py, docs/evaluation-family.md) reports the served time to failure on held-out
apps; choosing the rule's constants there would fit the report. This runs the same check on the first ``--apps``
pretraining members that leak and expose memory (``telemetry.app_family.pretraining_profiles``), at more leads,
for each variant of the floor's trend (forecasting/exhaustion.py) side by side:

- *within*: (app, lead) points where serving's expected time to failure (the base model's P50 health crossing and
  the floor's trend, the earlier) is within +-50% of the true lead;
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
#: The variants compared: a name, whether the parabola may be used, and the line's least R^2. The last is served.
VARIANTS: tuple[dict[str, Any], ...] = (
    {"name": "line, R^2 >= 0.6 (before)", "parabola": False, "min_r2": 0.6},
    {"name": "line, R^2 >= 0.8", "parabola": False, "min_r2": 0.8},
    {"name": "parabola, R^2 >= 0.6", "parabola": True, "min_r2": 0.6},
    {"name": "parabola, R^2 >= 0.8 (served)", "parabola": True, "min_r2": exhaustion.MIN_R2},
)


def options(variant: dict[str, Any]) -> dict[str, float]:
    """The variant as :func:`forecasting.exhaustion.memory_trend`'s keyword arguments."""
    return {"min_r2": variant["min_r2"], "min_curvature_t": exhaustion.MIN_CURVATURE_T if variant["parabola"] else math.inf}


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
    tally = {v["name"]: {"within": 0, "alarms_without_leak": 0} for v in VARIANTS}
    points = checks = checked_apps = 0
    for profile in leaky_apps(apps):
        leaky, healthy = leak_check.twins(profile, config.leak_minutes)
        days = config.history_days + 1.0
        frame, incidents = leak_check.simulate(leaky, base, days, config.run_seed)
        quiet, _ = leak_check.simulate(healthy, base, days, config.run_seed)
        leak = leak_check.checked_leak(incidents, config.history_days)
        if leak is None:
            continue
        checked_apps += 1
        service = app_settings(base, profile)
        forecaster = forecaster_for(service)
        failure = pd.Timestamp(leak.failure_time)
        for lead in config.leads:
            now = failure - pd.Timedelta(minutes=lead)
            if now < pd.Timestamp(leak.start):
                continue
            points += 1
            for variant in VARIANTS:
                ttf = leak_check.time_to_failure(forecaster, frame, now, service, options(variant))
                tally[variant["name"]]["within"] += leak_check.within(ttf["expected"], lead, config)
        memory = quiet["memory"]
        for now in memory.index[-24 * 60 :: 10]:
            checks += 1
            history = memory[memory.index <= now].to_numpy()
            for variant in VARIANTS:
                reach = exhaustion.exhaustion_minutes(history, service.memory_exhaustion, **options(variant))
                tally[variant["name"]]["alarms_without_leak"] += reach is not None and reach <= forecaster.horizon_minutes
    return {"model": version, "apps": checked_apps, "points": points, "checks_without_leak": checks,
            "variants": [{**v, **tally[v["name"]]} for v in VARIANTS]}


def render(result: dict) -> str:
    lines = [
        f"Measured by `bench/leak_rule_bench.py` on {result['measured_at']} (bench/results/leak_rule.json): the first "
        f"{result['apps']} pretraining members of the app family that leak and expose memory (not the held-out ones), "
        f"the leak check's twins (docs/evaluation-family.md) at {', '.join(str(x) for x in result['config']['leads'])} "
        f"minutes before the failure ({result['points']} points), base model `{result['model']}` for the health "
        f"crossing (it pretrained on other runs of these apps, so its crossing does better here than on unseen ones); "
        f"without the leak, {result['checks_without_leak']} ten-minute checks over each twin's last day.",
        "",
        "| floor's trend | expected time within +-50% | alarms without the leak |",
        "|---|---|---|",
    ]
    for v in result["variants"]:
        lines.append(f"| {v['name']} | {v['within']}/{result['points']} | {v['alarms_without_leak']}/{result['checks_without_leak']} |")
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
