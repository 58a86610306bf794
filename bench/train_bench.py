"""Training benchmark: one full retrain on 7 days of 1-minute data, as the scheduler runs it.

1. hosts a SecantusDB server in this process (a temporary directory) and writes 7 simulated
   days into it (not timed as part of the retrain);
2. runs one whole ``train_once`` with the production settings (L=120, H=180, hidden 64,
   ``max_epochs`` 30, the ``train_budget_s`` fit budget): read from the store -> frames ->
   every candidate kind (the baselines, then the LSTM: fit -> score -> ONNX export + parity) ->
   champion/challenger on the held-back windows -> registry;
3. writes epoch time, the whole run and its stages, the device, and the validation figures to
   ``bench/results/train.json``, under the device it ran on ("cpu" or "cuda"). The other
   device's entry from an earlier run is kept, so the CPU and GPU figures sit side by side.

Runs unchanged on a CUDA machine (Lightning picks the GPU and bf16 mixed precision). The
machine's load average is recorded: on a 2-core box shared with other work, epochs slow down.

    PYTHONPATH=. .venv/bin/python bench/train_bench.py [--days 7] [--in-memory]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forecasting import registry  # noqa: E402
from telemetry import simulator, store  # noqa: E402
from telemetry.settings import load_settings  # noqa: E402

RESULTS = REPO / "bench" / "results" / "train.json"
UTC = dt.timezone.utc
TARGET_SECONDS = 300.0


def machine() -> dict:
    import torch

    info = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run(days: float, in_memory: bool) -> dict:
    import torch

    from training import pipeline

    base = load_settings(environ={})  # the defaults: what a fresh install trains with
    with tempfile.TemporaryDirectory(prefix="pycemaker-train-bench-") as tmp:
        tmp_path = Path(tmp)
        from telemetry.embedded import open_server

        server = open_server(tmp_path / "db", port=0)
        try:
            settings = dataclasses.replace(base, mongo_uri=server.uri, models_dir=tmp_path / "models")
            db = store.connect(settings, autostart=False)
            # Data up to now, as in production (the run finds the newest sample with an indexed probe).
            end = dt.datetime.now(UTC).replace(second=0, microsecond=0)
            began = time.perf_counter()
            sim = simulator.simulate(end - dt.timedelta(days=days), end, seed=1, settings=settings)
            if in_memory:
                from telemetry.frames import minute_frame

                frame = minute_frame(sim.samples, end - dt.timedelta(days=days), end, settings)
                pipeline.load_training_frame = lambda *args, **kwargs: frame  # skip the store
            else:
                simulator.write(db, sim, settings)
            prepare_s = time.perf_counter() - began
            load_before = os.getloadavg()
            result = pipeline.train_once(settings, db, days=days, trigger="bench", progress_bar=False)
            load_after = os.getloadavg()
            if result.error:
                raise SystemExit(f"the benchmark run failed: {result.error}")
            cards = {c.kind: c for c in registry.list_versions(settings.models_dir)
                     if (c.selection or {}).get("run_id") == result.run_id}
            card = cards["lstm"]
        finally:
            server.stop()

    t = card.training
    epochs = t["epoch_seconds"]
    return {
        "device": t["device"],
        "precision": t["precision"],
        "torch_threads": torch.get_num_threads() if not torch.cuda.is_available() else None,
        "data": {
            "days": days,
            "source": "in memory" if in_memory else "embedded SecantusDB (read back by the run)",
            "minutes": int(days * 24 * 60),
            "train_windows_used": t["train_windows"],
            "validation_windows": card.metrics["validation_windows"],
            "prepare_seconds_not_timed": round(prepare_s, 1),
        },
        "config": t["config"],
        "epochs": t["epochs"],
        "best_epoch": t["best_epoch"],
        "stopped_by": t["stopped_by"],
        "epoch_seconds": {"mean": round(sum(epochs) / len(epochs), 3), "min": min(epochs), "max": max(epochs)},
        "whole_run_seconds": round(result.seconds, 1),
        "stages_seconds": {
            "read_store_and_frames": result.metrics["seconds"]["read"],
            "candidates": result.metrics["seconds"]["candidates"],
            "lstm_fit": t["fit_seconds"],
            "lstm_export_and_parity": t.get("export_seconds"),
            "judge_and_register": result.metrics["seconds"]["judge_and_register"],
        },
        "target_seconds": TARGET_SECONDS,
        "meets_target": result.seconds <= TARGET_SECONDS,
        "promoted": result.promoted,
        "served_kind": next((c.kind for c in cards.values() if c.version == result.version), None),
        "reason": result.reason,
        "health_source": card.health_source,
        "validation_health_mae": card.metrics["health_mae"],
        "test_health_mae": card.metrics["test"]["health_mae"],
        "candidates": {c["kind"]: {"verdict": c["verdict"], **{k: c["scores"][k] for k in ("health_mae", "health_rmse", "coverage", "warned", "episodes", "false_alarms")}}
                       for c in result.metrics["candidates"] if not c["champion"] or c["version"] in {x.version for x in cards.values()}},
        "onnx": {"parity_max_abs_diff": card.onnx["parity_max_abs_diff"], "size_bytes": card.onnx["size_bytes"]},
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--in-memory", action="store_true", help="skip the store (frames built in memory)")
    args, _ = parser.parse_known_args(argv)  # bench/run_all.py passes its own arguments through

    import torch

    kind = "cuda" if torch.cuda.is_available() else "cpu"
    figures = run(args.days, args.in_memory)
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results = previous.get("results", {})
    results[kind] = {**figures, "measured_at": dt.datetime.now(UTC).isoformat(timespec="seconds")}
    if "cuda" not in results or (kind == "cpu" and not results["cuda"].get("measured", True)):
        results["cuda"] = {
            "measured": False,
            "note": "no GPU was available when this was measured; run this script unchanged on a CUDA machine "
            "(Lightning picks the GPU and bf16-mixed) to fill this entry in",
        }
    out = {
        "benchmark": "train",
        "what": f"one full retrain (train_once) on {args.days:g} days of 1-minute data",
        "machine": machine(),
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({kind: {k: figures[k] for k in ("device", "epochs", "epoch_seconds", "whole_run_seconds", "meets_target")}}, indent=2))
    return out


if __name__ == "__main__":
    main()
