"""``fleet_stop``: stop (or resume) every robot of a fleet at once, saying who and why.

    ros2 run kdmarl_bringup fleet_stop --who alice --why "person in the arena"      # stop, held until Ctrl-C
    ros2 run kdmarl_bringup fleet_stop --resume --who alice --why "arena clear"
    ros2 topic pub --once -w 1 --qos-reliability reliable --qos-durability transient_local \\
        /kdmarl/stop kdmarl_msgs/msg/FleetStop "{stop: true, who: alice, why: test}"   # the same, by hand

It publishes one ``kdmarl_msgs/FleetStop`` (stamped now) on ``/kdmarl/stop`` with :data:`STOP_QOS` (reliable,
transient local, keep last 1), at once or, with ``--wait-subscribers N``, once N subscribers matched (discovery of a
new process takes about a second in a large domain). Every robot adapter zeroes its ``cmd_vel`` on a stop and keeps
it zero until a resume with a newer stamp (the newest stamp wins, whoever sent it), and latches the state itself: a
stop stays in force after this process exits. Transient local durability lives in the publishing process, so a node
that starts *after* the publisher exited does not see it: the command therefore stays up (``--hold-s 0``, the
default: until Ctrl-C) so late joiners are stopped too; ``--hold-s S`` exits after S seconds.
"""

from __future__ import annotations

import argparse
import sys
import time

import rclpy
from kdmarl_student.ros_support import FLEET_STOP_TOPIC, LATCHED_QOS, hold_for_late_joiners, init_ros
from rclpy.node import Node

from kdmarl_msgs.msg import FleetStop

STOP_TOPIC = FLEET_STOP_TOPIC  # one name, in kdmarl_student.ros_support (student nodes subscribe too)
STOP_QOS = LATCHED_QOS  # reliable, transient local, keep last 1: a late joiner gets the fleet's current state


def stop_message(node: Node, stop: bool, who: str, why: str) -> FleetStop:
    msg = FleetStop(stop=stop, who=who, why=why)
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet_stop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--resume", action="store_true", help="Resume the fleet instead of stopping it.")
    parser.add_argument("--who", required=True, help="Who issues it (logged by every robot).")
    parser.add_argument("--why", required=True, help="Why (logged by every robot).")
    parser.add_argument("--topic", default=STOP_TOPIC)
    parser.add_argument("--hold-s", type=float, default=0.0,
                        help="Keep the latched message up this long for late joiners (0 = until Ctrl-C).")
    parser.add_argument("--wait-subscribers", type=int, default=0,
                        help="Publish once this many subscribers (robot adapters, students) are matched, or after "
                             "--wait-s: a new process needs DDS discovery first, which a stop published at once "
                             "would spend in transit (late joiners get it either way: it is latched).")
    parser.add_argument("--wait-s", type=float, default=10.0)
    args, ros_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    init_ros([sys.argv[0], *ros_args])
    node = rclpy.create_node("fleet_stop")
    pub = node.create_publisher(FleetStop, args.topic, STOP_QOS)
    waited = time.monotonic() + args.wait_s
    said = -1
    while pub.get_subscription_count() < args.wait_subscribers and time.monotonic() < waited:
        if pub.get_subscription_count() != said:
            said = pub.get_subscription_count()
            print(f"{said} of {args.wait_subscribers} subscribers matched", flush=True)
        rclpy.spin_once(node, timeout_sec=0.05)
    if pub.get_subscription_count() < args.wait_subscribers:
        print(f"only {pub.get_subscription_count()} of {args.wait_subscribers} subscribers matched after "
              f"{args.wait_s:g} s; publishing anyway", flush=True)
    msg = stop_message(node, not args.resume, args.who, args.why)
    pub.publish(msg)
    what = "resume" if args.resume else "stop"
    try:
        hold_for_late_joiners(node, args.hold_s, f"fleet {what} published on {args.topic} (stamp "
                              f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}) by {args.who!r}: {args.why!r}")
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
