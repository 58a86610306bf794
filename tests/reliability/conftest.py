"""Reliability tests share the serving fixtures (an app on a controllable clock, the simulated scenario)."""

from __future__ import annotations

from tests.serving.conftest import make_app, scenario, scenario_settings  # noqa: F401  (shared fixtures)
