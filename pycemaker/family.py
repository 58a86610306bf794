"""``pycemaker evaluate-family``: unseen app-family profiles, every kind of a run, on the day after 1/3/7 days.

The glue between the two sides (evaluation/family.py scores, training/pipeline.py trains): the one place
that imports both, as the CLI does.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from telemetry.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate-family", help="held-out app-family profiles: zero-shot, fine-tuned, from scratch, seasonal "
                                               "naive and ETS on the day after 1/3/7 days of history (JSON)")
    p.add_argument("--profiles", type=int, default=8, help="held-out profiles (default 8: four held-out seeds, four of the held-out corner)")
    p.add_argument("--days", default="1,3,7", help="history lengths in days (default 1,3,7)")
    p.add_argument("--fit-budget-s", type=float, default=30.0,
                   help="wall-clock limit of each fit, from scratch and fine-tuning (default 30 s: the whole run stays near 22 min on 2 cores)")
    p.add_argument("--max-epochs", type=int, default=30, help="the LSTM's epoch limit (fine-tuning: finetune_epochs)")
    p.add_argument("--out", default="bench/results/family_eval.json", help="JSON written (default bench/results/family_eval.json)")
    p.add_argument("--doc", default="docs/evaluation-family.md", help="the page written from it (default docs/evaluation-family.md; '' for none)")
    p.add_argument("--render-only", action="store_true", help="rewrite --doc from the existing --out JSON, running nothing")
    p.add_argument("--leak-only", action="store_true", help="run the leak check alone (a run on each leaky app's history, "
                                                            "about 5 minutes), put it into the existing --out JSON and rewrite --doc")
    p.set_defaults(handler=run_family_eval)


def run_family_eval(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from evaluation import family

    if args.render_only:
        _document(json.loads(Path(args.out).read_text()), args)
        return 0
    from training.fit import FitConfig
    from training.pipeline import train_frame

    fit_config = FitConfig.from_settings(settings, max_epochs=args.max_epochs, max_time_s=args.fit_budget_s or None)
    settings = dataclasses.replace(settings, keep_versions=max(settings.keep_versions, 20))

    def train(frame, service):
        return train_frame(frame, service, fit_config)

    if args.leak_only:
        result = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        result = family.with_leak_check(settings, result, Path(args.out), train=train)
        print(f"leak check: {result['leak_check']['summary']}")
        if "summary" in result:  # the page needs the family figures too
            _document(result, args)
        return 0
    config = family.FamilyEvalConfig(profiles=args.profiles, history_days=tuple(float(d) for d in args.days.split(",") if d.strip()))
    result = family.run(settings, config, train, Path(args.out))
    for days, methods in result["summary"].items():
        cells = ", ".join(f"{m} {v['median_mase_60']:.2f}" for m, v in methods.items() if v and v.get("median_mase_60") is not None)
        print(f"{days} day(s) of history: 60-min MASE vs seasonal naive (median over apps): {cells}")
    print(f"wrote {args.out} in {result['seconds']:.0f} s")
    _document(result, args)
    return 0


def _document(result: dict, args: argparse.Namespace) -> None:
    import os

    from evaluation import family_document

    if args.doc:
        doc = Path(args.doc)
        family_document.write(result, doc, os.path.relpath(args.out, doc.parent))
        print(f"wrote {doc}")
