"""A fake kinematic robot: integrates ``cmd_vel`` and publishes ``odom``, standing in for Isaac Sim in tests.

A holonomic point robot whose velocity follows the commanded Twist with a first-order lag
(``velocity_time_constant_s``; 0.35 s reproduces MPE's damping of 0.25 per 0.1 s step, so a policy trained in
MPE sees familiar dynamics). Topics are relative, as on a real robot: ``cmd_vel`` in
(geometry_msgs/Twist, base frame), ``odom`` out (nav_msgs/Odometry, frame ``<robot>/odom``, child
``<robot>/base_link``, sensor-data QoS). ``initialpose`` in (geometry_msgs/PoseWithCovarianceStamped,
RViz's "2D Pose Estimate" convention) teleports the robot and stops it: tests use it to start an episode.
A command older than ``cmd_timeout_s`` is treated as zero, like a real base's watchdog.

MPE-only, like the robot adapter that drives it: a point robot stands in for simple_spread's agents. SMAX
bundles (``smax:<map>``) have no robot path; they run over ROS in the simulation bridge only.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped, Twist
from kdmarl_student.ros_support import CMD_QOS, descriptor, init_ros, spin_node, steady_clock
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data


class FakeRobot(Node):
    """Kinematic point robot: cmd_vel -> first-order velocity lag -> integrated pose -> odom."""

    def __init__(self) -> None:
        super().__init__("fake_robot")
        self.declare_parameter("initial_pose", [0.0, 0.0], descriptor("Start position [x, y] in metres."))
        self.declare_parameter("rate_hz", 50.0, descriptor("Integration and odom rate (steady clock).",
                                                           read_only=True, float_range=(1.0, 1000.0)))
        self.declare_parameter("velocity_time_constant_s", 0.35, descriptor(
            "First-order lag of the velocity behind the command (0 = instant).", float_range=(0.0, 10.0)))
        self.declare_parameter("cmd_timeout_s", 0.5, descriptor("Commands older than this count as zero.",
                                                                float_range=(0.01, 60.0)))
        ns = self.get_namespace().strip("/")
        self.frame = f"{ns}/odom" if ns else "odom"
        self.child_frame = f"{ns}/base_link" if ns else "base_link"
        self.pos = np.asarray(self.get_parameter("initial_pose").value, dtype=np.float64)
        self.vel = np.zeros(2)
        self.cmd = np.zeros(2)
        self.cmd_time = -math.inf
        self.last = time.perf_counter()
        self.create_subscription(Twist, "cmd_vel", self._on_cmd, CMD_QOS)
        self.create_subscription(PoseWithCovarianceStamped, "initialpose", self._on_initial_pose, 10)
        self.odom_pub = self.create_publisher(Odometry, "odom", qos_profile_sensor_data)
        self.create_timer(1.0 / float(self.get_parameter("rate_hz").value), self._tick, clock=steady_clock())

    def _on_cmd(self, msg: Twist) -> None:
        self.cmd = np.array([msg.linear.x, msg.linear.y])  # yaw stays 0: base frame == odom frame
        self.cmd_time = time.perf_counter()

    def _on_initial_pose(self, msg: PoseWithCovarianceStamped) -> None:
        self.pos = np.array([msg.pose.pose.position.x, msg.pose.pose.position.y])
        self.vel = np.zeros(2)
        self.cmd = np.zeros(2)

    def _tick(self) -> None:
        now = time.perf_counter()
        dt = min(now - self.last, 0.2)  # a stalled process must not teleport the robot
        self.last = now
        cmd = self.cmd if now - self.cmd_time <= float(self.get_parameter("cmd_timeout_s").value) else np.zeros(2)
        tau = float(self.get_parameter("velocity_time_constant_s").value)
        alpha = 1.0 if tau <= 0 else 1.0 - math.exp(-dt / tau)
        self.vel += alpha * (cmd - self.vel)
        self.pos += self.vel * dt
        msg = Odometry()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame
        msg.child_frame_id = self.child_frame
        msg.pose.pose.position.x, msg.pose.pose.position.y = float(self.pos[0]), float(self.pos[1])
        msg.pose.pose.orientation.w = 1.0
        msg.twist.twist.linear.x, msg.twist.twist.linear.y = float(self.vel[0]), float(self.vel[1])
        self.odom_pub.publish(msg)


def main(argv: list[str] | None = None) -> None:
    init_ros(sys.argv if argv is None else argv)
    spin_node(FakeRobot())


if __name__ == "__main__":
    main()
