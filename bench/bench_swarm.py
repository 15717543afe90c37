"""Swarm benchmark (issue 6, section 8): real student processes over DDS on this machine.

Realtime mode at 10 Hz with 3, 8 and 16 student nodes (simple_spread with N agents, random-weight MLP students
of one hidden layer of 64): missed deadlines (an agent's action for tick t not back before tick t+1),
observation->action latency over ROS (bridge publish -> action received, steady clock), per-node CPU and
RSS/USS measured from outside with psutil. Then lockstep steps/s for 3 agents.

    python bench/bench_swarm.py                 # writes bench/results/swarm.json
    python bench/bench_swarm.py --nodes 3 --episodes 2   # quick look
    python bench/bench_swarm.py --decision      # writes bench/results/swarm_decision.json

``--decision`` (issue 22): the students' own decision latency (their ResourceUsage p50/p99: validation, selection,
ONNX Runtime call, action choice) in the realtime fake swarm of ``swarm.launch.py backend:=fake mode:=realtime`` (3
robots: fake robot + adapter + student each, and the monitor), started by the ``kdmarl-swarm`` runner; and where a
decision's time goes: a probe process in the same swarm subscribes to agent_0's observations and runs the student's
steps one by one, each timed (ordering, validation, selection, the ONNX call, the output checks and action choice,
building and publishing the AgentAction), on the same bundle, at the same rate, under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from benchlib import write_result
from kdmarl_bringup.child_processes import ros_env
from kdmarl_bringup.swarm_runner import stop_process_groups
from kdmarl_bringup.testing import make_bundle

RSS_TARGET_MB = 80.0


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    stop_process_groups(procs, grace=15.0)


class Sampler(threading.Thread):
    """CPU % (of one core) and memory of the student processes, sampled once per second from outside."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.procs = [psutil.Process(p) for p in pids]
        self.cpu: list[list[float]] = [[] for _ in pids]
        self.rss: list[float] = [0.0] * len(pids)
        self.uss: list[float] = [0.0] * len(pids)
        self.pss: list[float] = [0.0] * len(pids)
        self.running = True
        self.measuring = False

    def run(self) -> None:
        for p in self.procs:
            p.cpu_percent(None)
        while self.running:
            time.sleep(1.0)
            for i, p in enumerate(self.procs):
                try:
                    cpu = p.cpu_percent(None)
                    mem = p.memory_full_info()
                except psutil.Error:
                    continue
                if self.measuring:
                    self.cpu[i].append(cpu)
                self.rss[i] = max(self.rss[i], mem.rss / 2**20)
                self.uss[i] = max(self.uss[i], mem.uss / 2**20)
                self.pss[i] = max(self.pss[i], mem.pss / 2**20)


