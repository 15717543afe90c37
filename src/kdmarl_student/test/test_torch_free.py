"""The on-board runtime must run where torch does not exist: checked in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_support_bundles import make_bundle

PROBE = """
import json, sys
import numpy as np
from kdmarl_student.policy import StudentPolicy
from kdmarl_student.bundle_eval import evaluate_bundle
from kdmarl_student import manifest, observation, metering, signing, errors, sensing, scenarios
policy = StudentPolicy(sys.argv[1], "agent_0")
action = policy.act(np.zeros(18, dtype=np.float32))
result = evaluate_bundle(sys.argv[1], [1, 2])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "kdmarl_teacher", "onnx", "onnxscript"))
print(json.dumps({"action": action, "heavy": heavy, "returns": result.returns.tolist()}))
"""


def test_runtime_imports_neither_torch_nor_the_teacher(tmp_path: Path) -> None:
    bundle, _, _ = make_bundle(tmp_path / "bundle")
    src = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", PROBE, str(bundle)], capture_output=True, text=True,
                            env=env, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], f"the runtime pulled in {report['heavy']}"
    assert report["action"] in range(5) and len(report["returns"]) == 2
