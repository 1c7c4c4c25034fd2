from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # registered here, not in pyproject: an unknown mark is an error under filterwarnings
    config.addinivalue_line("markers", "faults: separate processes, kill -9 and friends (runs by default)")
