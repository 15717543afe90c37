"""Swarm benchmark (issue 6, section 8): real student processes over DDS on this machine.

Realtime mode at 10 Hz with 3, 8 and 16 student nodes (simple_spread with N agents, random-weight MLP students
of one hidden layer of 64): missed deadlines (an agent's action for tick t not back before tick t+1),
observation->action latency over ROS (bridge publish -> action received, steady clock), per-node CPU and
RSS/USS measured from outside with psutil. Then lockstep steps/s for 3 agents.

    python bench/bench_swarm.py                 # writes bench/results/swarm.json
    python bench/bench_swarm.py --nodes 3 --episodes 2   # quick look
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
from kdmarl_bringup.swarm_runner import stop_process_groups
from kdmarl_bringup.testing import make_bundle

RSS_TARGET_MB = 80.0


def _env(domain: int) -> dict[str, str]:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


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
    env = _env(domain)
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


def main() -> None:
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
