"""Run every benchmark in bench/ (each writes bench/results/<name>.json): ``bench/run_all.py [NAME ...]``.

Every ``*_bench.py`` is one (family, forecast, health, serve, simulate, soak, train), with its defaults:
the soak alone takes 10 minutes (``make soak``); ``bench/run_all.py forecast serve`` runs two.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(names: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*_bench.py") if not names or p.stem.removesuffix("_bench") in names)
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        sys.argv = [str(script)]  # each benchmark parses its own arguments: none here, its defaults
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exc:  # a benchmark exits non-zero when it misses a target
            if exc.code not in (None, 0):
                failed.append(script.name)
    if failed:
        print(f"targets missed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
