"""Security tests: the ``network`` marker. (The scenario and app fixtures come from tests/conftest.py.)"""

from __future__ import annotations


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "network: reaches PyPI's advisory database (pip-audit); `-m 'not network'` skips it")
