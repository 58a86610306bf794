"""Pretraining recipes side by side: the runs' figures (``pycemaker pretrain --results``) in one JSON and one table.

Each run is a ``pycemaker pretrain`` with its own flags, all scored zero-shot on the same held-out apps; this
gathers their results files into bench/results/pretrain_ablation.json and renders the table in docs/model.md
(between its ``figures:pretrain_ablation`` markers)::

    pycemaker pretrain --held-out-apps 8 --budget 0 --no-level-sources --apps 96 --stride 20 --results /tmp/a.json ...
    python -m bench.pretrain_ablation "96 apps, stride 20, no level sources=/tmp/a.json" "...=/tmp/b.json" ...
    python -m bench.pretrain_ablation --keep "a later recipe=/tmp/c.json"   # the runs already in the JSON, and one more

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


def summary(label: str, run: dict) -> dict:
    """What the table shows of one run (its CPU entry)."""
    scores = run["held_out_zero_shot"]
    return {
        "recipe": label, "version": run["version"], "pretrain": run["pretrain"],
        "level_sources": run["fit"].get("level_sources", False),
        "train_windows": run["train_windows"], "epochs": run["epochs"], "seconds": run["seconds"]["total"],
        "median_rmse_ratio_to_seasonal_naive": scores["median_rmse_ratio_to_seasonal_naive"],
        "apps": {a["profile"]: round(a["health_rmse_gate"] / a["seasonal_naive_rmse_gate"], 3) for a in scores["apps"]},
    }


def render(results: dict) -> str:
    runs = results["runs"]
    apps = list(runs[0]["apps"]) if runs else []
    lines = [
        "| recipe | train windows | epochs | s | held-out RMSE / seasonal naive (median) | " + " | ".join(apps) + " |",
        "|---|---|---|---|---|" + "---|" * len(apps),
    ]
    for r in runs:
        cells = " | ".join(f"{r['apps'].get(a, float('nan')):.2f}" for a in apps)
        recipe = r["recipe"] + (" (shipped)" if r["version"] == results.get("shipped") else "")
        lines.append(f"| {recipe} | {r['train_windows']} | {r['epochs']} | {r['seconds']:.0f} | "
                     f"{r['median_rmse_ratio_to_seasonal_naive']:.2f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(arguments: list[str]) -> dict:
    from forecasting import registry

    keep = arguments[:1] == ["--keep"]
    runs = json.loads(RESULTS.read_text())["runs"] if keep and RESULTS.exists() else []
    for argument in arguments[1:] if keep else arguments:
        label, _, path = argument.rpartition("=")
        runs.append(summary(label, json.loads(Path(path).read_text())["runs"]["cpu"]))
    result = {"what": "pycemaker pretrain recipes, each scored zero-shot on the same held-out apps (health RMSE over "
                      "the first 60 minutes / seasonal naive's)",
              "runs": runs, "shipped": registry.current_or_newest(BASE_MODELS),
              "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    replace_block(DOC, "pretrain_ablation", render(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
