"""Robot adapter: standard robot topics <-> a student's observation and action (the Isaac Sim / real path).

One adapter per robot, in the robot's namespace, next to its student. It speaks what Isaac Sim's multi-robot
ROS 2 bridge, Nav2 and real mobile bases speak (DESIGN.md section 7):

==================  ==========================================  ======================================
topic (relative)    type                                        QoS
==================  ==========================================  ======================================
``odom`` in         nav_msgs/Odometry (own robot)               sensor data (best effort)
``/<peer>/odom`` in nav_msgs/Odometry (every other robot)       sensor data (best effort)
``landmarks`` in    geometry_msgs/PoseArray (param landmarks_   reliable, transient local (latched)
                    topic, default ``/landmarks``) — optional
``observation`` out kdmarl_msgs/AgentObservation -> student     sensor data
``action`` in       kdmarl_msgs/AgentAction <- student          reliable
``cmd_vel`` out     geometry_msgs/Twist, or TwistStamped with   reliable, keep last 10
                    ``cmd_vel_stamped`` (frame ``cmd_vel_frame_id``)
``/kdmarl/stop`` in kdmarl_msgs/FleetStop (param stop_topic)    reliable, transient local (latched)
==================  ==========================================  ======================================

The observation is the scenario's, in its frame and scale: positions are ``(p - origin) / world_scale``
(metres -> scenario units), velocities ``v / world_scale`` in the world frame (odom twists are in the
child frame, ``<robot>/base_link``, and are rotated by the robot's yaw). For ``simple_spread`` the layout
is ``self_vel, self_pos, landmarks (relative), other_agents (relative, in the bundle's agent order), comm
(zeros: the agents are silent)``; the full-observation layouts are supported (``num_*_neighbors`` unset).

A discrete MPE move becomes a world-frame velocity ``speed_scale`` m/s along -x/+x/-y/+y, turned into the base's
command by its ``drive`` (:mod:`kdmarl_bringup.drive`): rotated into the base frame (``holonomic``), or ``(v, ω)``
for a ``diff_drive`` base by Robotarium's heading tracking (``conversion: heading``, the default, gain and limit
``max_angular``) or its near-identity diffeomorphism (``conversion: diffeomorphism``, projection distance
``projection_distance`` = 0.05 m).
With the diffeomorphism the observed ``self_pos`` / ``self_vel`` are those of the point ``projection_distance``
ahead of the base, the point the conversion moves as a single integrator (peers are their odom positions).
The command is recomputed for every own odometry message as well as for every action and control tick: the
conversion depends on the heading, which a diff-drive base changes between two decisions (Robotarium runs it in
its control loop too). Every command then goes through the limits (``max_linear``, ``max_angular``,
``max_linear_accel``, ``max_angular_accel``; 0 = none): no published command exceeds them.

A *stop* is an exact zero command, sent at once (braking is not ramped, see :mod:`kdmarl_bringup.drive`): when
the robot's own odometry or the student's action is older than its timeout (Isaac Sim keeps applying the last
command), for safe actions, at shutdown, and while the fleet is stopped. A ``FleetStop`` with ``stop: true`` on
``/kdmarl/stop`` (latched) gives a zero command from its callback (within one control period of its arrival)
and on every control tick after, whatever the student does (the adapter owns the wheels: a frozen student
cannot keep the robot going), until a ``stop: false`` with a newer stamp resumes. ``hold_until_resume`` makes an
adapter start stopped, moving only after a resume (a stop published before the adapter discovered its publisher
reaches it only through discovery). Staleness uses the steady
clock, so a simulator that starts late or resets its clock is harmless.

Students with memory (history features, recurrent state) need nothing else from the adapter: the student keeps
its own previous observation and state. What the adapter owns is *when* a memory is out of date: once it has
published observations and then stops (own odometry older than ``odom_timeout_s``, a peer or the landmarks
missing), the first observation after the gap starts a new episode counter (episode + 1, step 0), which makes
the student reset its memory, and the adapter logs it. Episode counters start at 0, steps count per episode.
"""

from __future__ import annotations

