"""Serving tests use the session's simulated scenario (tests/scenario.py, registered by tests/conftest.py)."""

from __future__ import annotations

from tests.scenario import SCENARIO_END, SCENARIO_START, Clock, Scenario, at  # noqa: F401  (re-exported for the tests)
