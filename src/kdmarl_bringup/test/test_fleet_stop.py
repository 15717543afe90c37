"""The fleet stop over real DDS (issue 24): 16 robot adapters and 16 student processes, one student frozen with
SIGSTOP; a stop zeroes every robot's cmd_vel (within 2 s here: the stop, not the action timeout; the one-period
target is bench/bench_fleet_stop.py), keeps it zero while the students go on acting, and only a resume lets the
robots move again. Late joiners and older stamps: a robot that starts after the stop (published by the real
``fleet_stop`` command) is stopped too; a stale resume does not resume."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from conftest import Processes, make_bundle, make_seeker_bundle, spin_until  # noqa: E402
from geometry_msgs.msg import TwistStamped  # noqa: E402
from kdmarl_bringup.base_io import yaw_quaternion  # noqa: E402
from kdmarl_bringup.fleet_stop import STOP_QOS, STOP_TOPIC  # noqa: E402
from kdmarl_student.ros_support import ACTION_QOS, CMD_QOS  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402

from kdmarl_msgs.msg import AgentAction, FleetStop  # noqa: E402

N = 16
RATE_HZ = 10.0
PERIOD = 1.0 / RATE_HZ
# What the test holds is behaviour: every robot's commands go to zero after the stop and stay zero until the resume,
# the frozen student's robot included. Its bound only tells the stop from the adapter's own action timeout (20 s, the
# other way a frozen student's robot would halt), with room for a loaded machine: CI runs the packages' suites side
# by side on 2 cores, 16 robots are 33 processes, and a run there measured 0.51 s. The latency target (one control
# period) is a benchmark: bench/bench_fleet_stop.py runs this test on a quiet machine and reads the delays it writes
# to $KDMARL_FLEET_STOP_RESULT.
STOP_BOUND_S = 2.0


def _stamp(msg) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


def _log_time(log: str, text: str) -> float:
    """The time of the first log line (``[LEVEL] [sec.nsec] [node]: text``) containing ``text``."""
    line = next(line for line in log.splitlines() if text in line)
    return float(line.split("] [", 1)[1].split("]", 1)[0])


def _moving(msg: TwistStamped) -> bool:
    t = msg.twist
    return t.linear.x != 0.0 or t.linear.y != 0.0 or t.angular.z != 0.0


class Fleet:
    """The test's side: odometry of every (stationary) robot at 10 Hz, and every cmd_vel and action recorded.

    16 adapters command about 30 times a second each: this one Python process receives their commands late, so
    every check waits for the commands *stamped* in the interval it judges, and timings come from the stamps."""

    def __init__(self, node, robots: list[str]) -> None:
        self.node, self.robots = node, robots
        self.cmds: dict[str, list[tuple[float, TwistStamped]]] = {r: [] for r in robots}  # (receive t, msg)
        self.actions: dict[str, list[AgentAction]] = {r: [] for r in robots}
        self.stops: list[FleetStop] = []
        odom_pubs = {r: node.create_publisher(Odometry, f"/{r}/odom", qos_profile_sensor_data) for r in robots}
        for r in robots:
            node.create_subscription(TwistStamped, f"/{r}/cmd_vel",
                                     lambda m, r=r: self.cmds[r].append((time.time(), m)), CMD_QOS)
            node.create_subscription(AgentAction, f"/{r}/action", self.actions[r].append, ACTION_QOS)
        node.create_subscription(FleetStop, STOP_TOPIC, self.stops.append, STOP_QOS)

        def publish_odom() -> None:
            for i, r in enumerate(robots):
                msg = Odometry()
                msg.header.stamp = node.get_clock().now().to_msg()
                msg.header.frame_id, msg.child_frame_id = f"{r}/odom", f"{r}/base_link"
                msg.pose.pose.position.x, msg.pose.pose.position.y = 0.4 * (i % 4) - 0.6, 0.4 * (i // 4) - 0.6
                msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = yaw_quaternion(0.3 * i)
                odom_pubs[r].publish(msg)

        node.create_timer(0.1, publish_odom)

    def moving_now(self, robot: str, last: int = 3) -> bool:
        recent = self.cmds[robot][-last:]
        return len(recent) == last and all(_moving(m) for _, m in recent)

    def after(self, robot: str, t: float) -> list[TwistStamped]:
        return [m for _, m in self.cmds[robot] if _stamp(m) >= t]


def _start_robot(processes: Processes, bundle: Path, robots: list[str], i: int, **extra) -> None:
    robot = robots[i]
    ns = ["-r", f"__ns:=/{robot}"]
    landmarks = [float(v) for k in range(len(robots)) for v in (0.5 * np.cos(k), 0.5 * np.sin(k))]
    processes.start(f"adapter_{robot}", "kdmarl_bringup.robot_adapter", ros_args=ns, params={
        "bundle": str(bundle), "agent": f"agent_{i}", "peers": [r for r in robots if r != robot],
        "landmarks": landmarks, "rate_hz": RATE_HZ, "cmd_vel_stamped": True, "action_timeout_s": 20.0,
        "odom_timeout_s": 3.0, "drive": "diff_drive" if i % 2 else "holonomic", "max_linear": 2.0,
        "max_angular": 20.0, **extra})
    processes.start(f"student_{robot}", "kdmarl_student.student_node", ros_args=ns, params={
        "bundle": str(bundle), "agent": f"agent_{i}", "mode": "realtime", "control_rate_hz": RATE_HZ,
        "observation_timeout_s": 3.0})


def test_fleet_stop_holds_16_robots_at_zero_even_with_a_frozen_student(
        processes: Processes, ros_node, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b16", seed=16, hidden=64, N=N)
    robots = [f"r{i:02d}" for i in range(N)]
    for i in range(N):
        _start_robot(processes, bundle, robots, i)
    fleet = Fleet(ros_node, robots)
    stop_pub = ros_node.create_publisher(FleetStop, STOP_TOPIC, STOP_QOS)
    alive = tuple(processes.procs)
    # Every adapter commanding and most robots moving (random-weight students: some pick no-op).
    assert spin_until(ros_node, lambda: all(len(fleet.cmds[r]) >= 5 for r in robots)
                      and sum(fleet.moving_now(r) for r in robots) >= N // 2, 300.0, processes, alive=alive), \
        ({r: len(c) for r, c in fleet.cmds.items()}, processes.logs()[-6000:])
    frozen = next(r for r in robots if fleet.moving_now(r, last=5))
    student = processes.procs[f"student_{frozen}"]
    os.kill(student.pid, signal.SIGSTOP)
    try:
        t_frozen = time.time()
        # Without a stop, the frozen student's robot keeps going on its last action (action_timeout_s 20 s).
        assert spin_until(ros_node, lambda: len(fleet.after(frozen, t_frozen + 0.5)) >= 5, 15.0), \
            len(fleet.cmds[frozen])
        assert all(_moving(m) for m in fleet.after(frozen, t_frozen + 0.5))
        moving_before = [r for r in robots if fleet.moving_now(r)]
        assert frozen in moving_before
        actions_before = {r: len(fleet.actions[r]) for r in robots}
        # From a publisher every adapter has discovered (a standing stop button): the stop's latency, not the
        # DDS discovery of a new process (test_a_late_robot_is_stopped... runs the fleet_stop command).
        stop = FleetStop(stop=True, who="pytest", why="fleet stop test")
        stop.header.stamp = ros_node.get_clock().now().to_msg()
        stop_pub.publish(stop)
        assert (stop.stop, stop.who, stop.why) == (True, "pytest", "fleet stop test")
        t_stop = _stamp(stop)
        assert spin_until(ros_node, lambda: all(len(fleet.after(r, t_stop + 2.0)) >= 3 for r in robots), 30.0)
        # Per robot: the first zero after which every command is zero, on the adapter's stamps.
        delays, receive_delays = {}, {}
        for r in robots:
            after = [(t, m) for t, m in fleet.cmds[r] if _stamp(m) >= t_stop]
            assert len(after) >= 10, (r, len(after))  # still commanding every period: zeros, not silence
            last_moving = max((k for k, (_, m) in enumerate(after) if _moving(m)), default=-1)
            assert last_moving < len(after) - 10, (r, [(round(_stamp(m) - t_stop, 3), _moving(m)) for _, m in after])
            first_zero_t, first_zero = after[last_moving + 1]
            delays[r] = _stamp(first_zero) - t_stop
            receive_delays[r] = first_zero_t - t_stop
        worst = max(delays, key=delays.get)
        print(f"fleet stop -> all {N} robots zero: {1000 * max(delays.values()):.1f} ms by the adapters' stamps "
              f"(median {1000 * float(np.median(list(delays.values()))):.1f} ms, worst {worst}; frozen student's robot "
              f"{frozen}: {1000 * delays[frozen]:.1f} ms); {1000 * max(receive_delays.values()):.1f} ms as received "
              f"by the test process; {len(moving_before)} robots were moving; control period {1000 * PERIOD:.0f} ms")
        if os.environ.get("KDMARL_FLEET_STOP_RESULT"):
            Path(os.environ["KDMARL_FLEET_STOP_RESULT"]).write_text(json.dumps(
                {"robots": N, "period_s": PERIOD, "frozen": frozen, "moving_before": len(moving_before),
                 "stop_to_zero_s": delays, "stop_to_received_zero_s": receive_delays}))
        assert max(delays.values()) <= STOP_BOUND_S, delays
        # The students went on acting (non-safe actions): the adapters held the wheels anyway.
        assert sum(len(fleet.actions[r]) - actions_before[r] >= 10 for r in robots if r != frozen) >= N - 2
        # Stays stopped (1 s more) until an explicit resume: then the robots that moved before move again.
        t_more = time.time()
        assert spin_until(ros_node, lambda: all(len(fleet.after(r, t_more + 1.0)) >= 3 for r in robots), 30.0)
        assert not any(_moving(m) for r in robots for m in fleet.after(r, t_stop + delays[r]))
        resume = FleetStop(stop=False, who="pytest", why="all clear")
        resume.header.stamp = ros_node.get_clock().now().to_msg()
        stop_pub.publish(resume)
        t_resume = _stamp(resume)
        assert spin_until(ros_node, lambda: all(len(fleet.after(r, t_resume + 2.0)) >= 3 for r in robots), 30.0)
        resumed = [r for r in moving_before if r != frozen and any(_moving(m) for m in fleet.after(r, t_resume))]
        assert len(resumed) >= len(moving_before) // 2, (resumed, moving_before)
        assert "fleet stop by 'pytest': 'fleet stop test'" in processes.log(f"adapter_{frozen}")
        assert "fleet resumed by 'pytest': 'all clear'" in processes.log(f"adapter_{frozen}")
    finally:
        os.kill(student.pid, signal.SIGCONT)


def test_a_late_robot_is_stopped_and_an_older_resume_is_ignored(processes: Processes, ros_node,
                                                                 tmp_path: Path) -> None:
    """The stop is latched: an adapter that starts after it is stopped as soon as discovery delivers it (and with
    ``hold_until_resume`` never moves before a resume); a resume stamped before the stop (another publisher with an
    older message) changes nothing; a newer resume does."""
    bundle = make_seeker_bundle(tmp_path / "seeker")  # stationary robots away from their landmarks: it moves
    robots = ["a", "b", "c"]
    fleet = Fleet(ros_node, robots)
    pub = ros_node.create_publisher(FleetStop, STOP_TOPIC, STOP_QOS)
    old_resume = FleetStop(stop=False, who="old", why="stale resume")
    old_resume.header.stamp = ros_node.get_clock().now().to_msg()
    processes.start("stop", "kdmarl_bringup.fleet_stop", "--who", "pytest", "--why", "before start")
    assert spin_until(ros_node, lambda: bool(fleet.stops), 60.0), processes.log("stop")  # published, held
    for i in range(3):
        _start_robot(processes, bundle, robots, i, **({"hold_until_resume": True} if robots[i] == "c" else {}))
    alive = tuple(processes.procs)
    assert spin_until(ros_node, lambda: all(len(fleet.actions[r]) >= 10 and len(fleet.cmds[r]) >= 10
                                            and "fleet stop by 'pytest'" in processes.log(f"adapter_{r}")
                                            for r in robots), 240.0, processes, alive=alive), processes.logs()
    received = {r: _log_time(processes.log(f"adapter_{r}"), "fleet stop by 'pytest': 'before start'") for r in robots}
    assert not any(_moving(m) for r in robots for m in fleet.after(r, received[r] + 0.001))
    assert not any(_moving(m) for _, m in fleet.cmds["c"])  # held from its start
    pub.publish(old_resume)
    spin_until(ros_node, lambda: False, 1.0)
    assert not any(_moving(m) for r in robots for m in fleet.after(r, received[r] + 0.001))
    assert "ignoring an older fleet resume from 'old'" in processes.log("adapter_a")
    resume = FleetStop(stop=False, who="pytest", why="go")
    resume.header.stamp = ros_node.get_clock().now().to_msg()
    pub.publish(resume)
    assert spin_until(ros_node, lambda: any(_moving(m) for r in robots for _, m in fleet.cmds[r]), 10.0), \
        processes.logs()
