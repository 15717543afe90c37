"""Small real bundles for tests, demos and benchmarks, built without torch: ONNX MLPs and GRUs from numpy weights.

The one bundle builder of the project's tests (the runtime's, the bringup's) and of the swarm benchmarks:
real ONNX models (MatMul + Add + Tanh, and for recurrent students a GRU cell of MatMul/Add/Sigmoid/Tanh/Mul/Sub
with explicit state ``h_in`` -> ``h_out``, written with ``onnx.helper``) and a manifest from the exporter's own
builders (:func:`kdmarl_student.manifest.build_manifest`, ``build_agent_entry``), so it validates exactly as an
exported one. History-feature students are plain MLPs on the wider input the sensing profile gives.
:func:`numpy_gru_step` is the numpy reference of the recurrent graph. Needs the ``onnx`` package, a
development dependency: robots never import this module.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdmarl_student.manifest import (
    MANIFEST_FILE,
    action_mask_fields,
    build_agent_entry,
    build_manifest,
    dump_manifest,
    sha256_file,
)
from kdmarl_student.scenarios import scenario_spec
from kdmarl_student.sensing import sensed_dim

OPSET = 17

# colcon test runs the packages' suites side by side: each package's ROS tests draw their domains from their own
# range, so two suites never share a domain (kdmarl_msgs' one round trip uses 101). Within a package tests run one
# after another and consecutive draws differ (13 is coprime with the range's size, so the draws cycle through it).
ROS_TEST_DOMAINS = {"kdmarl_bringup": (1, 50), "kdmarl_student": (51, 100)}
_domain_draws = itertools.count()


def fresh_domain_id(package: str) -> int:
    """A ROS domain for one test of ``package`` (discovery should also be limited to localhost)."""
    low, high = ROS_TEST_DOMAINS[package]
    return low + (os.getpid() * 7 + next(_domain_draws) * 13) % (high - low + 1)
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
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415  development dependency

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
    return _save_graph(graph, path)


GATES = ("r", "z", "n")  # PyTorch's GRU gate order


@dataclass(frozen=True)
class GRUWeights:
    """A recurrent student: optional tanh MLP trunk, a GRU cell (PyTorch's GRUCell), a linear head.

    ``w_i[g]`` [in, H], ``w_h[g]`` [H, H], ``b_i[g]``, ``b_h[g]`` [H] for the gates g in r, z, n (weights stored
    [in, out] as for the MLPs, i.e. the transpose of torch's ``weight_ih`` blocks); ``head`` is (W [H, A], b [A]).
    """

    trunk: Weights
    w_i: dict[str, np.ndarray]
    w_h: dict[str, np.ndarray]
    b_i: dict[str, np.ndarray]
    b_h: dict[str, np.ndarray]
    head: tuple[np.ndarray, np.ndarray]

    @property
    def hidden_size(self) -> int:
        return int(self.w_h["r"].shape[0])

    @property
    def input_dim(self) -> int:
        return int(self.trunk[0][0].shape[0] if self.trunk else self.w_i["r"].shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.head[0].shape[1])

    def arrays(self) -> list[np.ndarray]:
        out = [a for pair in self.trunk for a in pair]
        for gate in GATES:
            out += [self.w_i[gate], self.w_h[gate], self.b_i[gate], self.b_h[gate]]
        return [*out, *self.head]


def random_gru(input_dim: int, hidden_size: int, n_actions: int, seed: int,
               trunk: Sequence[int] = ()) -> GRUWeights:
    """float32 weights of a recurrent student (PyTorch's uniform(-1/sqrt(H), 1/sqrt(H)) init for the cell)."""
    rng = np.random.default_rng(seed)
    trunk_w = random_mlp([input_dim, *trunk], seed + 7919) if trunk else []
    width = trunk[-1] if trunk else input_dim
    bound = 1.0 / np.sqrt(hidden_size)

    def uniform(*shape: int) -> np.ndarray:
        return rng.uniform(-bound, bound, shape).astype(np.float32)

    w_i = {g: uniform(width, hidden_size) for g in GATES}
    w_h = {g: uniform(hidden_size, hidden_size) for g in GATES}
    b_i = {g: uniform(hidden_size) for g in GATES}
    b_h = {g: uniform(hidden_size) for g in GATES}
    head = (rng.normal(0, 1 / np.sqrt(hidden_size), (hidden_size, n_actions)).astype(np.float32),
            rng.normal(0, 0.1, n_actions).astype(np.float32))
    return GRUWeights(trunk_w, w_i, w_h, b_i, b_h, head)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def numpy_gru_step(weights: GRUWeights, x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The numpy reference of the recurrent graph: (logits [B, A], h' [B, H]) for inputs x [B, in], h [B, H].

    r = σ(x W_ir + b_ir + h W_hr + b_hr); z = σ(x W_iz + b_iz + h W_hz + b_hz);
    n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn)); h' = (1 − z) ⊙ n + z ⊙ h; logits = h' W + b.
    """
    x = x.astype(np.float32)
    h = h.astype(np.float32)
    for w, b in weights.trunk:
        x = np.tanh(x @ w + b)
    gi = {g: x @ weights.w_i[g] + weights.b_i[g] for g in GATES}
    gh = {g: h @ weights.w_h[g] + weights.b_h[g] for g in GATES}
    r = _sigmoid(gi["r"] + gh["r"])
    z = _sigmoid(gi["z"] + gh["z"])
    n = np.tanh(gi["n"] + r * gh["n"])
    h_new = ((1.0 - z) * n + z * h).astype(np.float32)
    return (h_new @ weights.head[0] + weights.head[1]).astype(np.float32), h_new


def write_onnx_gru(path: Path, weights: GRUWeights, *, input_name: str = "observation", output_name: str = "logits",
                   state_input: str = "h_in", state_output: str = "h_out", batch_dim: str | int = "batch") -> Path:
    """A real, checker-clean recurrent student graph: (observation, h_in) -> (logits, h_out), the equations of
    :func:`numpy_gru_step` in elementary ops (what a torch export of a GRUCell computes)."""
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415  development dependency

    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def op(kind: str, inputs: list[str], output: str) -> str:
        nodes.append(helper.make_node(kind, inputs, [output]))
        return output

    x = input_name
    for i, (w, b) in enumerate(weights.trunk):
        x = op("Tanh", [op("Add", [op("MatMul", [x, const(f"tw{i}", w)], f"tmm{i}"), const(f"tb{i}", b)],
                            f"tz{i}")], f"th{i}")
    gi, gh = {}, {}
    for g in GATES:
        gi[g] = op("Add", [op("MatMul", [x, const(f"w_i{g}", weights.w_i[g])], f"xi{g}"),
                           const(f"b_i{g}", weights.b_i[g])], f"gi{g}")
        gh[g] = op("Add", [op("MatMul", [state_input, const(f"w_h{g}", weights.w_h[g])], f"hh{g}"),
                           const(f"b_h{g}", weights.b_h[g])], f"gh{g}")
    r = op("Sigmoid", [op("Add", [gi["r"], gh["r"]], "r_pre")], "r")
    z = op("Sigmoid", [op("Add", [gi["z"], gh["z"]], "z_pre")], "z")
    n = op("Tanh", [op("Add", [gi["n"], op("Mul", [r, gh["n"]], "r_gh_n")], "n_pre")], "n")
    keep = op("Mul", [op("Sub", [const("one", np.ones(1)), z], "one_minus_z"), n], "keep_n")
    h_new = op("Add", [keep, op("Mul", [z, state_input], "z_h")], state_output)
    op("Add", [op("MatMul", [h_new, const("head_w", weights.head[0])], "head_mm"), const("head_b", weights.head[1])],
       output_name)
    hidden = weights.hidden_size
    graph = helper.make_graph(
        nodes, "gru_student",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch_dim, weights.input_dim]),
         helper.make_tensor_value_info(state_input, TensorProto.FLOAT, [batch_dim, hidden])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch_dim, weights.n_actions]),
         helper.make_tensor_value_info(state_output, TensorProto.FLOAT, [batch_dim, hidden])],
        inits,
    )
    return _save_graph(graph, path)


def write_onnx_step_counter(path: Path, input_dim: int, n_actions: int, state_dim: int = 1) -> Path:
    """A recurrent "memory probe": the action is the number of decisions since the last reset, modulo n_actions.

    h_out = h_in + e_0 (unit 0 counts, the others stay 0) and logits_k = cos(2 pi (h_out[0] - k) / n_actions),
    whose argmax is ``h_out[0] mod n_actions``: after a reset the actions run 1, 2, 3, ... A reset that did not
    happen, or a state advanced twice (or by a refused observation), shifts every later action. The observation
    is an input (``obs @ 0``) but does not matter. Ops: MatMul, Add, Mul, Cos, Sin.
    """
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415  development dependency

    omega = 2.0 * np.pi / n_actions
    k = np.arange(n_actions)
    unit = np.zeros(state_dim, np.float32)
    unit[0] = 1.0
    arrays = {
        "unit": unit, "pick": unit[:, None].copy(), "omega": np.array([omega], np.float32),
        "cos_k": np.cos(omega * k)[None].astype(np.float32), "sin_k": np.sin(omega * k)[None].astype(np.float32),
        "ignore": np.zeros((input_dim, n_actions), np.float32),
    }
    nodes = [
        helper.make_node("Add", ["h_in", "unit"], ["h_out"]),
        helper.make_node("MatMul", ["h_out", "pick"], ["count"]),
        helper.make_node("Mul", ["count", "omega"], ["phase"]),
        helper.make_node("Cos", ["phase"], ["cos"]), helper.make_node("Sin", ["phase"], ["sin"]),
        helper.make_node("MatMul", ["cos", "cos_k"], ["cos_part"]),
        helper.make_node("MatMul", ["sin", "sin_k"], ["sin_part"]),
        helper.make_node("MatMul", ["observation", "ignore"], ["obs_part"]),
        helper.make_node("Add", ["cos_part", "sin_part"], ["wave"]),
        helper.make_node("Add", ["wave", "obs_part"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "step_counter",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", input_dim]),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, ["batch", state_dim])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_actions]),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["batch", state_dim])],
        [numpy_helper.from_array(v, name) for name, v in arrays.items()],
    )
    return _save_graph(graph, path)


def delta_probe_weights(input_dim: int, n_actions: int = 5, gain: float = 10.0) -> Weights:
    """A history-feature "memory probe" (one linear layer): move the way the last two input features (the delta
    of a 2-D slice, e.g. self_pos) moved, in MPE's move order (1 -x, 2 +x, 3 -y, 4 +y), and no-op (bias 0.5)
    when it moved less than 0.05. An episode start (delta 0) shows as a no-op; a missed reset as a move."""
    if n_actions < 5:
        raise ValueError("the delta probe needs MPE's 5 moves")
    w = np.zeros((input_dim, n_actions), np.float32)
    dx, dy = input_dim - 2, input_dim - 1
    w[dx, 1], w[dx, 2], w[dy, 3], w[dy, 4] = -gain, gain, -gain, gain
    b = np.zeros(n_actions, np.float32)
    b[0] = 0.5
    return [(w, b)]


def gru_resources(weights: GRUWeights) -> dict[str, int]:
    """params, FLOPs (2 x MACs of the MatMuls) and memory (weights + activations + the state, float32)."""
    hidden = weights.hidden_size
    macs = sum(int(w.shape[0] * w.shape[1]) for w, _ in weights.trunk)
    macs += sum(int(weights.w_i[g].size + weights.w_h[g].size) for g in GATES) + int(weights.head[0].size)
    params = sum(int(a.size) for a in weights.arrays())
    activations = sum(int(w.shape[1]) for w, _ in weights.trunk) + 8 * hidden + weights.n_actions
    return {"params": params, "flops_per_decision": 2 * macs,
            "memory_bytes": 4 * (params + weights.input_dim + activations + hidden)}


def _save_graph(graph: Any, path: Path) -> Path:
    """Wrap a test graph in an opset-17, IR-8 model (what ONNX Runtime 1.x and the exporter agree on), check it
    fully and write it."""
    import onnx  # noqa: PLC0415  development dependency
    from onnx import helper  # noqa: PLC0415

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kdmarl-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def write_onnx_compute_bomb(path: Path, input_dim: int, n_actions: int, iterations: int = 2_000_000_000) -> Path:
    """Issue 22's compute bomb: logits = obs @ W + v, where v counts the turns of an ONNX ``Loop`` of
    ``iterations`` trips taken only when ``obs[0, 0] < 0``. Finite and fast on the zero observation (0 trips), so
    every check of bytes, shapes and the dummy inference passes; one negative reading runs for an hour. Every
    other operator is one the exporter writes: the runtime refuses it for its ``Loop`` (node 4)."""
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "bomb_body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )
    weights = np.random.default_rng(0).normal(size=(input_dim, n_actions)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["observation", "index0"], ["x0"], axis=1),
         helper.make_node("Gather", ["x0", "index0"], ["x00"], axis=0),
         helper.make_node("Greater", ["zero", "x00"], ["negative"]),
         helper.make_node("Where", ["negative", "many", "none"], ["trips"]),
         helper.make_node("Loop", ["trips", "true", "v0"], ["v"], body=body),
         helper.make_node("MatMul", ["observation", "w"], ["mm"]),
         helper.make_node("Add", ["mm", "v"], ["logits"])],
        "compute_bomb",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", input_dim])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_actions])],
        [numpy_helper.from_array(np.array(0, np.int64), "index0"), numpy_helper.from_array(np.array(0.0, np.float32),
                                                                                            "zero"),
         numpy_helper.from_array(np.array(iterations, np.int64), "many"),
         numpy_helper.from_array(np.array(0, np.int64), "none"), numpy_helper.from_array(np.array(True), "true"),
         numpy_helper.from_array(np.array(0.0, np.float32), "v0"), numpy_helper.from_array(weights, "w")],
    )
    return _save_graph(graph, path)


def write_onnx_log_policy(path: Path, weights: np.ndarray) -> Path:
    """logits = log(obs + 1) @ W: finite on the zero observation (so the loader's dummy inference accepts
    the bundle) and for observations >= 0, NaN for a value below -1 and -Inf at -1: a graph that is broken
    only for some inputs, as real ones are (on simple_spread's relative positions it breaks within an episode)."""
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    graph = helper.make_graph(
        [helper.make_node("Add", ["observation", "one"], ["shifted"]), helper.make_node("Log", ["shifted"], ["h"]),
         helper.make_node("MatMul", ["h", "w"], ["logits"])],
        "log_policy",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", weights.shape[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", weights.shape[1]])],
        [numpy_helper.from_array(np.ones(1, np.float32), "one"), numpy_helper.from_array(weights, "w")],
    )
    return _save_graph(graph, path)


def write_onnx_slow_mlp(path: Path, input_dim: int, n_actions: int, width: int = 2048, layers: int = 600) -> Path:
    """A deliberately huge but allowed MLP (MatMul + Tanh only): ``layers`` hidden layers of ``width`` sharing one
    weight matrix (16 MB by default), about ``layers * width**2`` multiply-adds per decision: about 0.4 s by default
    here (2.5 G multiply-adds), far over any latency budget, on every observation including the zero one. Loading
    it takes ONNX Runtime several seconds."""
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    rng = np.random.default_rng(0)
    w_in = (rng.normal(size=(input_dim, width)) / np.sqrt(input_dim)).astype(np.float32)
    w = (rng.normal(size=(width, width)) / np.sqrt(width)).astype(np.float32)
    w_out = (rng.normal(size=(width, n_actions)) / np.sqrt(width)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["observation", "w_in"], ["z0"]), helper.make_node("Tanh", ["z0"], ["h0"])]
    for i in range(layers):
        nodes += [helper.make_node("MatMul", [f"h{i}", "w"], [f"z{i + 1}"]),
                  helper.make_node("Tanh", [f"z{i + 1}"], [f"h{i + 1}"])]
    nodes.append(helper.make_node("MatMul", [f"h{layers}", "w_out"], ["logits"]))
    graph = helper.make_graph(
        nodes, "slow_mlp",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", input_dim])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_actions])],
        [numpy_helper.from_array(w_in, "w_in"), numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(w_out, "w_out")],
    )
    return _save_graph(graph, path)


