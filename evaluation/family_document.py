"""docs/evaluation-family.md from ``pycemaker evaluate-family``'s JSON (every figure from it, nothing by hand)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluation.family import METHODS
from evaluation.report import table

TITLES = {"base": "zero-shot (base)", "finetuned": "fine-tuned", "lstm": "from scratch (LSTM)",
          "seasonal_naive": "seasonal naive", "ets": "damped ETS", "served": "served"}


def _mase(cell: dict | None) -> str:
    return "n/a" if not cell or cell.get("median_mase_60") is None else f"{cell['median_mase_60']:.2f}"


def _warnings(cell: dict | None) -> str:
    if not cell:
        return "n/a"
    share = "" if cell.get("warned_share") is None else f" ({cell['warned_share']:.0%})"
    return f"{cell['warned']}/{cell['episodes']}{share}, {cell['false_alarms_per_24_healthy_hours']:.2f}"


def _goals(summary: dict[str, Any]) -> list[list[str]]:
    """The issue's bars on unseen profiles, measured."""
    rows = []
    one_day = summary.get("1", {})
    served = one_day.get("served")
    if served and served.get("median_mase_60") is not None:
        value = served["median_mase_60"]
        rows.append(["served 60-min MASE <= 0.8 x seasonal naive's, 1 day of history", f"{value:.2f}", "yes" if value <= 0.8 else "**no**"])
    for days, methods in summary.items():
        cell = methods.get("served")
        if cell and cell.get("warned_share") is not None:
            met = cell["warned_share"] >= 0.9 and cell["false_alarms_per_24_healthy_hours"] <= 1
            rows.append([f"served: >= 90% of new failures warned >= 10 min ahead, <= 1 false alarm per 24 healthy hours ({days} d)",
                         _warnings(cell), "yes" if met else "**no**"])
        base = methods.get("base")
        if base and base.get("median_mase_60") is not None:
            value = base["median_mase_60"]
            rows.append([f"zero-shot at least as good as seasonal naive ({days} d of history): MASE <= 1", f"{value:.2f}",
                         "yes" if value <= 1 else "**no**"])
    return rows


def _ttf(value: float | None) -> str:
    return "none (no failure)" if value is None else f"{value:.1f} min"


def leak_section(check: dict[str, Any] | None) -> list[str]:
    """The leak check (evaluation/leak_check.py), every figure from ``leak_check`` in the JSON."""
    if not check:
        return []
    c, s = check["config"], check["summary"]
    met = s["points"] > 0 and s["within"] == s["points"] and s["no_failure_without_leak"] == s["points"]
    rows = [[a["profile"], a["traffic"], f"{a['strength']:g}",
             "none after the history" if not a["leak"] else f"{a['leak']['run_up_minutes']:g} min",
             f"{p['lead_minutes']} min", _ttf(p["expected_ttf_minutes"]), "yes" if p["within"] else "**no**",
             _ttf(p["without_leak_ttf_minutes"])]
            for a in check["apps"] for p in (a["leads"] or [{"lead_minutes": "-", "expected_ttf_minutes": None, "within": False,
                                                           "without_leak_ttf_minutes": None}])]
    return [
        "## The leak check",
        "",
        f"Bar: *on an unseen app profile with {c['history_days']:g} days of history, the served model's median warns of a "
        f"leak-driven failure within +-{c['tolerance']:.0%} of its true lead time, and says 'no failure' on the same app "
        "without the leak.* Each held-out profile that leaks and exposes memory is simulated twice over the same "
        f"{c['history_days'] + 1:g} days and seed (run seed {c['run_seed']}): with its leak alone ({c['leak_minutes']:g} min "
        "from the leak's start to the crash, the profile's own curve exponent, about one a day), and with no incident. At "
        f"{', '.join(str(x) for x in c['leads'])} min before the simulator's failure time of the last leak after the history, "
        "the expected time to failure is serving's (serving/eta.py: the first P50 health minute at or below the threshold); "
        "without the leak, at the same minutes, the state must be *no failure within the horizon*. Model: the shipped base "
        f"model zero-shot (`{s['model']}`, what an empty registry serves). `pycemaker evaluate-family --leak-only` reruns "
        f"it alone ({check.get('seconds', 0):.0f} s on {check.get('measured_at', '?')}); tests/evaluation/test_leak_check.py "
        "asks the real API the same question.",
        "",
        table(["bar", "measured", "met"], [
            ["expected time to failure within +-50% of the true lead", f"{s['within']}/{s['points']} (profile, lead) points "
             f"(at {', '.join(f'{x} min: ' + s[f'within_at_{x}'] for x in c['leads'])})", "yes" if s["within"] == s["points"] and s["points"] else "**no**"],
            ["'no failure' on the same app without the leak", f"{s['no_failure_without_leak']}/{s['points']}",
             "yes" if s["no_failure_without_leak"] == s["points"] and s["points"] else "**no**"],
        ]),
        table(["app", "traffic", "leak exponent", "leak start to failure", "lead", "expected time to failure", "within 50%",
               "without the leak"], rows),
        "**Why it fails.** Most of these leaks fail at the crash: health stays around 0.4-0.6 while memory climbs to the "
        "heap's limit (GC thrashing costs CPU and some requests), then the JVM dies and the streams go silent until the "
        "restart. The failure the warning rule counts (forecasting/warnings.py) is that silence inside an incident, which "
        "the model has never been shown: a crashed minute has no health, so the training windows mask it out of the "
        "targets, and nothing teaches the network that a full heap is followed by a failure. Its P50 therefore keeps "
        "health above the threshold up to the crash; the P10 band crosses (the *earliest* time to failure) on some of "
        "them. The fix is in the training data, not in the TTF rule: pretrain (and fine-tune) with the crashed minutes of "
        "a simulated incident scored as failing (health 0, as the warning rule already scores them), then rerun this "
        "check." if not met else "The bar is met on every point.",
        "",
    ]


