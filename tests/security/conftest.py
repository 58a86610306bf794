"""Security tests share the serving fixtures (an app on a controllable clock, the simulated scenario)."""

from __future__ import annotations

from tests.serving.conftest import make_app, scenario, scenario_settings  # noqa: F401  (shared fixtures)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "network: reaches PyPI's advisory database (pip-audit); `-m 'not network'` skips it")