import array
import math
import sys
import time
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseArray, Twist, TwistStamped
from kdmarl_student.manifest import load_manifest
from kdmarl_student.ros_support import (
    ACTION_QOS,
    CMD_QOS,
    LATCHED_QOS,
    OBSERVATION_QOS,
    descriptor,
    init_ros,
    spin_node,
    steady_clock,
)
from kdmarl_student.scenarios import MPE_MOVE_DIRECTIONS, MPE_MOVES, is_smax
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from kdmarl_bringup.base_io import command_message, declare_drive_parameters, read_limits, yaw_of
from kdmarl_bringup.drive import (
    CONVERSIONS,
    PROJECTION_DISTANCE_M,
    ZERO,
    BaseCommand,
    control_point,
    limit_command,
    point_velocity,
    world_velocity_to_command,
)
from kdmarl_bringup.fleet_stop import STOP_QOS, STOP_TOPIC
from kdmarl_msgs.msg import AgentAction, AgentObservation, FleetStop

MOVE_DIRECTIONS: dict[str, tuple[float, float]] = dict(zip(MPE_MOVES, MPE_MOVE_DIRECTIONS, strict=True))


def odom_state(msg: Odometry, projection_distance: float = 0.0) -> tuple[np.ndarray, np.ndarray, float]:
    """(position [2], world-frame velocity [2], yaw) of the point ``projection_distance`` ahead of the base of an
    Odometry message (0: the base itself; the twist is in the child frame, the angular rate moves the point)."""
    p, t = msg.pose.pose.position, msg.twist.twist
    yaw = yaw_of(msg.pose.pose.orientation)
    pos = control_point(p.x, p.y, yaw, projection_distance)
    return np.array(pos), np.array(point_velocity(t.linear.x, t.linear.y, t.angular.z, yaw, projection_distance)), yaw


def spread_observation(own_pos: np.ndarray, own_vel: np.ndarray, landmarks: np.ndarray, peers: list[np.ndarray],
                       n_comm: int) -> np.ndarray:
    """simple_spread's full observation from scenario-frame positions (mpe2's ``observation()``, same order)."""
    parts = [own_vel, own_pos, *(lm - own_pos for lm in landmarks), *(p - own_pos for p in peers),
             np.zeros(n_comm)]
    return np.concatenate(parts).astype(np.float32)


def move_velocity(action: int, speed: float, meanings: tuple[str, ...] = MPE_MOVES) -> tuple[float, float]:
    """A discrete MPE move -> world-frame velocity (m/s); unknown indices -> zero."""
    meaning = meanings[action] if 0 <= action < len(meanings) else "no_op"
    dx, dy = MOVE_DIRECTIONS.get(meaning.split("+")[0], (0.0, 0.0))
    return speed * dx, speed * dy


