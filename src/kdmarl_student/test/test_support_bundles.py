"""Bundles for the runtime's tests, built without torch: ONNX MLPs from numpy weights via ``onnx.helper``.

The student package's tests must not import torch (robots do not have it), so this module writes real
ONNX models (MatMul + Add + Tanh) and a manifest with the same builder ``kdmarl export`` uses. It is
imported by the other test modules; its own tests check the builder against a numpy forward pass.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from kdmarl_student.manifest import CONVENTIONS, MANIFEST_FILE, SCHEMA_VERSION, build_agent_entry, dump_manifest
from kdmarl_student.scenarios import scenario_spec
from kdmarl_student.sensing import sensed_dim
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
Weights = list[tuple[np.ndarray, np.ndarray]]


def random_mlp(widths: Sequence[int], seed: int) -> Weights:
    """float32 weights [in, out] and biases for a Tanh MLP with the given layer widths."""
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32), rng.normal(0, 0.1, b).astype(np.float32))
        for a, b in itertools.pairwise(widths)
    ]


def numpy_forward(weights: Weights, x: np.ndarray) -> np.ndarray:
    h = x.astype(np.float32)
    for i, (w, b) in enumerate(weights):
        h = h @ w + b
        if i < len(weights) - 1:
            h = np.tanh(h)
    return h


def write_onnx_mlp(path: Path, weights: Weights, input_name: str = "observation", output_name: str = "logits",
                   batch_dim: str | int = "batch") -> Path:
    """A real, checker-clean ONNX MLP with a dynamic batch axis."""
    nodes, inits = [], []
    current = input_name
    for i, (w, b) in enumerate(weights):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        last = i == len(weights) - 1
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"mm{i}"]))
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [output_name if last else f"z{i}"]))
        if not last:
            nodes.append(helper.make_node("Tanh", [f"z{i}"], [f"h{i}"]))
            current = f"h{i}"
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch_dim, weights[0][0].shape[0]])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch_dim, weights[-1][0].shape[1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kdmarl-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


def write_onnx_log_policy(path: Path, weights: np.ndarray) -> Path:
    """logits = log(obs + 1) @ W: finite on the zero observation (so the loader's dummy inference accepts
    the bundle) and for observations >= 0, NaN for a value below -1 and -Inf at -1: a graph that is broken
    only for some inputs, as real ones are."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["observation", "one"], ["shifted"]), helper.make_node("Log", ["shifted"], ["h"]),
         helper.make_node("MatMul", ["h", "w"], ["logits"])],
        "log_policy",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", weights.shape[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", weights.shape[1]])],
        [numpy_helper.from_array(np.ones(1, np.float32), "one"), numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kdmarl-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def make_bundle(
    bundle_dir: Path,
    scenario: str = "simple_spread",
    *,
    sensing: Mapping[str, Mapping[str, Any]] | None = None,
    hidden: Sequence[int] = (16,),
    budget: Mapping[str, Any] | None = None,
    seed: int = 0,
    **scenario_params: Any,
) -> tuple[Path, dict[str, Weights], Weights]:
    """Write a complete, valid bundle: one ONNX per agent, a shared teacher actor, the manifest.

    Returns (bundle_dir, per-agent weights, teacher weights) so tests can compute expected logits.
    """
    bundle_dir.mkdir(parents=True, exist_ok=True)
    spec = scenario_spec(scenario, **scenario_params)
    sensing = dict(sensing or {})
    n_agents = len(spec.agents)
    teacher_in = spec.obs_dim_max + n_agents
    teacher_w = random_mlp([teacher_in, 32, max(spec.n_actions)], seed + 1000)
    teacher_path = write_onnx_mlp(bundle_dir / "teacher_actor.onnx", teacher_w)
    entries, weights = [], {}
    for i, agent in enumerate(spec.agents):
        profile = dict(sensing.get(agent.name, {"slices": "all"}))
        in_dim = sensed_dim(agent.layout, profile)
        widths = [in_dim, *hidden, agent.n_actions]
        weights[agent.name] = random_mlp(widths, seed + i)
        path = write_onnx_mlp(bundle_dir / f"{agent.name}.onnx", weights[agent.name])
        macs = sum(a * b for a, b in itertools.pairwise(widths))
        params = macs + sum(widths[1:])
        entries.append(build_agent_entry(
            name=agent.name, role=agent.role, source_dim=agent.obs_dim, layout=agent.layout, sensing=profile,
            action_meanings=agent.action_meanings, model_file=path.name, model_sha256=sha256(path),
            kind="student", resources={"params": params, "flops_per_decision": 2 * macs,
                                       "memory_bytes": 4 * (params + sum(widths))},
            control_rate_hz=10.0, opset=OPSET, budget=budget, architecture=f"mlp{list(hidden)} tanh",
            model_bytes=path.stat().st_size,
        ))
    data = {
        "schema_version": SCHEMA_VERSION,
        "format": "kdmarl-bundle",
        "created": "2026-01-01T00:00:00+00:00",
        "producer": {"tool": "kdmarl tests", "source": "test", "students": "distilled"},
        "scenario": {"name": spec.name, "mpe2_module": spec.mpe2_module, "params": dict(spec.params),
                     "max_cycles": spec.max_cycles},
        "conventions": dict(CONVENTIONS),
        "agents": entries,
        "teacher": {"file": teacher_path.name, "sha256": sha256(teacher_path), "input_dim": teacher_in,
                    "n_actions": max(spec.n_actions), "input_name": "observation", "output_name": "logits",
                    "opset": OPSET, "resources": {"params": 1, "flops_per_decision": 1, "memory_bytes": 1},
                    "latency": None},
        "team": {"eval_seeds": [], "teacher_return": None, "student_return": None, "random_return": None,
                 "retention": None},
    }
    (bundle_dir / MANIFEST_FILE).write_bytes(dump_manifest(data, bundle_dir / MANIFEST_FILE))
    return bundle_dir, weights, teacher_w


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
