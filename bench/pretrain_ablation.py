"""Pretraining recipes side by side: the runs' figures (``pycemaker pretrain --results``) in one JSON and one table.

Each run is a ``pycemaker pretrain`` with its own flags, all scored zero-shot on the same held-out apps; this
gathers their results files into bench/results/pretrain_ablation.json and renders the table in docs/model.md
(between its ``figures:pretrain_ablation`` markers)::

    pycemaker pretrain --held-out-apps 8 --budget 0 --no-level-sources --apps 96 --stride 20 --results /tmp/a.json ...
    python -m bench.pretrain_ablation "96 apps, stride 20, no level sources=/tmp/a.json" "...=/tmp/b.json" ...
    python -m bench.pretrain_ablation --keep "a later recipe=/tmp/c.json"   # the runs already in the JSON, and one more

A run may name, after a comma, the ``pycemaker evaluate-family`` JSON of its base model (the run's models root as
``PYCEMAKER_BASE_MODELS_DIR``; ``PYCEMAKER_CANDIDATE_KINDS=seasonal_naive,ets,base,blend`` makes it a 3-minute run,
as nothing is trained): the table then shows its zero-shot and blend 60-minute MASE on those apps' following days
(docs/evaluation-family.md), the measure the goals are set in::

    python -m bench.pretrain_ablation --keep "health weight 6=/tmp/d.json,/tmp/d_family.json"

The row of the shipped base model (``models/base``'s current version when the bench ran) says so.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from bench.docblock import replace_block

RESULTS = Path(__file__).parent / "results" / "pretrain_ablation.json"
DOC = Path(__file__).resolve().parents[1] / "docs" / "model.md"
BASE_MODELS = Path(__file__).resolve().parents[1] / "models" / "base"


def family_mase(family: dict) -> dict[str, dict[str, float]]:
    """The median over the apps of the zero-shot and blend 60-min MASE, per history length, of a family evaluation."""
    return {days: {kind: methods[kind]["median_mase_60"] for kind in ("base", "blend")}
            for days, methods in family["summary"].items()}


def summary(label: str, run: dict, family: dict | None = None) -> dict:
    """What the table shows of one run (its CPU entry), with its family evaluation's MASE when there is one."""
    scores = run["held_out_zero_shot"]
    return {
        "recipe": label, "version": run["version"], "pretrain": run["pretrain"],
        "level_sources": run["fit"].get("level_sources", False),
        "train_windows": run["train_windows"], "epochs": run["epochs"], "networks": len(run.get("members", [run])),
        # A combination ran its networks' fits apart: its time is theirs and its own phases.
        "seconds": sum(run["seconds"][k] for k in ("simulate", "fit", "score", "export")) if run.get("combined")
        else run["seconds"]["total"],
        "median_rmse_ratio_to_seasonal_naive": scores["median_rmse_ratio_to_seasonal_naive"],
        "apps": {a["profile"]: round(a["health_rmse_gate"] / a["seasonal_naive_rmse_gate"], 3) for a in scores["apps"]},
    } | ({"family_mase_60": family_mase(family)} if family else {})


def render(results: dict) -> str:
    runs = results["runs"]
    apps = list(runs[0]["apps"]) if runs else []
    days = sorted({d for r in runs for d in r.get("family_mase_60", {})}, key=float)
    lines = [
        "| recipe | train windows | epochs | s | held-out RMSE / seasonal naive (median) | " + " | ".join(apps)
        + "".join(f" | family eval, {float(d):g} d: zero-shot / blend MASE" for d in days) + " |",
        "|---|---|---|---|---|" + "---|" * (len(apps) + len(days)),
    ]
    for r in runs:
        cells = " | ".join(f"{r['apps'].get(a, float('nan')):.2f}" for a in apps)
        family = r.get("family_mase_60", {})
        cells += "".join(f" | {family[d]['base']:.2f} / {family[d]['blend']:.2f}" if d in family else " | -" for d in days)
        recipe = r["recipe"] + (" (shipped)" if r["version"] == results.get("shipped") else "")
        lines.append(f"| {recipe} | {r['train_windows']} | {r['epochs']} | {r['seconds']:.0f} | "
                     f"{r['median_rmse_ratio_to_seasonal_naive']:.2f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(arguments: list[str]) -> dict:
    from forecasting import registry

    keep = arguments[:1] == ["--keep"]
    runs = json.loads(RESULTS.read_text())["runs"] if keep and RESULTS.exists() else []
    for argument in arguments[1:] if keep else arguments:
        label, _, paths = argument.rpartition("=")
        path, _, family = paths.partition(",")
        runs.append(summary(label, json.loads(Path(path).read_text())["runs"]["cpu"],
                            json.loads(Path(family).read_text()) if family else None))
    result = {"what": "pycemaker pretrain recipes, each scored zero-shot on the same held-out apps (health RMSE over "
                      "the first 60 minutes / seasonal naive's)",
              "runs": runs, "shipped": registry.current_or_newest(BASE_MODELS),
              "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    replace_block(DOC, "pretrain_ablation", render(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
