"""The ROS side of a mobile base, shared by the robot adapter and the fake robot: the drive parameters (the fleet
YAML's drive fields), Twist / TwistStamped in and out, yaw <-> quaternion. The math is in :mod:`kdmarl_bringup.drive`.
"""

from __future__ import annotations

import math
from typing import Any

from geometry_msgs.msg import Twist, TwistStamped
from kdmarl_student.ros_support import descriptor
from rclpy.node import Node

from kdmarl_bringup.drive import DRIVES, BaseCommand, Limits

LIMIT_RANGE = (0.0, 1000.0)


def declare_drive_parameters(node: Node) -> tuple[str, Limits, bool]:
    """The drive parameters the adapter and the fake robot share (fleet YAML fields): drive, limits, stamped."""
    node.declare_parameter("drive", "holonomic", descriptor(
        "Drive kind: holonomic (linear.x, linear.y) | diff_drive (linear.x, angular.z; a unicycle).",
        read_only=True, additional_constraints=" | ".join(DRIVES)))
    for name, unit in (("max_linear", "m/s"), ("max_angular", "rad/s"), ("max_linear_accel", "m/s^2"),
                       ("max_angular_accel", "rad/s^2")):
        node.declare_parameter(name, 0.0, descriptor(f"Limit of the base ({unit}); 0 = none.",
                                                     float_range=LIMIT_RANGE))
    node.declare_parameter("cmd_vel_stamped", False, descriptor(
        "cmd_vel is geometry_msgs/TwistStamped (diff_drive_controller since Jazzy) instead of Twist.",
        read_only=True))
    drive = str(node.get_parameter("drive").value)
    if drive not in DRIVES:
        raise ValueError(f"parameter 'drive' must be one of {DRIVES}, got {drive!r}")
    return drive, read_limits(node), bool(node.get_parameter("cmd_vel_stamped").value)


def read_limits(node: Node) -> Limits:
    """The node's current limit parameters (they may be changed at run time within their ranges)."""
    return Limits(*(float(node.get_parameter(n).value) for n in
                    ("max_linear", "max_angular", "max_linear_accel", "max_angular_accel")))


def twist_command(msg: Any) -> BaseCommand:
    """Twist or TwistStamped -> BaseCommand."""
    twist = msg.twist if isinstance(msg, TwistStamped) else msg
    return BaseCommand(twist.linear.x, twist.linear.y, twist.angular.z)


def yaw_quaternion(yaw: float) -> tuple[float, float]:
    """(z, w) of the quaternion of a rotation by ``yaw`` about z."""
    return math.sin(yaw / 2.0), math.cos(yaw / 2.0)


def yaw_of(q: Any) -> float:
    """Yaw (rotation about z) of a geometry_msgs/Quaternion."""
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def command_message(cmd: BaseCommand, stamped: bool, stamp: Any = None, frame_id: str = "") -> Twist | TwistStamped:
    """BaseCommand -> Twist, or TwistStamped with ``stamp`` and ``frame_id`` (what diff_drive_controller takes)."""
    twist = Twist()
    twist.linear.x, twist.linear.y, twist.angular.z = float(cmd.vx), float(cmd.vy), float(cmd.wz)
    if not stamped:
        return twist
    msg = TwistStamped(twist=twist)
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg
