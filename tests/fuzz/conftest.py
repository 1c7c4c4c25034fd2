"""Fuzzing tests: hypothesis properties run with the suite; the atheris harness is marked."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # registered here, not in pyproject: an unknown mark is an error under filterwarnings
    config.addinivalue_line("markers", "fuzz: coverage-guided fuzzing (atheris), a few seconds")
