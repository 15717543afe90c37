"""Small real bundles for tests, demos and benchmarks: ONNX MLPs written with ``onnx.helper`` from numpy
weights and a manifest written with the runtime's own writer (so it validates exactly as exported ones do).

Needs the ``onnx`` package (a development dependency, not a robot one): import this module only off-robot.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from kdmarl_student.manifest import build_agent_entry, build_manifest, dump_manifest
from kdmarl_student.scenarios import scenario_spec


def _mlp_onnx(weights: list[tuple[np.ndarray, np.ndarray]], input_name: str, output_name: str) -> bytes:
    import onnx  # noqa: PLC0415  development dependency
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    nodes, inits = [], []
    current = input_name
    for i, (w, b) in enumerate(weights):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        out = output_name if i == len(weights) - 1 else f"h{i}"
        pre = out if i == len(weights) - 1 else f"z{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"b{i}"], [pre], transB=0))
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Tanh", [pre], [out]))
        current = out
    graph = helper.make_graph(
        nodes, "student",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", weights[0][0].shape[0]])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", weights[-1][0].shape[1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kdmarl-test")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def make_bundle(out: Path, scenario: str = "simple_spread", seed: int = 0, hidden: int = 16,
                eval_seeds: list[int] | None = None, **scenario_params: Any) -> Path:
    """A valid bundle of random-weight MLP students (one per agent), written with the runtime's own writer."""

    spec = scenario_spec(scenario, **scenario_params)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for agent in spec.agents:
        w = [(rng.normal(0, 1.0, (agent.obs_dim, hidden)), rng.normal(0, 0.1, hidden)),
             (rng.normal(0, 1.0, (hidden, agent.n_actions)), rng.normal(0, 0.1, agent.n_actions))]
        data = _mlp_onnx(w, "observation", "logits")
        file = f"{agent.name}.onnx"
        (out / file).write_bytes(data)
        params = sum(a.size + b.size for a, b in w)
        flops = 2 * sum(a.size for a, _ in w)
        entries.append(build_agent_entry(
            name=agent.name, role=agent.role, source_dim=agent.obs_dim, layout=agent.layout,
            sensing={"slices": "all"}, action_meanings=agent.action_meanings, model_file=file,
            model_sha256=hashlib.sha256(data).hexdigest(), kind="student",
            resources={"params": params, "flops_per_decision": flops, "memory_bytes": 4 * params},
            control_rate_hz=10.0, opset=17, budget={"name": "test", "max_flops": 10 * flops},
        ))
    manifest = build_manifest(
        scenario=spec, agents=entries, eval_seeds=eval_seeds or [1000, 1001],
        producer={"tool": "kdmarl_bringup tests", "source": "random weights", "students": "distilled"},
        conventions={"flops": "2 x MACs", "memory": "weights", "latency": "not measured",
                     "team_return": "mean over agents"},
    )
    (out / "manifest.json").write_bytes(dump_manifest(manifest, out / "manifest.json"))
    return out


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
        bias = np.array([0.05, 0.0, 0.0, 0.0, 0.0])
        data = _mlp_onnx([(w, bias)], "observation", "logits")
        (bundle / entry["model"]["file"]).write_bytes(data)
        entry["model"]["sha256"] = hashlib.sha256(data).hexdigest()
    (bundle / "manifest.json").write_bytes(dump_manifest(manifest, bundle / "manifest.json"))
    return bundle
