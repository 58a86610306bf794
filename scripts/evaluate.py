#!/usr/bin/env python3
"""``make evaluate``: rerun the whole evaluation and rewrite docs/evaluation.md (see evaluation/pipeline.py).

    .venv/bin/python scripts/evaluate.py              # the registry's model, or train one if it has none
    .venv/bin/python scripts/evaluate.py --retrain    # always train a fresh model first
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evaluation.pipeline import EvaluationConfig, run  # noqa: E402
from telemetry.settings import get_settings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrain", action="store_true", help="train a new model even if the registry has one")
    parser.add_argument("--quick-train", action="store_true", help="train with `--quick` (about a minute)")
    parser.add_argument("--origins", type=int, default=96, help="rolling origins on the held-out weeks (default 96)")
    parser.add_argument("--nab-origins", type=int, default=40, help="rolling origins per NAB series (default 40)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    config = EvaluationConfig(retrain=args.retrain, quick_train=args.quick_train, origins=args.origins,
                              nab_origins=args.nab_origins, progress=not args.no_progress)
    payload = run(settings, config)
    for bar in payload["quality_bars"]:
        print(f"{'met    ' if bar['met'] else 'NOT MET'}  {bar['bar']}: {bar['value']}")
    print(f"wrote {config.docs_path.relative_to(REPO)} and {config.json_path.relative_to(REPO)} in {payload['seconds']['total']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
