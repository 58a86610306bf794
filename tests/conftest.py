"""Shared fixtures: one real SecantusDB server per test session, spoken to over TCP.

Each test that asks for ``db`` gets its own database on that server (dropped after),
and a ``settings`` object pointing at it through ``MONGO_URI``, like production.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from telemetry.settings import Settings
from telemetry.store import connect
from tests.scenario import make_app, scenario, scenario_settings  # noqa: F401  (one scenario for the whole session)
from tests.serving.fleet_data import fleet_database, fleet_settings  # noqa: F401  (three services and the default one)

UTC = dt.timezone.utc
REPO = Path(__file__).resolve().parents[1]

# Optional dependencies and tools, probed once (tests skip cleanly where one is missing).
HAS_TORCH = importlib.util.find_spec("torch") is not None

# The server and browser some tests drive (Debian's prometheus package and chromium). `make test` installs them
# where the machine allows it (scripts/system-deps.sh); elsewhere their tests skip, naming the command that would.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
INSTALL_HINT = "sudo make system-deps"


def _needs(tool: str, path: str | None) -> pytest.MarkDecorator:
    return pytest.mark.skipif(path is None, reason=f"{tool} is not installed; install it with `{INSTALL_HINT}`")


needs_prometheus = _needs("prometheus", PROMETHEUS)
needs_promtool = _needs("promtool", PROMTOOL)
needs_chromium = _needs("chromium", CHROMIUM)
_TOOL_MARKS = {"prometheus": needs_prometheus, "promtool": needs_promtool, "chromium": needs_chromium}


def pytest_report_header(config: pytest.Config) -> str | None:
    """One line before the tests start (also under pytest-xdist, whose workers collect): the tests that will skip for
    a missing server or browser, and the command that installs it."""
    missing = [tool for tool, mark in _TOOL_MARKS.items() if mark.args[0]]
    if not missing:
        return None
    files = sorted(str(path.relative_to(REPO)) for path in (REPO / "tests").rglob("test_*.py")
                   if any(f"needs_{tool}" in path.read_text() for tool in missing))
    return (f"{', '.join(missing)} not installed: their tests will be skipped ({', '.join(files)}); "
            f"install with `{INSTALL_HINT}`")


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from telemetry.embedded import open_server

    server = open_server(tmp_path_factory.mktemp("secantus"), port=0)
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def settings(mongo_uri: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own database and models directory."""
    return Settings(
        mongo_uri=mongo_uri,
        database=f"test_{uuid.uuid4().hex[:12]}",
        models_dir=tmp_path / "models",
        data_dir=tmp_path / "db",
    )


@pytest.fixture
def db(settings: Settings):
    database = connect(settings, autostart=False)
    try:
        yield database
    finally:
        database.client.drop_database(database.name)
        database.client.close()


def with_settings(settings: Settings, **changes) -> Settings:
    return dataclasses.replace(settings, **changes)
