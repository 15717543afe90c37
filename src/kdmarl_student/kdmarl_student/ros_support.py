"""The ROS plumbing every kdmarl node shares: QoS per topic, parameter descriptors, diagnostics, spinning.

One module, so both ends of every topic use the same QoS (DESIGN.md section 7), every node declares its
parameters and reports its health the same way, and every node starts and stops the same way
(:mod:`kdmarl_student.lifetime`). The student node, the simulation bridge, the robot adapter, the fake
robot and the monitor import it; it imports rclpy and the message packages only (no onnxruntime, psutil or
numpy), so a node that does not run a policy does not pay for one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions

from kdmarl_student.lifetime import (
    bound_teardown,
    die_with_parent,
    install_stop_handlers,
    received_signals,
    shutdown_requested,
)

# QoS per topic (docs/swarm.md, "The ROS 2 swarm"): publishers and subscribers import the same profile.
OBSERVATION_QOS: QoSProfile = qos_profile_sensor_data
ACTION_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
REPORT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
EPISODE_QOS = QoSProfile(  # /kdmarl/episode: a monitor that starts late still gets every summary
    history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
CLOCK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
CMD_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(  # /landmarks: set once, read by every adapter whenever it starts
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
FLEET_STOP_TOPIC = "/kdmarl/stop"  # kdmarl_msgs/FleetStop, LATCHED_QOS (kdmarl_bringup.fleet_stop publishes it)


def descriptor(
    description: str,
    *,
    read_only: bool = False,
    float_range: tuple[float, float] | None = None,
    int_range: tuple[int, int] | None = None,
    additional_constraints: str = "",
) -> ParameterDescriptor:
    """A ParameterDescriptor with an optional range, so ``ros2 param describe`` and rqt show the limits."""
    d = ParameterDescriptor(description=description, read_only=read_only, additional_constraints=additional_constraints)
    if float_range is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(float_range[0]), to_value=float(float_range[1]))]
    if int_range is not None:
        d.integer_range = [IntegerRange(from_value=int(int_range[0]), to_value=int(int_range[1]), step=1)]
    return d


def steady_clock() -> Clock:
    return Clock(clock_type=ClockType.STEADY_TIME)


def diagnostic_status(
    level: bytes, name: str, message: str, hardware_id: str, values: dict[str, Any]
) -> DiagnosticStatus:
    """One DiagnosticStatus with string key/values (the format rqt_robot_monitor and aggregators read)."""
    return DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()],
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


class RateMeter:
    """Arrival rate (Hz) over a sliding window of steady-clock timestamps; rclpy has no topic statistics."""

    def __init__(self, window: int = 50) -> None:
        self._stamps: deque[float] = deque(maxlen=window)

    def tick(self, now: float) -> None:
        self._stamps.append(now)

    def rate(self, now: float, horizon_s: float = 5.0) -> float:
        recent = [t for t in self._stamps if now - t <= horizon_s]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)


def publisher_names(node: Node, topic: str) -> list[str]:
    """Fully qualified names of the nodes publishing ``topic`` (sorted); a publisher whose node discovery has
    not named yet reads "a node not yet discovered" rather than rmw's ``_NODE_NAME_UNKNOWN_`` placeholder."""
    names = []
    for info in node.get_publishers_info_by_topic(topic):
        known = "_UNKNOWN_" not in info.node_name and "_UNKNOWN_" not in info.node_namespace
        names.append(f"{info.node_namespace.rstrip('/')}/{info.node_name}" if known else "a node not yet discovered")
    return sorted(names)


def spin_node(node: Node, on_shutdown: Callable[[], None] | None = None, executor: Any | None = None) -> None:
    """Spin until a stop is requested (SIGINT/SIGTERM, see :mod:`kdmarl_student.lifetime`) or the context
    shuts down, then run ``on_shutdown`` while publishing still works, then destroy the node.

    rclpy's own signal handler shuts the context down before user code can react, so a robot could not
    send its final zero ``Twist``; nodes therefore start with ``SignalHandlerOptions.NO`` (see
    :func:`init_ros`), whose handlers only set a flag. Spinning in short slices lets the loop see the flag
    promptly while the wait set is idle; further signals during shutdown change nothing.
    """
    executor = executor or SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok() and not shutdown_requested():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        signals = received_signals()
        if signals:
            node.get_logger().info(f"shutting down ({signals[0]})")
        if on_shutdown is not None:
            try:
                on_shutdown()
            except Exception as err:  # shutdown must complete
                node.get_logger().warning(f"shutdown hook failed: {err}")
        bound_teardown()
        executor.remove_node(node)
        node.destroy_node()
        # Before the context: an executor left to the garbage collector destroys its guard condition after the
        # context did, and prints "Exception ignored in Executor.__del__ ... InvalidHandle" (seen at Ctrl-C).
        executor.shutdown()
        rclpy.try_shutdown(uninstall_handlers=False)  # True would reset our SIGINT handler to SIG_DFL


def spin_while(node: Node, keep_going: Callable[[], bool], seconds: float) -> None:
    """Spin ``node`` while ``keep_going()`` holds, for at most ``seconds`` (``inf``: until Ctrl-C or SIGTERM); what the
    one-shot commands (``announce``, ``fleet_stop``) do while they hold a latched message for late joiners."""
    deadline = time.monotonic() + seconds
    while rclpy.ok() and not shutdown_requested() and keep_going() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)


def hold_for_late_joiners(node: Node, hold_s: float, what: str) -> None:
    """Say what a one-shot command published, then keep its latched message served for ``hold_s`` seconds
    (``<= 0``: until Ctrl-C or SIGTERM), so robots that start later still receive it."""
    print(f"{what}; held for late joiners {'until Ctrl-C' if hold_s <= 0 else f'for {hold_s:g} s'}", flush=True)
    spin_while(node, lambda: True, hold_s if hold_s > 0 else float("inf"))


def init_ros(argv: list[str] | None) -> None:
    """rclpy.init without rclpy's signal handlers; SIGINT/SIGTERM request a stop, the parent's exit sends SIGTERM."""
    install_stop_handlers()
    die_with_parent()
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)


__all__ = [
    "ACTION_QOS",
    "CLOCK_QOS",
    "CMD_QOS",
    "EPISODE_QOS",
    "FLEET_STOP_TOPIC",
    "LATCHED_QOS",
    "OBSERVATION_QOS",
    "REPORT_QOS",
    "RateMeter",
    "descriptor",
    "diagnostic_status",
    "hold_for_late_joiners",
    "init_ros",
    "publisher_names",
    "spin_node",
    "spin_while",
    "steady_clock",
]