class RobotAdapter(Node):
    """Odometry of the team -> this robot's student observation; the student's action -> ``cmd_vel``."""

    def __init__(self) -> None:
        super().__init__("robot_adapter")
        self.declare_parameter("bundle", "", descriptor("Bundle directory (scenario and agent layout).",
                                                        read_only=True))
        self.declare_parameter("agent", "", descriptor(
            "Bundle agent of this robot; empty = last component of the namespace.", read_only=True))
        self.declare_parameter("peers", [""], descriptor(
            "Namespaces of the other robots, in the bundle's agent order (their odom feeds other_agents).",
            read_only=True))
        self.declare_parameter("landmarks", [0.0], descriptor(
            "Landmark positions in the odom frame, metres, flat [x0, y0, x1, y1, ...]; replaced by messages "
            "on landmarks_topic."))
        self.declare_parameter("landmarks_topic", "/landmarks", descriptor(
            "geometry_msgs/PoseArray with landmark positions (latched); empty = parameters only.", read_only=True))
        self.declare_parameter("world_scale", 1.0, descriptor("Metres per scenario unit.",
                                                              float_range=(1e-3, 1e3)))
        self.declare_parameter("origin", [0.0, 0.0], descriptor(
            "Odom-frame point (metres) that is the scenario's origin."))
        self.declare_parameter("speed_scale", 2.0, descriptor(
            "Speed (m/s) of one discrete move; 2.0 = MPE's terminal speed at world_scale 1.",
            float_range=(0.0, 10.0)))
        self.declare_parameter("rate_hz", 10.0, descriptor("Observation rate (steady clock).", read_only=True,
                                                           float_range=(0.1, 1000.0)))
        self.declare_parameter("odom_timeout_s", 0.5, descriptor(
            "Own odometry older than this -> zero Twist, no observation.", float_range=(0.01, 60.0)))
        self.declare_parameter("action_timeout_s", 0.5, descriptor(
            "Student action older than this -> zero Twist.", float_range=(0.01, 60.0)))
        self.drive, _, self.stamped = declare_drive_parameters(self)
        self.declare_parameter("conversion", CONVERSIONS[0], descriptor(
            "diff_drive: world velocity -> (v, omega) by Robotarium's heading tracking (gain max_angular) or its "
            "near-identity diffeomorphism (a point projection_distance ahead is the single integrator).",
            read_only=True, additional_constraints=" | ".join(CONVERSIONS)))
        self.declare_parameter("projection_distance", PROJECTION_DISTANCE_M, descriptor(
            "diff_drive + diffeomorphism: distance (m) of the controlled point ahead of the base.", read_only=True,
            float_range=(1e-3, 10.0)))
        self.declare_parameter("cmd_vel_frame_id", "", descriptor(
            "header.frame_id of a stamped cmd_vel; empty = <robot>/base_link.", read_only=True))
        self.declare_parameter("stop_topic", STOP_TOPIC, descriptor(
            "kdmarl_msgs/FleetStop topic (latched): stop -> zero velocity until a newer resume.", read_only=True))
        self.declare_parameter("hold_until_resume", False, descriptor(
            "Start stopped: move only after a FleetStop resume (an operator enables the fleet). Without it, an "
            "adapter that starts while a stop is in force may move until discovery delivers the latched stop.",
            read_only=True))
        self.hold_until_resume = bool(self.get_parameter("hold_until_resume").value)
        self.conversion = str(self.get_parameter("conversion").value)
        if self.conversion not in CONVERSIONS:
            raise ValueError(f"parameter 'conversion' must be one of {CONVERSIONS}, got {self.conversion!r}")
        # The observed point: the one the conversion moves as a single integrator.
        self.projection = (float(self.get_parameter("projection_distance").value)
                           if self.drive == "diff_drive" and self.conversion == "diffeomorphism" else 0.0)
        ns = self.get_namespace().strip("/")
        self.cmd_frame = str(self.get_parameter("cmd_vel_frame_id").value) or (
            f"{ns}/base_link" if ns else "base_link")
        self.period = 1.0 / float(self.get_parameter("rate_hz").value)

        manifest = load_manifest(str(self.get_parameter("bundle").value)).data
        self.agent = str(self.get_parameter("agent").value) or self.get_namespace().rstrip("/").rsplit("/", 1)[-1]
        entries = {a["name"]: a for a in manifest["agents"]}
        if self.agent not in entries:
            raise ValueError(f"agent {self.agent!r} not in the bundle ({sorted(entries)})")
        scenario = manifest["scenario"]
        params = scenario.get("params", {})
        if is_smax(scenario["name"]):
            raise ValueError(f"the robot adapter is MPE-only (simple_spread kinematics from odometry); the bundle's "
                             f"scenario {scenario['name']} is a SMAX battle, which runs in the simulation bridge "
                             "only (kdmarl_bringup.sim_bridge)")
        if scenario["name"] != "simple_spread" or params.get("num_agent_neighbors") or params.get(
                "num_landmark_neighbors"):
            raise ValueError("the robot adapter builds full simple_spread observations only; scenario "
                             f"{scenario['name']} with params {params} is not supported")
        entry = entries[self.agent]
        self.source_dim = int(entry["observation"]["source_dim"])
        self.meanings = tuple(entry["action"]["meanings"])
        self.n_agents = len(manifest["agents"])
        layout = entry["observation"]["layout"]
        self.n_comm = int(layout["comm"][1] - layout["comm"][0]) if "comm" in layout else 0
        self.peers = [p.strip("/") for p in self.get_parameter("peers").value if p]
        if len(self.peers) != self.n_agents - 1:
            raise ValueError(f"parameter 'peers' needs {self.n_agents - 1} namespaces (the other agents' "
                             f"robots, in bundle order); got {self.peers}")
        self._set_landmarks(list(self.get_parameter("landmarks").value))

        self.own: tuple[np.ndarray, np.ndarray, float, float] | None = None  # pos, vel, yaw, steady t
        self.peer_pos: dict[str, np.ndarray] = {}
        self.action: tuple[int, bool, float] | None = None  # action, safe, steady t
        self.episode = 0
        self.step = 0
        self._gap = ""  # why observations stopped after some were published (then the next starts an episode)
        self.zero_twists = 0
        self.last_cmd: tuple[BaseCommand, float] = (ZERO, -math.inf)  # last published command, steady t
        self.fleet_stop: FleetStop | None = None  # the newest FleetStop acted on
        # The stop first: rclpy's executor takes ready subscriptions in creation order, so a stop does not queue
        # behind a burst of odometry (16 robots: about 160 odometry messages a second per adapter).
        self.create_subscription(FleetStop, str(self.get_parameter("stop_topic").value), self._on_stop, STOP_QOS)
        self.create_subscription(Odometry, "odom", self._on_own_odom, qos_profile_sensor_data)
        for peer in self.peers:
            self.create_subscription(Odometry, f"/{peer}/odom", lambda m, p=peer: self._on_peer_odom(p, m),
                                     qos_profile_sensor_data)
        topic = str(self.get_parameter("landmarks_topic").value)
        if topic:
            self.create_subscription(PoseArray, topic, self._on_landmarks, LATCHED_QOS)
        self.create_subscription(AgentAction, "action", self._on_action, ACTION_QOS)
        self.obs_pub = self.create_publisher(AgentObservation, "observation", OBSERVATION_QOS)
        self.cmd_pub = self.create_publisher(TwistStamped if self.stamped else Twist, "cmd_vel", CMD_QOS)
        self.create_timer(1.0 / float(self.get_parameter("rate_hz").value), self._tick, clock=steady_clock())

    def _set_landmarks(self, flat: list[float]) -> None:
        n_landmarks = self.n_agents  # simple_spread: N landmarks
        if len(flat) != 2 * n_landmarks:
            self.landmarks: np.ndarray | None = None
            if len(flat) > 1:
                self.get_logger().warning(f"landmarks need {2 * n_landmarks} numbers, got {len(flat)}")
            return
        self.landmarks = np.asarray(flat, dtype=np.float64).reshape(n_landmarks, 2)

    def _to_scenario(self, p: np.ndarray) -> np.ndarray:
        origin = np.asarray(self.get_parameter("origin").value, dtype=np.float64)
        return (p - origin) / float(self.get_parameter("world_scale").value)

    # ---- callbacks ---------------------------------------------------------------------------------
    def _on_own_odom(self, msg: Odometry) -> None:
        pos, vel, yaw = odom_state(msg, self.projection)
        self.own = (pos, vel, yaw, time.perf_counter())
        if self.action is not None and not self.stop_reason(self.own[3]):
            self._command()  # the conversion follows the heading at the odometry rate, not only per decision

    def _on_peer_odom(self, peer: str, msg: Odometry) -> None:
        self.peer_pos[peer] = odom_state(msg)[0]

    def _on_landmarks(self, msg: PoseArray) -> None:
        self._set_landmarks([v for pose in msg.poses for v in (pose.position.x, pose.position.y)])

    def _on_action(self, msg: AgentAction) -> None:
        self.action = (int(msg.action), bool(msg.is_safe_action), time.perf_counter())
        self._command()

    def _on_stop(self, msg: FleetStop) -> None:
        """A fleet stop or resume: the newest stamp wins; a stop gives a zero command at once."""
        current = self.fleet_stop
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if current is not None and stamp < (current.header.stamp.sec, current.header.stamp.nanosec):
            self.get_logger().warning(f"ignoring an older fleet {'stop' if msg.stop else 'resume'} from "
                                      f"{msg.who!r} ({msg.why!r}): a newer one is in force")
            return
        self.fleet_stop = msg
        if msg.stop:
            self._command()
            self.get_logger().warning(f"fleet stop by {msg.who!r}: {msg.why!r}; zero cmd_vel until a resume")
        else:
            self.get_logger().info(f"fleet resumed by {msg.who!r}: {msg.why!r}")

    # ---- output ------------------------------------------------------------------------------------
    def stop_reason(self, now: float) -> str:
        """Why the robot must stand still now ("" = it may move): fleet stop, stale input, safe action."""
        if self.fleet_stop is not None and self.fleet_stop.stop:
            return "fleet stop"
        if self.fleet_stop is None and self.hold_until_resume:
            return "waiting for a fleet resume"
        if self.own is None or now - self.own[3] > float(self.get_parameter("odom_timeout_s").value):
            return "own odom stale"
        if self.action is None or now - self.action[2] > float(self.get_parameter("action_timeout_s").value):
            return "action stale"
        return "safe action" if self.action[1] else ""

    def _command(self) -> None:
        """Publish the limited command for the latest action, or an exact zero when the robot must stop."""
        now = time.perf_counter()
        if self.stop_reason(now):
            self._publish(ZERO)
            self.zero_twists += 1
            return
        assert self.own is not None and self.action is not None
        vx, vy = move_velocity(self.action[0], float(self.get_parameter("speed_scale").value), self.meanings)
        desired = world_velocity_to_command(vx, vy, self.own[2], self.drive, conversion=self.conversion,
                                            projection_distance=max(self.projection, 1e-3),
                                            angular_velocity_limit=read_limits(self).max_angular or math.pi)
        previous, then = self.last_cmd
        t, stamp = self._clock_reading()
        self._publish(limit_command(desired, previous, t - then, read_limits(self), self.period), (t, stamp))

    def _clock_reading(self) -> tuple[float, Any]:
        """(seconds for the acceleration limits, header stamp) from one clock reading: the stamp's own clock
        (system time), so the stamps a base sees are the times the limits were computed for; under sim time
        the steady clock (sim time may pause or jump back on reset)."""
        now = self.get_clock().now()
        t = time.perf_counter() if self.get_clock().ros_time_is_active else now.nanoseconds * 1e-9
        return t, now.to_msg()

    def _publish(self, cmd: BaseCommand, clock: tuple[float, Any] | None = None) -> None:
        t, stamp = clock or self._clock_reading()
        self.last_cmd = (cmd, t)
        self.cmd_pub.publish(command_message(cmd, self.stamped, stamp, self.cmd_frame))

    def _tick(self) -> None:
        now = time.perf_counter()
        missing = [p for p in self.peers if p not in self.peer_pos]
        stale = self.own is None or now - self.own[3] > float(self.get_parameter("odom_timeout_s").value)
        if stale or missing or self.landmarks is None:
            why = "own odom stale" if stale else (f"no odom from {missing}" if missing else "no landmarks")
            self.get_logger().info(f"not observing: {why}; zero cmd_vel", throttle_duration_sec=5.0)
            if self.step > 0 and not self._gap:
                self._gap = why
            self._command()
            return
        assert self.own is not None
        if self._gap:
            self.episode, self.step = self.episode + 1, 0
            self.get_logger().info(f"observing again after a gap ({self._gap}): episode {self.episode} starts at "
                                   "step 0, so the student resets its memory")
            self._gap = ""
        scale = float(self.get_parameter("world_scale").value)
        obs = spread_observation(self._to_scenario(self.own[0]), self.own[1] / scale,
                                 np.array([self._to_scenario(lm) for lm in self.landmarks]),
                                 [self._to_scenario(self.peer_pos[p]) for p in self.peers], self.n_comm)
        msg = AgentObservation(agent=self.agent, episode=self.episode, step=self.step)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "world"
        msg.data = array.array("f", obs.tobytes())
        self.obs_pub.publish(msg)
        self.step += 1
        self._command()

    def stop(self) -> None:
        """Zero command at shutdown: a simulator keeps applying the last command otherwise."""
        for _ in range(3):
            self._publish(ZERO)


def main(argv: list[str] | None = None) -> None:
    init_ros(sys.argv if argv is None else argv)
    node = RobotAdapter()
    spin_node(node, on_shutdown=node.stop)


if __name__ == "__main__":
    main()