def make_bundle(
    bundle_dir: Path,
    scenario: str = "simple_spread",
    *,
    sensing: Mapping[str, Mapping[str, Any]] | None = None,
    hidden: Sequence[int] = (16,),
    budget: Mapping[str, Any] | None = None,
    seed: int = 0,
    eval_seeds: Sequence[int] | None = None,
    recurrent: Mapping[str, int | Mapping[str, Any]] | None = None,
    memory_probe: bool = False,
    **scenario_params: Any,
) -> tuple[Path, dict[str, Any], Weights]:
    """Write a complete, valid bundle: one ONNX per agent, a shared teacher actor, the manifest.

    Returns (bundle_dir, per-agent weights, teacher weights) so tests can compute expected logits. The
    manifest comes from the exporter's own builders, so it validates exactly as exported ones do.

    Students with memory: a ``sensing`` profile with ``"history"`` makes that agent a history-feature MLP
    (its manifest entry gets the ``history`` memory entry); ``recurrent={"agent_1": 8}`` (or
    ``{"agent_1": {"state_dim": 8, "trunk": [16]}}``) makes it a GRU student with that hidden size, after an
    optional tanh trunk: its weights are then a :class:`GRUWeights` (see :func:`numpy_gru_step`).

    ``memory_probe=True`` gives the agents with memory hand-written models whose actions show their memory
    (random small GRUs forget within a few steps, so a missed reset would barely change an action): a
    recurrent agent runs :func:`write_onnx_step_counter` (its weights entry is ``None``), a history agent
    :func:`delta_probe_weights` (its profile's history must end with a 2-D delta, e.g. of self_pos).
    """
    bundle_dir.mkdir(parents=True, exist_ok=True)
    spec = scenario_spec(scenario, **scenario_params)
    sensing = dict(sensing or {})
    n_agents = len(spec.agents)
    teacher_in = spec.obs_dim_max + n_agents
    teacher_w = random_mlp([teacher_in, 32, max(spec.n_actions)], seed + 1000)
    teacher_path = write_onnx_mlp(bundle_dir / "teacher_actor.onnx", teacher_w)
    recurrent = dict(recurrent or {})
    unknown = sorted(set(recurrent) - {a.name for a in spec.agents})
    if unknown:
        raise ValueError(f"recurrent names agents {unknown} not in {scenario}")
    entries: list[dict[str, Any]] = []
    weights: dict[str, Any] = {}
    for i, agent in enumerate(spec.agents):
        profile = dict(sensing.get(agent.name, {"slices": "all"}))
        in_dim = sensed_dim(agent.layout, profile)
        path = bundle_dir / f"{agent.name}.onnx"
        memory: dict[str, Any] | None = None
        if agent.name in recurrent:
            options = recurrent[agent.name]
            options = {"state_dim": options} if isinstance(options, int) else dict(options)
            trunk = tuple(options.get("trunk", ()))
            gru = random_gru(in_dim, int(options["state_dim"]), agent.n_actions, seed + i, trunk=trunk)
            resources = gru_resources(gru)
            memory = {"kind": "recurrent", "state_dim": gru.hidden_size}
            if memory_probe:
                weights[agent.name] = None
                write_onnx_step_counter(path, in_dim, agent.n_actions, gru.hidden_size)
                architecture = "step counter (memory probe)"
            else:
                weights[agent.name] = gru
                write_onnx_gru(path, gru)
                architecture = f"gru{gru.hidden_size} after mlp{list(trunk)} tanh"
        else:
            widths = [in_dim, *hidden, agent.n_actions]
            weights[agent.name] = random_mlp(widths, seed + i)
            if memory_probe and profile.get("history") is not None:
                weights[agent.name] = delta_probe_weights(in_dim, agent.n_actions)
            write_onnx_mlp(path, weights[agent.name])
            macs = sum(a * b for a, b in itertools.pairwise(widths))
            params = macs + sum(widths[1:])
            state = 4 * (agent.obs_dim if profile.get("history") is not None else 0)
            resources = {"params": params, "flops_per_decision": 2 * macs,
                         "memory_bytes": 4 * (params + sum(widths)) + state}
            architecture = f"mlp{list(hidden)} tanh" + (" + history features" if state else "")
        entries.append(build_agent_entry(
            name=agent.name, role=agent.role, source_dim=agent.obs_dim, layout=agent.layout, sensing=profile,
            action_meanings=agent.action_meanings, model_file=path.name, model_sha256=sha256_file(path),
            kind="student", resources=resources, control_rate_hz=10.0, opset=OPSET, budget=budget,
            architecture=architecture, model_bytes=path.stat().st_size, memory=memory,
            **action_mask_fields(spec),  # SMAX: safe action "stop" and the mask (schema 1.2)
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


__all__ = ["OPSET", "GRUWeights", "Weights", "delta_probe_weights", "gru_resources", "make_bundle", "numpy_forward",
           "numpy_gru_step", "random_gru", "random_mlp", "write_onnx_compute_bomb", "write_onnx_gru",
           "write_onnx_log_policy", "write_onnx_mlp", "write_onnx_slow_mlp", "write_onnx_step_counter"]
