"""The bringup processes that run no policy import no policy runtime: a simulation machine or a monitoring
laptop needs neither torch nor onnxruntime nor psutil (docs/ARCHITECTURE.md, the rooms and their imports).
Checked in a fresh interpreter, since a test process has imported everything already."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "kdmarl_teacher", "onnxruntime", "psutil")


@pytest.mark.parametrize("module", ["kdmarl_bringup.sim_bridge", "kdmarl_bringup.monitor",
                                    "kdmarl_bringup.swarm_runner", "kdmarl_bringup.swarm_spec",
                                    "kdmarl_bringup.robot_adapter", "kdmarl_bringup.fake_robot",
                                    "kdmarl_bringup.drive", "kdmarl_bringup.fleet_stop"])
def test_module_imports_no_policy_runtime(module: str) -> None:
    probe = (f"import sys, {module}\n"
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{module} imports {result.stdout.strip()}"
