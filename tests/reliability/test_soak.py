"""Sustained load for 10 s on gunicorn: no error, no worker replaced, resident memory growth under 10%.

The same code as the 10-minute `make soak` (bench/soak_bench.py, figures in bench/results/soak.json),
which reuses the serving benchmark's load generator (bench/serve_bench.py). Short on purpose: no
baseline round, and the memory slope needs minutes to mean anything.
"""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.slow
def test_ten_seconds_of_load_leave_no_error_no_dead_worker_and_flat_memory():
    soak_bench = importlib.import_module("bench.soak_bench")
    result = soak_bench.soak(10.0, baseline_s=0)
    summary = {k: result[k] for k in ("requests", "errors", "workers_replaced", "tracebacks_in_log")}
    summary["rss_growth"] = result["rss"]["growth"]
    assert result["requests"] > 1000, summary
    assert result["errors"] == 0, result["routes"]
    assert result["workers_replaced"] == [] and result["server_alive_at_end"], summary
    assert result["tracebacks_in_log"] == 0, summary
    assert result["rss"]["growth"] < soak_bench.MAX_RSS_GROWTH, result["rss"]
    assert len(result["routes"]) >= 8  # every read route was under load, not only /api/v1/status
