"""Bundles for the bringup tests, demos and benchmarks: the shared builder plus a policy that seeks landmarks.

Random-weight students come from :func:`kdmarl_student.testing.make_bundle` (the one bundle builder);
:func:`make_seeker_bundle` rewrites its models into a hand-written policy that reaches landmarks without
training. Needs the ``onnx`` package (a development dependency, not a robot one): import this module only
off-robot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from kdmarl_student.manifest import dump_manifest, sha256_file
from kdmarl_student.testing import make_bundle as make_student_bundle
from kdmarl_student.testing import write_onnx_mlp


def make_bundle(out: Path, scenario: str = "simple_spread", seed: int = 0, hidden: int = 16,
                eval_seeds: list[int] | None = None, *, sensing: dict[str, dict] | None = None,
                recurrent: dict[str, Any] | None = None, memory_probe: bool = False, **scenario_params: Any) -> Path:
    """A valid bundle of random-weight MLP students (one hidden layer of ``hidden``), one per agent.

    ``sensing``, ``recurrent`` and ``memory_probe`` are :func:`kdmarl_student.testing.make_bundle`'s: history
    features, GRU students, and hand-written students whose actions show their memory.
    """
    bundle, _, _ = make_student_bundle(out, scenario, hidden=(hidden,), seed=seed, sensing=sensing,
                                       recurrent=recurrent, memory_probe=memory_probe,
                                       eval_seeds=eval_seeds or [1000, 1001], **scenario_params)
    return bundle


def make_seeker_bundle(out: Path, damping: float = 0.5) -> Path:
    """A hand-written policy that reaches landmarks without training: agent i steers at landmark i.

    One linear layer on simple_spread's observation: the logit of a move is the component, along that move,
    of ``(landmark_i - self) - damping * velocity``; no-op wins when that vector is short. It stands in for
    a trained bundle wherever a test needs a team that actually covers the landmarks.
    """
    bundle = make_bundle(out, seed=0)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for i, entry in enumerate(manifest["agents"]):
        layout = entry["observation"]["layout"]
        w = np.zeros((entry["observation"]["source_dim"], 5))
        vx, vy = layout["self_vel"][0], layout["self_vel"][0] + 1
        lx, ly = layout["landmarks"][0] + 2 * i, layout["landmarks"][0] + 2 * i + 1
        for row, sign in ((lx, 1.0), (vx, -damping)):
            w[row, 1], w[row, 2] = -sign, sign
        for row, sign in ((ly, 1.0), (vy, -damping)):
            w[row, 3], w[row, 4] = -sign, sign
        bias = np.array([0.05, 0.0, 0.0, 0.0, 0.0], dtype=np.float32)
        path = write_onnx_mlp(bundle / entry["model"]["file"], [(w.astype(np.float32), bias)])
        entry["model"].update(sha256=sha256_file(path), bytes=path.stat().st_size)
    (bundle / "manifest.json").write_bytes(dump_manifest(manifest, bundle / "manifest.json"))
    return bundle
