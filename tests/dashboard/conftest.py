"""Dashboard fixtures: the serving tests' simulated scenario and app factory, reused as they are."""

from tests.serving.conftest import make_app, scenario, scenario_settings  # noqa: F401  (pytest fixtures)
