"""A differential-drive fake fleet over real DDS (issue 24): the trained spread3 students drive three unicycle
robots, started from a fleet YAML through ``kdmarl-swarm`` (the launch file's node specs), to their landmarks;
no published command exceeds the fleet's limits; the frames are REP-105's. And ``ros2 launch ... backend:=fake
drive:=diff_drive`` runs such a fleet."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from conftest import TRAINED_BUNDLE, Processes  # noqa: E402
from geometry_msgs.msg import Twist  # noqa: E402
from kdmarl_bringup.fleet_trial import FleetProbe, runner_args, spread_starts, write_fleet  # noqa: E402
from kdmarl_student.ros_support import CMD_QOS  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402

ROBOTS = ["r0", "r1", "r2"]
AGENTS = ["agent_0", "agent_1", "agent_2"]
LIMITS = {"max_linear": 2.0, "max_angular": 10.0, "max_linear_accel": 40.0, "max_angular_accel": 400.0}


def test_diff_drive_fleet_reaches_landmarks_within_its_limits(processes: Processes, ros_node, tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet.yaml", ROBOTS, AGENTS,
                        {"drive": "diff_drive", "conversion": "heading", **LIMITS, "cmd_vel_stamped": True})
    processes.start("swarm", "kdmarl_bringup.swarm_runner", *runner_args(TRAINED_BUNDLE, fleet, tmp_path / "swarm"))
    odoms: list[Odometry] = []
    ros_node.create_subscription(Odometry, "/r1/odom", odoms.append, qos_profile_sensor_data)
    probe = FleetProbe(ros_node, ROBOTS, stamped=True)

    def alive() -> None:
        assert processes.procs["swarm"].poll() is None, processes.log("swarm")

    assert probe.wait_ready(300.0, alive), processes.log("swarm")
    starts = spread_starts([2000, 2001, 2002, 2003, 2004, 2005])
    start_cost = [float(np.linalg.norm(s.landmarks[:, None] - s.positions[None], axis=-1).min(axis=1).sum())
                  for s in starts]
    episodes = [probe.episode(start, steps=40) for start in starts]  # 4 s each
    covered = [e["landmarks_covered"] for e in episodes]
    robots = np.array([probe.odom[r][0] for r in ROBOTS])  # where the last episode ended
    end_cost = float(np.linalg.norm(starts[-1].landmarks[:, None] - robots[None], axis=-1).min(axis=1).sum())
    print(f"diff-drive fleet: landmarks covered {covered} (mean {np.mean(covered):.2f} of 3), team returns "
          f"{[round(e['team_return'], 2) for e in episodes]}; last episode's summed landmark distance "
          f"{start_cost[-1]:.2f} -> {end_cost:.2f}")
    # Reaching landmarks, not a performance figure: a loaded CI machine (suites side by side on 2 cores) delays the
    # realtime loop and covered 1.67 of 3 once. The figure on a quiet machine (2.9 of 3 against the holonomic
    # fleet's 2.6) is bench/bench_drive.py's.
    assert np.mean(covered) >= 1.0, episodes
    assert end_cost < 0.5 * start_cost[-1]
    # No published command above a limit; a unicycle's commands only (v, ω); stamped in the base frame.
    assert probe.over_limits(LIMITS) == []
    cmds = [m for r in ROBOTS for _, m in probe.cmds[r]]
    assert len(cmds) > 1000 and all(m.twist.linear.y == 0.0 for m in cmds)
    assert {m.header.frame_id for _, m in probe.cmds["r2"]} == {"r2/base_link"}
    assert max(abs(m.twist.angular.z) for m in cmds) > 1.0  # they do turn
    # REP-105 frames, and the fake robots never received a command above their limits.
    assert {(o.header.frame_id, o.child_frame_id) for o in odoms} == {("r1/odom", "r1/base_link")}
    yaws = [math.atan2(2 * o.pose.pose.orientation.w * o.pose.pose.orientation.z,
                       1 - 2 * o.pose.pose.orientation.z ** 2) for o in odoms]
    assert np.ptp(yaws) > 1.0
    logs = sorted((tmp_path / "swarm" / "logs").glob("*fake_robot.log"))
    assert len(logs) == 3 and not any("above the velocity limits" in p.read_text() for p in logs)


def test_ros2_launch_runs_a_diff_drive_fake_fleet(tmp_path: Path) -> None:
    """``ros2 launch kdmarl_bringup swarm.launch.py backend:=fake mode:=realtime drive:=diff_drive``: the adapters
    and fake robots are diff-drive (``ros2 param get``), and the robots turn and drive (odometry)."""
    from test_launch import _MISSING, Launch  # the launch tests' helper (skips without ros2 launch)

    if _MISSING:
        pytest.skip(_MISSING)
    launch = Launch(tmp_path, f"bundle:={TRAINED_BUNDLE}", "backend:=fake", "mode:=realtime", "drive:=diff_drive",
                    "monitor:=false")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(launch.env["ROS_DOMAIN_ID"]))
    node = rclpy.create_node("launch_probe", context=context)
    try:
        odoms: list[Odometry] = []
        cmds: list[Twist] = []
        node.create_subscription(Odometry, "/agent_1/odom", odoms.append, qos_profile_sensor_data)
        node.create_subscription(Twist, "/agent_1/cmd_vel", cmds.append, CMD_QOS)
        got = launch.ros2("param", "get", "/agent_1/robot_adapter", "drive", until="diff_drive", timeout=180.0)
        assert "String value is: diff_drive" in got.stdout, (got, launch.output()[-3000:])
        got = launch.ros2("param", "get", "/agent_1/fake_robot", "drive", until="diff_drive")
        assert "String value is: diff_drive" in got.stdout, got
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 60.0

        def seen() -> bool:
            return any(abs(o.twist.twist.angular.z) > 0.1 for o in odoms) and len(cmds) >= 10

        while time.monotonic() < deadline and not seen():
            executor.spin_once(timeout_sec=0.05)
        assert seen(), (len(odoms), len(cmds), launch.output()[-3000:])
        assert all(c.linear.y == 0.0 for c in cmds) and any(c.angular.z != 0.0 for c in cmds)
        assert odoms[-1].header.frame_id == "agent_1/odom" and odoms[-1].child_frame_id == "agent_1/base_link"
        executor.remove_node(node)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
        launch.interrupt_and_close()
    assert "Traceback" not in launch.output(), launch.output()[-3000:]

