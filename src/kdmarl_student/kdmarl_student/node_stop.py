"""The student node's side of the fleet stop (issue 24 item 4), a mixin of the student node.

Every student subscribes to the latched ``/kdmarl/stop`` (``kdmarl_msgs/FleetStop``, reliable + transient local +
keep last 1: the QoS ``kdmarl_bringup.fleet_stop`` and the robot adapters use, so a student started after the stop
gets it at discovery). While the newest message says stop, every admitted observation is answered with the node's
safe action (``is_safe_action`` true, counted as ``fleet_stop_answers``) and no inference runs; ``/diagnostics``
is WARN and names who stopped the fleet and why. Only a ``stop: false`` with a stamp not older than the stop
resumes (several publishers: the newest stamp wins, an older message is ignored with a warning, as the adapter
does). The subscription exists from the node's construction, in every lifecycle state, and is created before the
observation subscription, so the executor takes a pending stop before a pending observation: the first observation
answered after the stop arrived is already a safe one (within one control period).
"""

from __future__ import annotations

from kdmarl_msgs.msg import FleetStop
from kdmarl_student.ros_support import FLEET_STOP_TOPIC, LATCHED_QOS


def stop_stamp(msg: FleetStop) -> tuple[int, int]:
    return (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))


class FleetStopHandling:
    """Subscribe to the fleet stop and keep its state (a mixin; see the module docstring)."""

    def _subscribe_fleet_stop(self) -> None:
        self._fleet_stop: FleetStop | None = None  # the newest FleetStop acted on
        self._stop_sub = self.create_subscription(FleetStop, FLEET_STOP_TOPIC, self._on_fleet_stop, LATCHED_QOS)

    @property
    def fleet_stopped(self) -> bool:
        msg = self._fleet_stop
        return msg is not None and bool(msg.stop)

    def fleet_stop_text(self) -> str:
        """"who: why" while the fleet is stopped, else ""."""
        msg = self._fleet_stop
        return f"by {msg.who!r}: {msg.why!r}" if msg is not None and msg.stop else ""

    def _answered_stopped(self, msg: object, mask: object) -> bool:
        """While the fleet is stopped: the safe action (no inference), counted; True when answered so."""
        if not self.fleet_stopped:
            return False
        self._counters.add("fleet_stop_answers")
        self._publish_safe(msg, mask=mask)
        return True

    def _on_fleet_stop(self, msg: FleetStop) -> None:
        current = self._fleet_stop
        if current is not None and stop_stamp(msg) < stop_stamp(current):
            self.get_logger().warning(f"ignoring an older fleet {'stop' if msg.stop else 'resume'} from {msg.who!r} "
                                      f"({msg.why!r}) on {FLEET_STOP_TOPIC}: a newer one is in force")
            return
        self._fleet_stop = msg
        if msg.stop:
            self.get_logger().warning(f"fleet stop by {msg.who!r}: {msg.why!r}; answering every observation with "
                                      f"the safe action until a resume on {FLEET_STOP_TOPIC}")
        else:
            self.get_logger().info(f"fleet resumed by {msg.who!r}: {msg.why!r}; acting again")


__all__ = ["FleetStopHandling", "stop_stamp"]
