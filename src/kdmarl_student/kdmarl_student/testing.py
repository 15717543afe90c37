"""Small real bundles for tests, demos and benchmarks, built without torch: ONNX MLPs from numpy weights.

The one bundle builder of the project's tests (the runtime's, the bringup's) and of the swarm benchmarks:
real ONNX models (MatMul + Add + Tanh, written with ``onnx.helper``) and a manifest from the exporter's own
builders (:func:`kdmarl_student.manifest.build_manifest`, ``build_agent_entry``), so it validates exactly as an
exported one. Needs the ``onnx`` package, a development dependency: robots never import this module.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdmarl_student.manifest import MANIFEST_FILE, build_agent_entry, build_manifest, dump_manifest, sha256_file
from kdmarl_student.scenarios import scenario_spec
from kdmarl_student.sensing import sensed_dim

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
    """A real, checker-clean ONNX MLP (MatMul + Add + Tanh) with a dynamic batch axis."""
    import onnx  # noqa: PLC0415  development dependency
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

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


def make_bundle(
    bundle_dir: Path,
    scenario: str = "simple_spread",
    *,
    sensing: Mapping[str, Mapping[str, Any]] | None = None,
    hidden: Sequence[int] = (16,),
    budget: Mapping[str, Any] | None = None,
    seed: int = 0,
    eval_seeds: Sequence[int] | None = None,
    **scenario_params: Any,
) -> tuple[Path, dict[str, Weights], Weights]:
    """Write a complete, valid bundle: one ONNX per agent, a shared teacher actor, the manifest.

    Returns (bundle_dir, per-agent weights, teacher weights) so tests can compute expected logits. The
    manifest comes from the exporter's own builders, so it validates exactly as exported ones do.
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
            action_meanings=agent.action_meanings, model_file=path.name, model_sha256=sha256_file(path),
            kind="student", resources={"params": params, "flops_per_decision": 2 * macs,
                                       "memory_bytes": 4 * (params + sum(widths))},
            control_rate_hz=10.0, opset=OPSET, budget=budget, architecture=f"mlp{list(hidden)} tanh",
            model_bytes=path.stat().st_size,
        ))
    teacher = {"file": teacher_path.name, "sha256": sha256_file(teacher_path), "input_dim": teacher_in,
               "n_actions": max(spec.n_actions), "input_name": "observation", "output_name": "logits",
               "opset": OPSET, "resources": {"params": 1, "flops_per_decision": 1, "memory_bytes": 1},
               "latency": None}
    data = build_manifest(scenario=spec, agents=entries, teacher=teacher, eval_seeds=eval_seeds,
                          producer={"tool": "kdmarl tests", "source": "random weights", "students": "distilled"})
    data["created"] = "2026-01-01T00:00:00+00:00"  # byte-identical bundles from identical arguments
    (bundle_dir / MANIFEST_FILE).write_bytes(dump_manifest(data, bundle_dir / MANIFEST_FILE))
    return bundle_dir, weights, teacher_w


__all__ = ["OPSET", "Weights", "make_bundle", "numpy_forward", "random_mlp", "write_onnx_mlp"]
