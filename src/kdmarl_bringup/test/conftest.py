"""Shared helpers of the bringup tests: real bundles, isolated ROS domains, and process groups that always
get cleaned up.

Every ROS test runs its nodes as real processes over DDS. Each test gets its own ``ROS_DOMAIN_ID`` (derived
from the pid and a counter) with discovery limited to localhost, so tests running in parallel on one
machine (several engineers, CI) cannot hear each other.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
TRAINED_BUNDLE = Path(__file__).resolve().parent / "data" / "spread3"
_domains = itertools.count()


def fresh_domain_id() -> int:
    """A ROS domain for one test: 1..101 are safe on Linux for any participant count; avoid 0 (default)."""
    return 1 + (os.getpid() * 7 + next(_domains) * 13) % 100


def ros_env(domain_id: int) -> dict[str, str]:
    """The environment for child processes: this interpreter's PYTHONPATH (source or install tree) + domain."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    return env


class Processes:
    """Child processes of one test, each in its own session; ``stop`` sends SIGINT, then SIGKILL."""

    def __init__(self, domain_id: int, log_dir: Path) -> None:
        self.env = ros_env(domain_id)
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, module: str, *args: str, params: dict[str, Any] | None = None,
              ros_args: list[str] | None = None) -> subprocess.Popen:
        cmd = [sys.executable, "-m", module, *args]
        extra = list(ros_args or [])
        for key, value in (params or {}).items():
            extra += ["-p", f"{key}:={_param_text(value)}"]
        if extra:
            cmd += ["--ros-args", *extra]
        log = (self.log_dir / f"{name}.log").open("w")
        proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"----- {n}\n{self.log(n)[-3000:]}" for n in self.procs)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self, name: str, timeout: float = 15.0) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_text(v) for v in value) + "]"
    return str(value)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(fresh_domain_id(), tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
def ros_node(processes: Processes) -> Iterator[Any]:
    """An rclpy node of the test process in the test's domain, torn down afterwards."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(processes.env["ROS_DOMAIN_ID"]))
    node = rclpy.create_node("test_probe", context=context)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def spin_until(node: Any, predicate: Any, timeout: float, procs: Processes | None = None,
               alive: tuple[str, ...] = ()) -> bool:
    """Spin ``node`` until ``predicate()`` or timeout; fail early if a process that must live died."""
    import rclpy

    executor = rclpy.executors.SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            executor.spin_once(timeout_sec=0.05)
            for name in alive:
                assert procs is not None
                if procs.procs[name].poll() is not None:
                    raise AssertionError(f"process {name} died:\n{procs.logs()}")
        return bool(predicate())
    finally:
        executor.remove_node(node)


# ---------------------------------------------------------------------------------------------- bundles
def _mlp_onnx(weights: list[tuple[np.ndarray, np.ndarray]], input_name: str, output_name: str) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

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
                eval_seeds: list[int] | None = None) -> Path:
    """A valid bundle of random-weight MLP students (one per agent), written with the runtime's own writer."""
    from kdmarl_student.manifest import build_agent_entry, dump_manifest
    from kdmarl_student.scenarios import scenario_spec

    spec = scenario_spec(scenario)
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
    spec_dict = spec.to_dict()
    manifest = {
        "schema_version": "1.0", "format": "kdmarl-bundle",
        "created": datetime.datetime.now(datetime.UTC).isoformat(),
        "producer": {"tool": "kdmarl_bringup tests", "source": "random weights", "students": "distilled"},
        "scenario": {"name": spec.name, "mpe2_module": spec.mpe2_module, "params": spec_dict["params"],
                     "max_cycles": spec.max_cycles},
        "conventions": {"flops": "2 x MACs", "memory": "weights", "latency": "not measured",
                        "team_return": "mean over agents"},
        "agents": entries,
        "teacher": None,
        "team": {"eval_seeds": eval_seeds or [1000, 1001], "teacher_return": None, "student_return": None,
                 "random_return": None, "retention": None},
    }
    (out / "manifest.json").write_bytes(dump_manifest(manifest, out / "manifest.json"))
    return out


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def make_seeker_bundle(out: Path, damping: float = 0.5) -> Path:
    """A hand-written policy that reaches landmarks without training: agent i steers at landmark i.

    One linear layer on simple_spread's observation: the logit of a move is the component, along that move,
    of ``(landmark_i - self) - damping * velocity``; no-op wins when that vector is short. It stands in for
    a trained bundle wherever a test needs a team that actually covers the landmarks.
    """
    bundle = make_bundle(out, seed=0)
    manifest = json.loads((bundle / "manifest.json").read_text())
    from kdmarl_student.manifest import dump_manifest

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
