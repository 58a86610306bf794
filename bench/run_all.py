"""Run every benchmark in bench/ (each writes bench/results/<name>.json)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(names: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*_bench.py") if not names or p.stem.removesuffix("_bench") in names)
    for script in scripts:
        print(f"== {script.name}", flush=True)
        runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
