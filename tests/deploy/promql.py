"""What the deploy tests need to read PromQL: the metric names an expression selects, and the
names the API exports on /metrics (from serving/metrics.py itself, never a copied list)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import PROMTOOL

#: Series Prometheus itself makes (scrape health), which rules may use beside the API's own.
PROMETHEUS_SERIES = {"up"}

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
             "inf", "nan", "atan2"}
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
             "summary": ("", "_count", "_sum", "_created"), "gauge": ("",), "info": ("_info",)}


def exported_metric_names() -> set[str]:
    """Every sample name ``GET /metrics`` can carry: each metric object of serving.metrics, expanded by its type."""
    from prometheus_client.metrics import MetricWrapperBase

    from serving import metrics

    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (label matchers, ranges, grouping labels, functions and
    keywords left out). Grafana's ``$variables`` may appear where a label value or range goes."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"(?<![\w:.$])\d+(\.\d+)?([eE][+-]?\d+)?", " ", text)  # numbers
    names = set()
    for match in re.finditer(r"(?<![\w$])[A-Za-z_:][\w:]*", text):
        word = match.group(0)
        if word.lower() in _KEYWORDS or re.match(r"\s*\(", text[match.end():]):
            continue  # a keyword, or a function call
        names.add(word)
    return names


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, so promtool can parse it."""
    for variable, value in (("$__rate_interval", "1m"), ("$__interval", "1m"), ("$__range", "1h")):
        expr = expr.replace(variable, value)
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def rules_file(expressions: dict[str, str], path: Path) -> Path:
    """Expressions as recording rules, for ``promtool check rules`` to parse."""
    import yaml

    rules = [{"record": name, "expr": expr} for name, expr in expressions.items()]
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}, sort_keys=False))
    return path
