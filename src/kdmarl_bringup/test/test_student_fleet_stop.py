"""The student's side of the fleet stop over real DDS (issue 24 item 4): student processes and the real
``fleet_stop`` command. While the latched ``/kdmarl/stop`` says stop, every observation is answered with the safe
action (no inference), counted and reported on ``/diagnostics`` with who and why, until an explicit resume; a
student started after the stop was latched is stopped too."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from conftest import Processes, make_bundle, spin_until  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from kdmarl_student.ros_support import ACTION_QOS, OBSERVATION_QOS, REPORT_QOS  # noqa: E402

from kdmarl_msgs.msg import AgentAction, AgentObservation  # noqa: E402

PERIOD = 0.1  # the test's control period: one observation per robot every 0.1 s


def _log_time(log: str, text: str) -> float:
    """The time of the first log line (``[LEVEL] [sec.nsec] [node]: text``) containing ``text``."""
    line = next(line for line in log.splitlines() if text in line)
    return float(line.split("] [", 1)[1].split("]", 1)[0])


def _t(stamp) -> float:
    return stamp.sec + 1e-9 * stamp.nanosec


class Robots:
    """The test's side: observations at 10 Hz (lockstep counters) to each student, every answer recorded."""

    def __init__(self, node, robots: dict[str, str]) -> None:
        self.node, self.robots = node, robots  # namespace -> agent
        self.actions: dict[str, list[AgentAction]] = {r: [] for r in robots}
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.levels: dict[str, int] = {}
        self.sending: set[str] = set()
        self.step = 0
        rng = np.random.default_rng(0)
        self.obs = rng.normal(size=(64, 18)).astype(np.float32)
        self.pubs = {r: node.create_publisher(AgentObservation, f"/{r}/observation", OBSERVATION_QOS) for r in robots}
        for r in robots:
            node.create_subscription(AgentAction, f"/{r}/action", self.actions[r].append, ACTION_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, REPORT_QOS)
        node.create_timer(PERIOD, self._tick)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            for r in self.robots:
                if status.name.endswith(f"/{r}/student"):
                    self.diagnostics[r] = {kv.key: kv.value for kv in status.values}
                    self.levels[r] = status.level[0] if isinstance(status.level, bytes) else int(status.level)

    def _tick(self) -> None:
        self.step += 1
        for r in self.sending:
            msg = AgentObservation(agent=self.robots[r], episode=1, step=self.step,
                                   data=self.obs[self.step % len(self.obs)].tolist())
            msg.header.stamp = self.node.get_clock().now().to_msg()
            self.pubs[r].publish(msg)

    def answered_after(self, robot: str, t: float) -> list[AgentAction]:
        return [a for a in self.actions[robot] if _t(a.observation_stamp) > t]


def _start_student(processes: Processes, bundle: Path, robot: str, agent: str) -> None:
    processes.start(f"student_{robot}", "kdmarl_student.student_node", ros_args=["-r", f"__ns:=/{robot}"],
                    params={"bundle": str(bundle), "agent": agent, "mode": "lockstep", "report_period_s": 0.2})


def test_students_answer_safe_while_the_fleet_is_stopped_even_one_started_after_the_stop(
        processes: Processes, ros_node, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    robots = Robots(ros_node, {"a": "agent_0", "b": "agent_1"})
    _start_student(processes, bundle, "a", "agent_0")
    robots.sending.add("a")
    # Acting: random weights on random observations pick policy actions (is_safe_action false).
    assert spin_until(ros_node, lambda: sum(not m.is_safe_action for m in robots.actions["a"]) >= 10, 120.0,
                      processes, alive=("student_a",)), processes.logs()
    processes.start("stop", "kdmarl_bringup.fleet_stop", "--who", "pytest", "--why", "person in the arena",
                    "--wait-subscribers", "1")
    assert spin_until(ros_node, lambda: "fleet stop by 'pytest'" in processes.log("student_a"), 60.0,
                      processes, alive=("student_a", "stop")), processes.logs()
    received = _log_time(processes.log("student_a"), "fleet stop by 'pytest'")
    stamped = float(processes.log("stop").split("(stamp ", 1)[1].split(")", 1)[0])
    # Order, not speed: how fast the stop reaches every robot is bench/bench_fleet_stop.py's figure (a timed bound
    # here failed once on a loaded CI machine at 0.31 s).
    assert received >= stamped, f"the student logged the stop {stamped - received:.3f} s before it was issued"
    # Every observation stamped after the stop arrived is answered with the safe action, within a control period.
    assert spin_until(ros_node, lambda: len(robots.answered_after("a", received + PERIOD)) >= 10, 30.0), \
        processes.logs()
    late = robots.answered_after("a", received)
    assert late and all(m.is_safe_action and m.action == 0 for m in late), \
        [(m.step, m.action, m.is_safe_action) for m in late]
    # A student that starts after the stop was latched gets it at discovery and is stopped from then on.
    _start_student(processes, bundle, "b", "agent_1")
    assert spin_until(ros_node, lambda: "fleet stop by 'pytest'" in processes.log("student_b")
                      and "active" in processes.log("student_b"), 120.0, processes,
                      alive=("student_a", "student_b", "stop")), processes.logs()
    robots.sending.add("b")
    assert spin_until(ros_node, lambda: len(robots.actions["b"]) >= 10, 60.0), processes.logs()
    assert all(m.is_safe_action and m.action == 0 for m in robots.actions["b"])
    # /diagnostics: WARN, who and why, and the answers counted.
    assert spin_until(ros_node, lambda: all(int(robots.diagnostics.get(r, {}).get("fleet_stop_answers", "0")) >= 5
                                            for r in ("a", "b")), 30.0), robots.diagnostics
    for r in ("a", "b"):
        assert "pytest" in robots.diagnostics[r]["fleet_stop"] and "person in the arena" in \
            robots.diagnostics[r]["fleet_stop"]
        assert robots.levels[r] == 1, robots.levels  # WARN
    # Held until an explicit resume (newer stamp), from another process: both act again.
    time.sleep(1.0)
    assert all(m.is_safe_action for r in ("a", "b") for m in robots.answered_after(r, received))
    processes.start("resume", "kdmarl_bringup.fleet_stop", "--resume", "--who", "pytest", "--why", "clear",
                    "--wait-subscribers", "2")
    assert spin_until(ros_node, lambda: all("fleet resumed by 'pytest'" in processes.log(f"student_{r}")
                                            for r in ("a", "b")), 60.0), processes.logs()
    resumed = max(_log_time(processes.log(f"student_{r}"), "fleet resumed by 'pytest'") for r in ("a", "b"))
    assert spin_until(ros_node, lambda: all(sum(not m.is_safe_action for m in robots.answered_after(r, resumed)) >= 5
                                            for r in ("a", "b")), 30.0), processes.logs()
    assert spin_until(ros_node, lambda: all(robots.diagnostics.get(r, {}).get("fleet_stop") == ""
                                            for r in ("a", "b")), 30.0), robots.diagnostics
