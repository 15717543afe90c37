"""Test-side bundle helpers of the runtime: the shared builder (:mod:`kdmarl_student.testing`), re-exported, and
what only attacks need (editing a manifest behind the validator's back, installing a model, a graph broken
for some inputs). Its own tests check the builder against a numpy forward pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kdmarl_student.manifest import MANIFEST_FILE
from kdmarl_student.manifest import sha256_file as sha256
from kdmarl_student.testing import (  # the one builder, re-exported for the runtime's test modules
    make_bundle,
    numpy_forward,
    random_mlp,
    write_onnx_log_policy,  # noqa: F401
    write_onnx_mlp,
)


def edit_manifest(bundle: Path, edit: Callable[[dict], None]) -> None:
    """Change a bundle's manifest in place, as an attacker would (no validation on the way out)."""
    path = bundle / MANIFEST_FILE
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def install_model(bundle: Path, agent_index: int, path: Path) -> Path:
    """Make the manifest list ``path`` (a model already written into the bundle) with its sha256 and size,
    so a test exercises the check after the hash, not the hash."""
    def edit(data: dict) -> None:
        model = data["agents"][agent_index]["model"]
        model.update(file=path.name, sha256=sha256(path), bytes=path.stat().st_size)

    edit_manifest(bundle, edit)
    return path


def test_onnx_builder_matches_numpy(tmp_path: Path) -> None:
    import onnxruntime as ort

    weights = random_mlp([7, 5, 3], seed=3)
    path = write_onnx_mlp(tmp_path / "m.onnx", weights)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(64, 7)).astype(np.float32)
    (out,) = session.run(None, {"observation": x})
    np.testing.assert_allclose(out, numpy_forward(weights, x), atol=1e-5)


def test_make_bundle_writes_a_valid_manifest(tmp_path: Path) -> None:
    from kdmarl_student.manifest import load_manifest

    bundle, _, _ = make_bundle(tmp_path / "b", sensing={"agent_1": {"slices": ["self_vel", "landmarks"]}})
    manifest = load_manifest(bundle)
    assert manifest.agent_names == ("agent_0", "agent_1", "agent_2")
    assert manifest.agent("agent_1").input_dim == 8
    assert manifest.agent("agent_0").sensing["slices"] == ["self_vel", "self_pos", "landmarks", "other_agents", "comm"]


def test_committed_reference_bundle_still_validates() -> None:
    """The trained bundle the bringup tests use passes the tightened (closed) schema and every model check."""
    from kdmarl_student.manifest import load_manifest

    bundle = Path(__file__).resolve().parents[2] / "kdmarl_bringup" / "test" / "data" / "spread3"
    if not (bundle / MANIFEST_FILE).is_file():
        pytest.skip(f"{bundle} is not in this checkout")
    manifest = load_manifest(bundle)
    assert all(manifest.read_model(agent).data for agent in manifest.agents)
    assert manifest.read_teacher_model().data
