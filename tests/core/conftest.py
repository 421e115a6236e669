"""Fixtures for the core tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "clusterfw-peakfinder"


@pytest.fixture(scope="session")
def example_plugin_installed():
    """pip-install the example third-party plugin into the test environment."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return True
