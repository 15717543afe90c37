"""Memory of one student node in isolation (issue 6, section 8: RSS <= 80 MB per node): where it goes and what
the process-level knobs change.

1. Stages: a fresh interpreter imports and starts a student node step by step (numpy, onnxruntime, rclpy, the
   node's modules, rclpy.init, the node and its Fast DDS participant, configure = manifest + JSON Schema + ONNX
   Runtime session + dummy inference, then the publishers/subscription, first inference) and reads
   /proc/self/smaps_rollup after each: RSS, PSS, USS, anonymous and file-backed.
2. Running: one real student process (realtime, 10 Hz) driven by an observation publisher in this process for
   --seconds; memory of the student from outside (psutil memory_full_info, max over 1 s samples) and
   observation->action latency over DDS, once per environment variant (default, MALLOC_ARENA_MAX=2, the
   UDP-only Fast DDS profile docker/fastdds_udp.xml).

    python bench/bench_node_memory.py                 # writes bench/results/node_memory.json
    python bench/bench_node_memory.py --seconds 10 --variants default
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
UDP_PROFILE = ROOT / "docker" / "fastdds_udp.xml"
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "MALLOC_ARENA_MAX=2": {"MALLOC_ARENA_MAX": "2"},
    "udp_only": {"FASTDDS_DEFAULT_PROFILES_FILE": str(UDP_PROFILE), "FASTRTPS_DEFAULT_PROFILES_FILE": str(UDP_PROFILE)},
    "udp_only+MALLOC_ARENA_MAX=2": {"MALLOC_ARENA_MAX": "2", "FASTDDS_DEFAULT_PROFILES_FILE": str(UDP_PROFILE),
                                    "FASTRTPS_DEFAULT_PROFILES_FILE": str(UDP_PROFILE)},
}


# ------------------------------------------------------------------------------------------ stage probe
def _smaps() -> dict[str, float]:
    values: dict[str, float] = {}
    with open("/proc/self/smaps_rollup") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                values[parts[0].rstrip(":")] = int(parts[1]) / 1024
    return {"rss_mb": values["Rss"], "pss_mb": values["Pss"],
            "uss_mb": values["Private_Clean"] + values["Private_Dirty"],
            "anon_mb": values["Anonymous"], "file_mb": values["Rss"] - values["Anonymous"]}


def probe(bundle: str, agent: str) -> None:
    """Run inside a fresh interpreter: one JSON line per stage on stdout."""
    import importlib  # noqa: PLC0415

    def stage(name: str) -> None:
        print(json.dumps({"stage": name, **_smaps()}), flush=True)

    stage("python")
    for module in ("numpy", "psutil", "onnxruntime", "rclpy"):
        importlib.import_module(module)
        stage(f"import {module}")
    import kdmarl_student.student_node as sn  # noqa: PLC0415

    stage("import student_node (rclpy.lifecycle, msgs)")
    import kdmarl_student.policy  # noqa: PLC0415, F401

    stage("import kdmarl_student.policy")
    sn.init_ros(["probe", "--ros-args", "-r", f"__ns:=/{agent}", "-p", f"bundle:={bundle}", "-p", "autostart:=false"])
    stage("rclpy.init")
    node = sn.StudentNode()
    stage("StudentNode() (DDS participant, /diagnostics)")
    original = sn.load_policy

    def load_policy(*args: Any, **kwargs: Any) -> Any:
        policy = original(*args, **kwargs)
        stage("configure: StudentPolicy (manifest, jsonschema, ORT session, dummy run)")
        return policy

    sn.load_policy = load_policy
    node.trigger_configure()
    stage("configure: publishers + subscription")
    node.trigger_activate()
    import numpy as np  # noqa: PLC0415

    obs = np.zeros(node._policy.source_dim, np.float32)
    for _ in range(1000):
        node._policy.act(obs)
    stage("activate + 1000 inferences")
    print(json.dumps({"stage": "modules", "count": len(sys.modules),
                      "cryptography": "cryptography" in sys.modules, "jsonschema": "jsonschema" in sys.modules,
                      "threads": len(os.listdir("/proc/self/task"))}), flush=True)
    node.destroy_node()
    sn.rclpy.try_shutdown()


def run_probe(bundle: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    out = subprocess.run([sys.executable, __file__, "--probe", str(bundle)], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


# ---------------------------------------------------------------------------------------- running node
def run_node(bundle: Path, env: dict[str, str], seconds: float, rate: float, log: Path) -> dict[str, Any]:
    import numpy as np  # noqa: PLC0415
    import psutil  # noqa: PLC0415
    import rclpy  # noqa: PLC0415
    from kdmarl_bringup.swarm_runner import stop_process_groups  # noqa: PLC0415
    from kdmarl_student.ros_support import ACTION_QOS, OBSERVATION_QOS  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415

    from kdmarl_msgs.msg import AgentAction, AgentObservation  # noqa: PLC0415

    cmd = [sys.executable, "-m", "kdmarl_student.student_node", "--ros-args", "-r", "__ns:=/agent_0",
           "-p", f"bundle:={bundle}", "-p", "mode:=realtime", "-p", f"control_rate_hz:={rate}"]
    student = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    rclpy.init(args=["driver"])
    node = rclpy.create_node("memory_driver")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    sent: dict[int, float] = {}
    latencies: list[float] = []

    def on_action(msg: AgentAction) -> None:
        t = sent.pop(msg.step, None)
        if t is not None and not msg.is_safe_action:
            latencies.append((time.perf_counter() - t) * 1e3)

    node.create_subscription(AgentAction, "/agent_0/action", on_action, ACTION_QOS)
    pub = node.create_publisher(AgentObservation, "/agent_0/observation", OBSERVATION_QOS)
    rng = np.random.default_rng(0)
    proc = psutil.Process(student.pid)
    peak = {"rss_mb": 0.0, "uss_mb": 0.0, "pss_mb": 0.0}
    step, started, next_tick, next_sample = 0, None, time.perf_counter(), time.perf_counter() + 1.0
    deadline = time.perf_counter() + 60.0
    try:
        while time.perf_counter() < deadline:
            executor.spin_once(timeout_sec=0.005)
            now = time.perf_counter()
            if started is None and latencies:
                started, deadline = now, now + seconds  # measure from the first answered observation
                latencies.clear()
            if now >= next_tick:
                step += 1
                msg = AgentObservation(agent="agent_0", episode=0, step=step,
                                       data=rng.uniform(-1, 1, 18).astype(np.float32).tolist())
                msg.header.stamp = node.get_clock().now().to_msg()
                sent[step] = time.perf_counter()
                pub.publish(msg)
                next_tick += 1.0 / rate
            if now >= next_sample:
                next_sample += 1.0
                mem = proc.memory_full_info()
                if started is not None:
                    for key, value in (("rss_mb", mem.rss), ("uss_mb", mem.uss), ("pss_mb", mem.pss)):
                        peak[key] = max(peak[key], value / 2**20)
        if started is None:
            raise RuntimeError(f"the student never answered; see {log}")
        threads = proc.num_threads()
    finally:
        stop_process_groups([student], grace=15.0)
        node.destroy_node()
        rclpy.try_shutdown()
    lat = np.array(latencies)
    return {**{k: round(v, 1) for k, v in peak.items()}, "threads": threads, "answered": int(lat.size),
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 3),
            "latency_p99_ms": round(float(np.percentile(lat, 99)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", metavar="BUNDLE", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=20.0, help="Measured run time per variant.")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    if args.probe:
        probe(args.probe, "agent_0")
        return
    from benchlib import write_result  # noqa: PLC0415
    from kdmarl_bringup.testing import make_bundle  # noqa: PLC0415

    domain = 101 + os.getpid() % 100
    base_env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                    PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    os.environ.update({k: base_env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_node_memory_") as tmp:
        bundle = make_bundle(Path(tmp) / "bundle", seed=3, hidden=64, N=3)
        stages = run_probe(bundle, base_env)
        previous: dict[str, Any] | None = None
        for s in stages:
            if "rss_mb" not in s:
                continue
            row = {"part": "stage", "what": s["stage"], **{k: round(s[k], 1) for k in
                                                            ("rss_mb", "pss_mb", "uss_mb", "anon_mb", "file_mb")}}
            row["rss_delta_mb"] = round(s["rss_mb"] - previous["rss_mb"], 1) if previous else None
            previous = s
            rows.append(row)
            print(json.dumps(row), flush=True)
        facts = next(s for s in stages if s["stage"] == "modules")
        for name in args.variants:
            result = run_node(bundle, {**base_env, **VARIANTS[name]}, args.seconds, args.rate,
                              Path(tmp) / f"student_{len(rows)}.log")
            row = {"part": "running", "what": name, **result}
            rows.append(row)
            print(json.dumps(row), flush=True)
    running = [r for r in rows if r["part"] == "running"]
    best = min(running, key=lambda r: r["rss_mb"])
    write_result(
        "node_memory",
        title="Memory of one student node in isolation: stages and running (realtime 10 Hz)",
        columns=["part", "what", "rss_mb", "rss_delta_mb", "pss_mb", "uss_mb", "anon_mb", "file_mb", "threads",
                 "latency_p50_ms", "latency_p99_ms"],
        rows=rows,
        targets=[{"what": "RSS per student node (isolated, running)", "target": "<= 80 MB",
                  "reached": f"{best['rss_mb']:.0f} MB ({best['what']}; PSS {best['pss_mb']:.0f} MB, "
                             f"USS {best['uss_mb']:.0f} MB)", "met": best["rss_mb"] <= 80.0}],
        notes=[
            "stage rows: one fresh interpreter, /proc/self/smaps_rollup after each step; file = RSS - anonymous "
            "(mapped shared-library code and data: shared with every other process mapping the same file)",
            "running rows: the student process alone with one driver publishing observations at --rate; memory "
            "peak over 1 s samples from outside (psutil memory_full_info); latency = publish -> action over DDS",
            f"stage probe: {facts['count']} modules, {facts['threads']} threads; cryptography imported: "
            f"{facts['cryptography']} (no public key configured), jsonschema imported: {facts['jsonschema']}",
            "bundle: random-weight MLP, 1 hidden layer of 64, simple_spread N=3 (agent_0, 18 inputs)",
        ],
    )


if __name__ == "__main__":
    main()
