"""``make fuzz``'s figures: bench/results/fuzz.json (written by tests/security/test_openapi_fuzz.py) -> docs/operations.md.

    PYTHONPATH=. .venv/bin/python bench/fuzz_report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.docblock import replace_block  # noqa: E402

RESULTS = REPO / "bench" / "results" / "fuzz.json"
DOC = REPO / "docs" / "operations.md"


def render(report: dict) -> str:
    phases = "; ".join(f"{phase}: {n:,}" for phase, n in report["by_phase"].items())
    statuses = ", ".join(f"{n:,} x {status}" for status, n in report["by_status"].items())
    return (
        f"Last `make fuzz` ({report['when']}, schemathesis {report['schemathesis']}, "
        f"{report['examples_per_operation_and_mode']} examples per operation and mode): **{report['calls']:,} calls** "
        f"over {report['operations']} operations and pages ({phases}); answers: {statuses}; "
        f"**{report['server_errors']} server errors** other than a documented 503.\n"
    )


def main() -> int:
    report = json.loads(RESULTS.read_text())
    replace_block(DOC, "fuzz", render(report))
    print(render(report), end="")
    return 0 if report["server_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
