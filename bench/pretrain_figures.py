"""The pretrained base model's figures in docs/model.md, rendered from bench/results/pretrain.json.

``pycemaker pretrain`` writes the JSON (one entry per device kind); this renders its block:
``python -m bench.pretrain_figures`` after a run.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.docblock import replace_block

RESULTS = Path(__file__).parent / "results" / "pretrain.json"
DOC = Path(__file__).resolve().parents[1] / "docs" / "model.md"


def _ratio(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def render(results: dict) -> str:
    """One table row per device kind that ran, then the held-out apps of the CPU run (or the only run)."""
    runs = results.get("runs", {})
    lines = [
        "| device | apps x days | windows (train / val) | networks | epochs (all networks) | fit s | total s | val pinball "
        "| held-out RMSE / seasonal naive (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("cpu", "cuda"):
        run = runs.get(kind)
        if run is None:
            lines.append(f"| {kind}: not run | | | | | | | | |")
            continue
        p, loss = run["pretrain"], run["loss"]
        total = f"{run['seconds']['total']:.0f}" + (" (combining; the networks were fitted apart)" if run.get("combined") else "")
        lines.append(
            f"| {run['device']}, {run['precision']} | {p['apps']} x {p['days']:g} | {run['train_windows']} / "
            f"{run['validation_windows']} | {len(run.get('members', [run]))} | {run['epochs']} ({run['stopped_by']}) | "
            f"{run['seconds']['fit']:.0f} | {total} | {loss.get('val_pinball', loss.get('best_val_pinball')):.4f} | "
            f"{_ratio(run['held_out_zero_shot']['median_rmse_ratio_to_seasonal_naive'])} |"
        )
    run = runs.get("cpu") or next(iter(runs.values()), None)
    if run is not None:
        scores = run["held_out_zero_shot"]
        title = (f"Zero-shot on held-out apps (health over the first {scores['gate_minutes']} minutes, RMSE; "
                 f"MAE over the whole horizon), version `{run['version']}`:")
        lines += ["", title, "",
                  "| app | traffic | streams | windows | RMSE | seasonal naive RMSE | MAE | seasonal naive MAE |",
                  "|---|---|---|---|---|---|---|---|"]
        for app in scores["apps"]:
            lines.append(
                f"| {app['profile']} | {app['traffic']} | {', '.join(app['streams'])} | {app['windows']} | "
                f"{app['health_rmse_gate']:.3f} | {app['seasonal_naive_rmse_gate']:.3f} | {app['health_mae']:.3f} | "
                f"{app['seasonal_naive_mae']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> str:
    text = render(json.loads(RESULTS.read_text()))
    replace_block(DOC, "pretrain", text)
    return text


if __name__ == "__main__":
    print(main())
