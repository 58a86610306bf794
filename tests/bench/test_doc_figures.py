"""Figures in the docs are the benchmarks' JSON, rendered: never typed, never stale.

Each block between ``<!-- figures:NAME -->`` markers must equal what its benchmark's ``render``
writes from the committed ``bench/results/NAME.json`` (the benchmark rewrites both in one run).
"""

from __future__ import annotations

import importlib
import json

import pytest

from bench.docblock import read_block
from tests.conftest import REPO

BLOCKS = [
    ("forecast", "bench.forecast_bench"),
    ("soak", "bench.soak_bench"),
    ("fuzz", "bench.fuzz_report"),
    ("family", "bench.family_bench"),
    ("pretrain", "bench.pretrain_figures"),
    ("pretrain_ablation", "bench.pretrain_ablation"),
    ("leak_rule", "bench.leak_rule_bench"),
    ("fleet", "bench.fleet_bench"),
    ("fleet_e2e", "bench.fleet_e2e_bench"),
    ("fleet_train", "bench.fleet_train_bench"),
    ("rollups", "bench.rollup_bench"),
]


@pytest.mark.parametrize(("name", "module"), BLOCKS)
def test_the_docs_show_the_committed_figures(name, module):
    bench = importlib.import_module(module)
    results = json.loads((REPO / "bench" / "results" / f"{name}.json").read_text())
    assert read_block(bench.DOC, name) == bench.render(results), f"run the benchmark again: {bench.DOC.name} is stale"
