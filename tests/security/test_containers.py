"""Every container the stack builds runs as an unprivileged user; no service is privileged, public or given a secret.

No Docker engine in CI: docker-compose.yml and the Dockerfiles are checked as text. Already proven
elsewhere: Dockerfile.serve and Dockerfile.train end as a non-root user and .dockerignore keeps
local state and credentials out of the build context (tests/deploy/test_images.py). Here: every
image docker-compose.yml builds, the test bed's inline one included, and the services themselves.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

yaml = pytest.importorskip("yaml")
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
ROOT_USERS = {"root", "0"}


def _dockerfiles() -> dict[str, str]:
    """Every Dockerfile docker-compose.yml builds, by service (inline ones too)."""
    out = {}
    for name, service in COMPOSE["services"].items():
        build = service.get("build")
        if build is None:
            continue
        build = {"context": build} if isinstance(build, str) else build
        if "dockerfile_inline" in build:
            out[name] = build["dockerfile_inline"]
        else:
            path = REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            assert path.is_file(), f"service {name} builds {path.relative_to(REPO)}, which does not exist"
            out[name] = path.read_text()
    return out


DOCKERFILES = _dockerfiles()


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_every_image_the_stack_builds_ends_as_a_non_root_user(service):
    lines = [line.strip() for line in DOCKERFILES[service].splitlines() if line.strip() and not line.strip().startswith("#")]
    stages = [i for i, line in enumerate(lines) if re.match(r"(?i)^FROM\s", line)]
    users = [(i, line.split(None, 1)[1].strip()) for i, line in enumerate(lines) if re.match(r"(?i)^USER\s", line)]
    final = [user for i, user in users if i > stages[-1]]
    assert final, f"{service}: the final stage has no USER, so it runs as root"
    assert final[-1].split(":")[0] not in ROOT_USERS, f"{service}: ends as {final[-1]}"


@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_no_service_is_root_privileged_public_or_handed_a_secret(name):
    service = COMPOSE["services"][name]
    assert str(service.get("user", "")).split(":")[0] not in ROOT_USERS
    assert not service.get("privileged") and not service.get("cap_add") and service.get("network_mode") != "host"
    for port in service.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
    environment = service.get("environment") or {}
    for key, value in (environment.items() if isinstance(environment, dict) else []):
        if key.upper().endswith(("TOKEN", "PASSWORD", "SECRET")):
            assert value in (None, ""), f"{name}: {key} is written in the compose file"
        if "MONGO_URI" in key.upper() and not key.upper().endswith("_FILE"):
            assert not re.search(r"//[^/@]*:[^/@]*@", str(value)), f"{name}: a password in {key}"