def render(result: dict[str, Any], json_path: str) -> str:
    summary = result["summary"]
    config = result["config"]
    header = ["history"] + [TITLES[m] for m in METHODS]
    mase = [[f"{days} d"] + [_mase(methods.get(m)) for m in METHODS] for days, methods in summary.items()]
    warnings = [[f"{days} d"] + [_warnings(methods.get(m)) for m in METHODS] for days, methods in summary.items()]
    apps = [[a["profile"], a["traffic"], ",".join(a["streams"]), ", ".join(a["incidents"]) or "none", f"{a['history_days']:g} d",
             a["run"].get("promoted_kind") or "none"] + [
                 "n/a" if not a["methods"].get(m) or a["methods"][m].get("mase_60") is None else f"{a['methods'][m]['mase_60']:.2f}"
                 for m in METHODS] for a in result["apps"]]
    return "\n".join([
        "# Evaluation on apps pretraining never saw",
        "",
        f"Generated by `pycemaker evaluate-family` (part of `make evaluate`) on {result['measured_at']} in {result['seconds']:.0f} s; "
        f"every figure is in [`{json_path}`]({json_path}). {config['profiles']} held-out members of the simulator's app family "
        "(held-out seeds and the held-out corner: diurnal traffic with a slow dependency, docs/simulator.md), each with "
        f"{', '.join(f'{d:g}' for d in config['history_days'])} days of history. One training run per app and history (every "
        "kind competes, as `pycemaker train --once` runs them); every kind of that run, and the one it promoted (*served*), then "
        "forecasts every minute of the following day through onnxruntime. Model: the shipped base model in `models/base/` "
        "(docs/model.md).",
        "",
        "## The bars",
        "",
        table(["bar", "measured", "met"], _goals(summary)),
        *leak_section(result.get("leak_check")),
        "## 60-min health MASE against the run's seasonal naive (median over the apps)",
        "",
        table(header, mase),
        "## Warnings: new failures warned >= 10 min ahead (share), false alarms per 24 healthy hours (pooled over the apps)",
        "",
        table(header, warnings),
        "## Every app",
        "",
        table(["app", "traffic", "streams", "incidents", "history", "promoted"] + [TITLES[m] for m in METHODS], apps),
        "*n/a*: the run did not fit that kind (the LSTM and fine-tuning need the LSTM's split, 2001 minutes: not on one day), "
        "or no episode could be scored.",
        "",
    ])


def write(result: dict[str, Any], doc_path: Path, json_path: str) -> None:
    doc_path.write_text(render(result, json_path))
