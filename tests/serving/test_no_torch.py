"""The API never needs torch, Lightning or training/: its requirements don't name them, and it runs without them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO
from tests.serving.onnx_models import persistence_model

FORBIDDEN = re.compile(r"^(torch|torchvision|torchaudio|torchmetrics|lightning|pytorch[-_]lightning)\b", re.IGNORECASE)


def _requirements(path: Path) -> list[str]:
    """Requirement names of a file and the files it includes with ``-r``."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            names += _requirements(path.parent / line.split(maxsplit=1)[1])
        elif not line.startswith("-"):
            names.append(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0])
    return names


def test_the_serving_requirements_name_no_torch():
    names = _requirements(REPO / "requirements-serve.txt")
    assert "flask-smorest" in names and "onnxruntime" in names and "SecantusDB" in names  # telemetry's are included
    assert [n for n in names if FORBIDDEN.match(n)] == []
    assert [n for n in _requirements(REPO / "requirements-telemetry.txt") if FORBIDDEN.match(n)] == []


def test_serving_source_never_imports_torch_or_training():
    pattern = re.compile(r"^\s*(import|from)\s+(torch|lightning|pytorch_lightning|training)\b", re.MULTILINE)
    offenders = [str(p) for p in (REPO / "serving").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


BLOCKED_RUN = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BLOCKED = ("torch", "lightning", "pytorch_lightning", "training")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"{name} is blocked in the serving process", name=name)
            return None

    sys.meta_path.insert(0, Blocker())

    import datetime as dt
    from pathlib import Path
    from serving.app import create_app
    from telemetry.settings import load_settings

    settings = load_settings()
    now = dt.datetime(2026, 3, 1, 21, 2, 20, tzinfo=dt.timezone.utc)
    client = create_app(settings, clock=lambda: now, background=False, status_ttl_s=0).test_client()
    codes = {}
    for url in ("/api/v1/status", "/api/v1/forecast?horizon=30", "/api/v1/health", "/api/v1/models",
                "/current_health/1", "/readyz", "/metrics", "/docs", "/openapi.json"):
        codes[url] = client.get(url).status_code
    state = client.get("/api/v1/status").get_json()["state"]

    from pycemaker.cli import build_parser  # the CLI too: training's commands are skipped, serve is there
    commands = sorted(build_parser()._subparsers._group_actions[0].choices)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"codes": codes, "state": state, "loaded": loaded, "commands": commands}))
    """
)


def test_the_api_runs_with_torch_unimportable(scenario, mongo_uri, tmp_path):
    models = tmp_path / "models"
    persistence_model(models, "v1", L=30, H=15)
    env = {
        **os.environ,
        "MONGO_URI": mongo_uri,
        "PYCEMAKER_DATABASE": scenario.database,
        "PYCEMAKER_MODELS_DIR": str(models),
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run([sys.executable, "-c", BLOCKED_RUN], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["codes"].values()) == {200}, result["codes"]
    assert result["state"] == "no_failure_within_horizon"
    assert result["loaded"] == []
    assert {"serve", "openapi"} <= set(result["commands"])
