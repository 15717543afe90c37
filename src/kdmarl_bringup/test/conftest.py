"""Shared helpers of the bringup tests: real bundles, isolated ROS domains, and process groups that always
get cleaned up.

Every ROS test runs its nodes as real processes over DDS (:class:`kdmarl_bringup.child_processes.Processes`,
shared with the benchmarks). Each test gets its own ``ROS_DOMAIN_ID`` (derived from the pid and a counter) with
discovery limited to localhost, so tests running in parallel on one machine (several engineers, CI) cannot hear
each other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kdmarl_bringup.child_processes import Processes, fresh_domain_id, ros_env  # noqa: F401  (the tests import them from here)
from kdmarl_bringup.testing import make_bundle, make_seeker_bundle

REPO = Path(__file__).resolve().parents[3]
TRAINED_BUNDLE = Path(__file__).resolve().parent / "data" / "spread3"


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


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def run_lockstep(processes: Processes, ros_node: Any, bundle: Path, seeds: list[int], *, timeout: float = 240.0,
                 agents: tuple[str, ...] = ("agent_0", "agent_1", "agent_2"),
                 action_timeout_s: float = 30.0) -> tuple[list[Any], dict[str, Any]]:
    """One student process per agent and the sim bridge in lockstep over ``seeds``; returns the episode
    summaries heard on /kdmarl/episode and the bridge's results file."""
    from kdmarl_student.ros_support import EPISODE_QOS

    from kdmarl_msgs.msg import EpisodeSummary

    summaries: list[Any] = []
    ros_node.create_subscription(EpisodeSummary, "/kdmarl/episode", summaries.append, EPISODE_QOS)
    for agent in agents:
        processes.start(f"student_{agent}", "kdmarl_student.student_node", params={"bundle": str(bundle)},
                        ros_args=["-r", f"__ns:=/{agent}"])
    results = processes.log_dir / "bridge.json"
    processes.start("bridge", "kdmarl_bringup.sim_bridge", params={
        "bundle": str(bundle), "episodes": len(seeds), "seed": seeds[0], "results_file": str(results),
        "action_timeout_s": action_timeout_s, "episode_subscribers": 1})
    assert spin_until(ros_node, lambda: len(summaries) >= len(seeds), timeout, processes,
                      alive=tuple(f"student_{a}" for a in agents)), processes.logs()
    assert processes.procs["bridge"].wait(60) == 0, processes.logs()
    return summaries, read_json(results)

__all__ = ["make_bundle", "make_seeker_bundle"]
