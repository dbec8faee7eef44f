"""The code stays ruff-clean: lint is part of the test command."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is in the [test] extra")
def test_ruff_clean():
    # Through this interpreter, so it runs whether or not the venv is on PATH.
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "rainbench", "tests", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