def run_swarm(n: int, mode: str, *, episodes: int, rate: float, work: Path, domain: int) -> dict[str, Any]:
    bundle = make_bundle(work / f"bundle_n{n}", seed=n, hidden=64, N=n)
    env = ros_env(domain)
    agents = [f"agent_{i}" for i in range(n)]
    students = [_start([sys.executable, "-m", "kdmarl_student.student_node", "--ros-args", "-r", f"__ns:=/{a}",
                        "-p", f"bundle:={bundle}", "-p", f"mode:={mode}", "-p", f"control_rate_hz:={rate}"],
                       env, work / f"{a}_{mode}.log") for a in agents]
    sampler = Sampler([p.pid for p in students])
    sampler.start()
    results = work / f"bridge_{mode}_{n}.json"
    bridge = None
    try:
        time.sleep(2.0)  # let the processes import before the bridge starts counting
        sampler.measuring = True
        bridge = _start([sys.executable, "-m", "kdmarl_bringup.sim_bridge", "--ros-args", "-p", f"bundle:={bundle}",
                         "-p", f"mode:={mode}", "-p", f"rate_hz:={rate}", "-p", f"episodes:={episodes}",
                         "-p", f"results_file:={results}", "-p", "action_timeout_s:=5.0"],
                        env, work / f"bridge_{mode}_{n}.log")
        bridge.wait(timeout=600 + episodes * 60)
    finally:
        sampler.running = False
        _stop([*students, *([bridge] if bridge else [])])
    stats = json.loads(results.read_text())
    total_decisions = stats["steps"] * n
    cpu = [float(np.mean(c)) if c else 0.0 for c in sampler.cpu]
    return {
        "nodes": n,
        "mode": mode,
        "rate_hz": rate if mode == "realtime" else None,
        "steps": stats["steps"],
        "decisions": total_decisions,
        "missed": stats["missed_actions"],
        "missed_pct": 100.0 * stats["missed_actions"] / max(total_decisions, 1),
        "latency_p50_ms": stats["obs_to_action_ms"]["p50"],
        "latency_p99_ms": stats["obs_to_action_ms"]["p99"],
        "cpu_pct_per_node": float(np.mean(cpu)),
        "rss_mb_per_node_max": float(max(sampler.rss)),
        "uss_mb_per_node_max": float(max(sampler.uss)),
        "pss_mb_per_node_max": float(max(sampler.pss)),
        "lockstep_steps_per_s": stats.get("lockstep_steps_per_s"),
    }


PHASES = ("order", "validate", "select", "onnx", "choose", "publish", "total")


def _percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()),
            "n": int(a.size)}


def probe_decisions(bundle: Path, env: dict[str, str], seconds: float) -> dict[str, Any]:
    """The student's decision steps, timed one by one on agent_0's live observations (see the module docstring)."""
    code = PROBE.replace("@BUNDLE@", str(bundle)).replace("@SECONDS@", str(seconds))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=seconds + 120,
                         check=True)
    samples = json.loads(out.stdout.strip().splitlines()[-1])
    return {phase: _percentiles(samples[phase]) for phase in PHASES if samples[phase]}


PROBE = """
import json, time, numpy as np, rclpy
from rclpy.executors import SingleThreadedExecutor
from kdmarl_msgs.msg import AgentAction, AgentObservation
from kdmarl_student.policy import StudentPolicy
from kdmarl_student.observation import all_finite, validate_observation
from kdmarl_student.ros_support import ACTION_QOS, OBSERVATION_QOS
from kdmarl_student.sequencing import Sequencer
import onnxruntime as ort
policy = StudentPolicy("@BUNDLE@", "agent_0")
rclpy.init()
node = rclpy.create_node("decision_probe")
pub = node.create_publisher(AgentAction, "/decision_probe/action", ACTION_QOS)
seq = Sequencer()
phases = {k: [] for k in ("order", "validate", "select", "onnx", "choose", "publish", "total")}
def on_obs(msg):
    t0 = time.perf_counter()
    stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
    seq.classify(int(msg.episode), int(msg.step), stamp)
    t1 = time.perf_counter()
    obs = validate_observation(np.frombuffer(msg.data, dtype=np.float32), policy.source_dim, "agent_0")
    t2 = time.perf_counter()
    x = policy._select(obs[None])
    t3 = time.perf_counter()
    (out,) = policy.session.run([policy._output_name], {policy._input_name: x}, ort.RunOptions())  # as _run
    t4 = time.perf_counter()
    ok = out.shape == (1, policy.spec.n_actions) and all_finite(out[0])
    row = out[0].tolist()
    action = row.index(max(row))
    t5 = time.perf_counter()
    a = AgentAction(agent="agent_0", episode=msg.episode, step=msg.step, action=action, is_safe_action=not ok)
    a.header.stamp = node.get_clock().now().to_msg()
    pub.publish(a)
    t6 = time.perf_counter()
    seq.record(int(msg.episode), int(msg.step), stamp, action, False)
    for k, (a0, b0) in zip(phases, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6), (t0, t6))):
        phases[k].append(b0 - a0)
node.create_subscription(AgentObservation, "/agent_0/observation", on_obs, OBSERVATION_QOS)
ex = SingleThreadedExecutor(); ex.add_node(node)
end = time.monotonic() + @SECONDS@
while time.monotonic() < end:
    ex.spin_once(timeout_sec=0.1)
print(json.dumps(phases))
"""


