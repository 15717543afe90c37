"""A fake kinematic robot: integrates ``cmd_vel`` and publishes ``odom``, standing in for Isaac Sim in tests.

One node, two drive kinds (parameter ``drive``, read-only; the fleet YAML sets it per robot):

- ``holonomic``: a point robot whose base-frame velocity ``(linear.x, linear.y)`` follows the command.
- ``diff_drive``: a unicycle, ``ẋ = v cos θ, ẏ = v sin θ, θ̇ = ω`` (VMAS's ``DiffDrive`` dynamics), driven by
  ``linear.x = v`` and ``angular.z = ω`` only (``linear.y`` is ignored, as ``diff_drive_controller`` does),
  integrated exactly over each tick (:func:`kdmarl_bringup.drive.unicycle_step`).

Both follow the command through the same chain: commands older than ``cmd_timeout_s`` count as zero (a base's
watchdog); the base's own limiter applies ``max_linear``, ``max_angular``, ``max_linear_accel`` and
``max_angular_accel`` (0 = none; the same :func:`kdmarl_bringup.drive.limit_command` as the adapter; a received
command above a velocity limit is counted and warned about: the adapter must never send one); then the velocity
follows with a first-order lag (``velocity_time_constant_s`` for the linear velocity: 0.35 s reproduces MPE's
damping of 0.25 per 0.1 s step, so a policy trained in MPE sees familiar dynamics; ``angular_time_constant_s``,
0.05 s, for the turn rate: the wheels of a real base follow within tens of milliseconds, and MPE has no heading).

Topics are relative, as on a real robot: ``cmd_vel`` in (geometry_msgs/Twist, or TwistStamped with
``cmd_vel_stamped``, base frame, reliable), ``odom`` out (nav_msgs/Odometry, REP-105 frames ``<robot>/odom`` ->
child ``<robot>/base_link``, pose in odom, twist in the child frame, sensor-data QoS). ``initialpose`` in
(geometry_msgs/PoseWithCovarianceStamped, RViz's "2D Pose Estimate" convention) teleports the robot (position
and yaw) and stops it: tests use it to start an episode.

MPE-only, like the robot adapter that drives it: a point robot stands in for simple_spread's agents. SMAX
bundles (``smax:<map>``) have no robot path; they run over ROS in the simulation bridge only.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from geometry_msgs.msg import PoseWithCovarianceStamped, Twist, TwistStamped
from kdmarl_student.ros_support import CMD_QOS, descriptor, init_ros, spin_node, steady_clock
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from kdmarl_bringup.base_io import declare_drive_parameters, read_limits, twist_command, yaw_of, yaw_quaternion
from kdmarl_bringup.drive import ZERO, BaseCommand, base_to_world, limit_command, unicycle_step


def _lag(dt: float, tau: float) -> float:
    """The step of a first-order lag with time constant ``tau`` over ``dt`` (1 = instant)."""
    return 1.0 if tau <= 0 else 1.0 - math.exp(-dt / tau)


class FakeRobot(Node):
    """Kinematic robot: cmd_vel -> watchdog -> limits -> first-order velocity lag -> integrated pose -> odom."""

    def __init__(self) -> None:
        super().__init__("fake_robot")
        self.declare_parameter("initial_pose", [0.0, 0.0], descriptor(
            "Start pose [x, y] or [x, y, yaw] in metres and radians (odom frame)."))
        self.declare_parameter("rate_hz", 50.0, descriptor("Integration and odom rate (steady clock).",
                                                           read_only=True, float_range=(1.0, 1000.0)))
        self.declare_parameter("velocity_time_constant_s", 0.35, descriptor(
            "First-order lag of the linear velocity behind the command (0 = instant).", float_range=(0.0, 10.0)))
        self.declare_parameter("angular_time_constant_s", 0.05, descriptor(
            "First-order lag of the angular velocity behind the command (0 = instant).", float_range=(0.0, 10.0)))
        self.declare_parameter("cmd_timeout_s", 0.5, descriptor("Commands older than this count as zero.",
                                                                float_range=(0.01, 60.0)))
        self.drive, _, stamped = declare_drive_parameters(self)
        ns = self.get_namespace().strip("/")
        self.frame = f"{ns}/odom" if ns else "odom"
        self.child_frame = f"{ns}/base_link" if ns else "base_link"
        pose = [float(v) for v in self.get_parameter("initial_pose").value]
        if len(pose) not in (2, 3):
            raise ValueError(f"parameter 'initial_pose' must be [x, y] or [x, y, yaw], got {pose}")
        self.x, self.y, self.yaw = pose[0], pose[1], pose[2] if len(pose) == 3 else 0.0
        self.vel = ZERO  # base frame
        self.limited = ZERO  # the base limiter's last output
        self.cmd = ZERO
        self.cmd_time = -math.inf
        self.over_limit = 0  # received commands above a velocity limit
        self.last = time.perf_counter()
        self.create_subscription(TwistStamped if stamped else Twist, "cmd_vel", self._on_cmd, CMD_QOS)
        self.create_subscription(PoseWithCovarianceStamped, "initialpose", self._on_initial_pose, 10)
        self.odom_pub = self.create_publisher(Odometry, "odom", qos_profile_sensor_data)
        self.create_timer(1.0 / float(self.get_parameter("rate_hz").value), self._tick, clock=steady_clock())

    def _on_cmd(self, msg: Any) -> None:
        cmd = twist_command(msg)
        if self.drive == "diff_drive":
            cmd = BaseCommand(cmd.vx, 0.0, cmd.wz)  # a unicycle cannot move sideways
        limits = read_limits(self)
        if (limits.max_linear and math.hypot(cmd.vx, cmd.vy) > limits.max_linear) or (
                limits.max_angular and abs(cmd.wz) > limits.max_angular):
            self.over_limit += 1
            self.get_logger().warning(f"command above the velocity limits ({self.over_limit} so far): {cmd}",
                                      throttle_duration_sec=5.0)
        self.cmd = cmd
        self.cmd_time = time.perf_counter()

    def _on_initial_pose(self, msg: PoseWithCovarianceStamped) -> None:
        p = msg.pose.pose.position
        self.x, self.y, self.yaw = p.x, p.y, yaw_of(msg.pose.pose.orientation)
        self.vel = self.limited = self.cmd = ZERO

    def _tick(self) -> None:
        now = time.perf_counter()
        dt = min(now - self.last, 0.2)  # a stalled process must not teleport the robot
        self.last = now
        cmd = self.cmd if now - self.cmd_time <= float(self.get_parameter("cmd_timeout_s").value) else ZERO
        self.limited = limit_command(cmd, self.limited, dt, read_limits(self), period=dt)
        alpha, beta = (_lag(dt, float(self.get_parameter(p).value))
                       for p in ("velocity_time_constant_s", "angular_time_constant_s"))
        v = self.vel
        self.vel = BaseCommand(v.vx + alpha * (self.limited.vx - v.vx), v.vy + alpha * (self.limited.vy - v.vy),
                               v.wz + beta * (self.limited.wz - v.wz))
        if self.drive == "diff_drive":
            self.x, self.y, self.yaw = unicycle_step((self.x, self.y, self.yaw), self.vel.vx, self.vel.wz, dt)
        else:
            wx, wy = base_to_world(self.vel.vx, self.vel.vy, self.yaw)
            self.x, self.y = self.x + wx * dt, self.y + wy * dt
            self.yaw = math.remainder(self.yaw + self.vel.wz * dt, math.tau)
        msg = Odometry()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame
        msg.child_frame_id = self.child_frame
        msg.pose.pose.position.x, msg.pose.pose.position.y = float(self.x), float(self.y)
        msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = yaw_quaternion(self.yaw)
        msg.twist.twist.linear.x, msg.twist.twist.linear.y = float(self.vel.vx), float(self.vel.vy)
        msg.twist.twist.angular.z = float(self.vel.wz)
        self.odom_pub.publish(msg)


def main(argv: list[str] | None = None) -> None:
    init_ros(sys.argv if argv is None else argv)
    spin_node(FakeRobot())


if __name__ == "__main__":
    main()
