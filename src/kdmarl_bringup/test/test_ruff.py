"""Lint as ROS packages do: ruff with the workspace's ruff.toml, failing on any finding."""

import subprocess
import sys
from pathlib import Path


def test_ruff_clean() -> None:
    package_dir = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", str(package_dir)]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