def run_decision(bundle: Path, seconds: float, work: Path, domain: int, nice: int = 0) -> dict[str, Any]:
    """The realtime fake swarm for ``seconds``: the students' ResourceUsage latency (last report of each) and the
    probe's per-step timings. ``nice`` != 0: the students' ``nice`` parameter (a params file on top of the default)."""
    env = ros_env(domain)
    log_dir = work / f"decision_nice{nice}"
    extra: list[str] = []
    if nice:
        default = Path(__file__).resolve().parents[1] / "src" / "kdmarl_bringup" / "config" / "swarm.yaml"
        params = work / f"swarm_nice{nice}.yaml"
        params.write_text(default.read_text() + f"\n/**/student:\n  ros__parameters:\n    nice: {nice}\n")
        extra = ["--params-file", str(params)]
    runner = _start([sys.executable, "-m", "kdmarl_bringup.swarm_runner", "--bundle", str(bundle), "--backend", "fake",
                     "--mode", "realtime", "--episodes", "0", "--log-dir", str(log_dir), "--domain-id", str(domain),
                     *extra], env, work / f"decision_runner_nice{nice}.log")
    try:
        time.sleep(15.0)  # start-up and discovery
        breakdown = probe_decisions(bundle, env, seconds)
    finally:
        runner.send_signal(2)
        try:
            runner.wait(120)
        except subprocess.TimeoutExpired:
            _stop([runner])
    nodes = {}
    for line in (log_dir / "resource_usage.csv").read_text().splitlines()[1:]:
        cols = line.split(",")
        nodes[cols[3]] = {"decision_p50_ms": float(cols[4]), "decision_p99_ms": float(cols[5]),
                          "decision_max_ms": float(cols[6]), "decisions": int(cols[15])}
    return {"nodes": nodes, "breakdown": breakdown}


def main_decision(seconds: float) -> None:
    bundle = Path(__file__).resolve().parents[1] / "src" / "kdmarl_bringup" / "test" / "data" / "spread3"
    domain = 1 + os.getpid() % 100
    rows: list[dict[str, Any]] = []
    worst: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench_decision_") as tmp:
        for nice in (0, -10):
            result = run_decision(bundle, seconds, Path(tmp), domain, nice)
            nodes = [{"nice": nice, "node": name, **figures} for name, figures in sorted(result["nodes"].items())]
            worst[nice] = max(r["decision_p99_ms"] for r in nodes)
            rows += nodes
            rows += [{"nice": nice, "node": f"probe: {phase}", "decision_p50_ms": figures["p50_ms"],
                      "decision_p99_ms": figures["p99_ms"], "decision_max_ms": figures["max_ms"],
                      "decisions": figures["n"]} for phase, figures in result["breakdown"].items()]
    load = os.getloadavg()
    print(json.dumps(rows, indent=1), flush=True)
    write_result(
        "swarm_decision",
        title="Student decision latency in the realtime fake swarm (3 robots, 10 Hz) and where it goes",
        columns=["nice", "node", "decision_p50_ms", "decision_p99_ms", "decision_max_ms", "decisions"],
        rows=rows,
        targets=[{"what": f"student decision p99 (ResourceUsage, last window) in the fake swarm, students nice {n}",
                  "target": "<= 0.5 ms", "reached": f"{w:.3f} ms", "met": w <= 0.5} for n, w in worst.items()],
        notes=[
            "nodes: each student's ResourceUsage p50/p99/max over its last 10 000 decisions (StudentPolicy.act: "
            "validation, selection, ONNX Runtime call with the deadline's RunOptions, output checks, action choice)",
            "probe: one extra process subscribed to /agent_0/observation, timing the same steps one by one on the "
            "same bundle (order = the Sequencer, publish = building and publishing an AgentAction); total is all "
            "of them",
            "bundle: src/kdmarl_bringup/test/data/spread3 (MLP students, 1 ms latency budget); swarm: kdmarl-swarm "
            "--backend fake --mode realtime (3 fake robots, 3 adapters, 3 students, monitor; 10 processes)",
            "nice: the students' nice parameter (0 = default; -10 = a params file on top of config/swarm.yaml)",
            f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} over 1 / 5 / 15 min on "
            f"{os.cpu_count()} cores (the swarm's own processes included; run with nothing else on the machine)",
        ],
    )


def main() -> None:
    if "--decision" in sys.argv:
        seconds = float(sys.argv[sys.argv.index("--decision") + 1]) if len(sys.argv) > sys.argv.index(
            "--decision") + 1 else 60.0
        main_decision(seconds)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 8, 16])
    parser.add_argument("--episodes", type=int, default=4, help="Realtime episodes (25 steps each) per size.")
    parser.add_argument("--lockstep-episodes", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args()
    domain = 1 + os.getpid() % 100
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_swarm_") as tmp:
        work = Path(tmp)
        for n in args.nodes:
            row = run_swarm(n, "realtime", episodes=args.episodes, rate=args.rate, work=work, domain=domain)
            print(json.dumps(row), flush=True)
            rows.append(row)
        lock = run_swarm(3, "lockstep", episodes=args.lockstep_episodes, rate=args.rate, work=work, domain=domain)
        print(json.dumps(lock), flush=True)
        rows.append(lock)
    biggest = max((r for r in rows if r["mode"] == "realtime"), key=lambda r: r["nodes"])
    targets = [
        {"what": f"missed steps at {biggest['nodes']} nodes, {args.rate:g} Hz", "target": "0",
         "reached": str(biggest["missed"]), "met": biggest["missed"] == 0},
        {"what": "RSS per student node", "target": f"<= {RSS_TARGET_MB:g} MB",
         "reached": f"{max(r['rss_mb_per_node_max'] for r in rows):.0f} MB "
                    f"(USS {max(r['uss_mb_per_node_max'] for r in rows):.0f} MB)",
         "met": max(r["rss_mb_per_node_max"] for r in rows) <= RSS_TARGET_MB},
    ]
    write_result(
        "swarm",
        title="ROS 2 swarm: student processes over Fast DDS (realtime 10 Hz; lockstep 3 agents)",
        columns=["nodes", "mode", "decisions", "missed", "latency_p50_ms", "latency_p99_ms", "cpu_pct_per_node",
                 "rss_mb_per_node_max", "pss_mb_per_node_max", "uss_mb_per_node_max", "lockstep_steps_per_s"],
        rows=rows,
        targets=targets,
        notes=[
            "latency: bridge publishes observation t -> receives action t, steady clock, over DDS on localhost "
            "(includes both processes' executor wake-ups and the ONNX inference)",
            "missed: realtime, the action for tick t had not arrived when tick t+1 fired (the agent kept its "
            "previous action); lockstep: no action within the timeout",
            "CPU: mean percent of one core per student process while the bridge ran; RSS includes shared libraries "
            "(rclpy, Fast DDS, onnxruntime, numpy) mapped once for all processes; PSS splits those shared pages "
            "between the processes mapping them (the fair per-node share); USS is each node's own memory; "
            "bench/bench_node_memory.py breaks one node's memory down (docs/ARCHITECTURE.md, memory)",
            "students: random-weight MLP (1 hidden layer of 64), one process each, rmw_fastrtps_cpp, 1 ORT thread",
        ],
    )


if __name__ == "__main__":
    main()
