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
``cmd_vel`` out     geometry_msgs/Twist                         reliable, keep last 10
==================  ==========================================  ======================================

The observation is the scenario's, in its frame and scale: positions are ``(p - origin) / world_scale``
(metres -> scenario units), velocities ``v / world_scale`` in the world frame (odom twists are in the
child frame, ``<robot>/base_link``, and are rotated by the robot's yaw). For ``simple_spread`` the layout
is ``self_vel, self_pos, landmarks (relative), other_agents (relative, in the bundle's agent order), comm
(zeros: the agents are silent)``; the full-observation layouts are supported (``num_*_neighbors`` unset).

A discrete MPE move becomes a world-frame velocity ``speed_scale`` m/s along -x/+x/-y/+y, rotated into the
robot's base frame (holonomic base). A zero Twist is sent when the robot's own odometry or the student's
action is older than its timeout (Isaac Sim keeps applying the last command), for safe actions, and at
shutdown. Staleness uses the steady clock, so a simulator that starts late or resets its clock is harmless.

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
from geometry_msgs.msg import PoseArray, Twist
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

from kdmarl_msgs.msg import AgentAction, AgentObservation

MOVE_DIRECTIONS: dict[str, tuple[float, float]] = dict(zip(MPE_MOVES, MPE_MOVE_DIRECTIONS, strict=True))


def yaw_of(q: Any) -> float:
    """Yaw (rotation about z) of a geometry_msgs/Quaternion."""
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def odom_state(msg: Odometry) -> tuple[np.ndarray, np.ndarray, float]:
    """(position [2], world-frame velocity [2], yaw) of an Odometry message (twist is in the child frame)."""
    p = msg.pose.pose.position
    yaw = yaw_of(msg.pose.pose.orientation)
    vx, vy = msg.twist.twist.linear.x, msg.twist.twist.linear.y
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([p.x, p.y]), np.array([c * vx - s * vy, s * vx + c * vy]), yaw


def spread_observation(own_pos: np.ndarray, own_vel: np.ndarray, landmarks: np.ndarray, peers: list[np.ndarray],
                       n_comm: int) -> np.ndarray:
    """simple_spread's full observation from scenario-frame positions (mpe2's ``observation()``, same order)."""
    parts = [own_vel, own_pos, *(lm - own_pos for lm in landmarks), *(p - own_pos for p in peers),
             np.zeros(n_comm)]
    return np.concatenate(parts).astype(np.float32)


def move_to_twist(action: int, speed: float, yaw: float, meanings: tuple[str, ...] = MPE_MOVES) -> Twist:
    """A discrete MPE move -> Twist in the robot's base frame (holonomic); unknown indices -> zero."""
    meaning = meanings[action] if 0 <= action < len(meanings) else "no_op"
    dx, dy = MOVE_DIRECTIONS.get(meaning.split("+")[0], (0.0, 0.0))
    c, s = math.cos(yaw), math.sin(yaw)
    twist = Twist()
    twist.linear.x = speed * (c * dx + s * dy)
    twist.linear.y = speed * (-s * dx + c * dy)
    return twist


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
        self.create_subscription(Odometry, "odom", self._on_own_odom, qos_profile_sensor_data)
        for peer in self.peers:
            self.create_subscription(Odometry, f"/{peer}/odom", lambda m, p=peer: self._on_peer_odom(p, m),
                                     qos_profile_sensor_data)
        topic = str(self.get_parameter("landmarks_topic").value)
        if topic:
            self.create_subscription(PoseArray, topic, self._on_landmarks, LATCHED_QOS)
        self.create_subscription(AgentAction, "action", self._on_action, ACTION_QOS)
        self.obs_pub = self.create_publisher(AgentObservation, "observation", OBSERVATION_QOS)
        self.cmd_pub = self.create_publisher(Twist, "cmd_vel", CMD_QOS)
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
        pos, vel, yaw = odom_state(msg)
        self.own = (pos, vel, yaw, time.perf_counter())

    def _on_peer_odom(self, peer: str, msg: Odometry) -> None:
        self.peer_pos[peer] = odom_state(msg)[0]

    def _on_landmarks(self, msg: PoseArray) -> None:
        self._set_landmarks([v for pose in msg.poses for v in (pose.position.x, pose.position.y)])

    def _on_action(self, msg: AgentAction) -> None:
        self.action = (int(msg.action), bool(msg.is_safe_action), time.perf_counter())
        self._command()

    # ---- output ------------------------------------------------------------------------------------
    def _command(self) -> None:
        """Publish the Twist for the latest action, or a zero Twist when anything is stale."""
        now = time.perf_counter()
        own_fresh = self.own is not None and now - self.own[3] <= float(self.get_parameter("odom_timeout_s").value)
        act_fresh = self.action is not None and now - self.action[2] <= float(
            self.get_parameter("action_timeout_s").value)
        if not (own_fresh and act_fresh) or self.action is None or self.action[1]:
            self.cmd_pub.publish(Twist())
            self.zero_twists += 1
            return
        assert self.own is not None
        self.cmd_pub.publish(move_to_twist(self.action[0], float(self.get_parameter("speed_scale").value),
                                           self.own[2], self.meanings))

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
        """Zero Twist at shutdown: a simulator keeps applying the last command otherwise."""
        for _ in range(3):
            self.cmd_pub.publish(Twist())


def main(argv: list[str] | None = None) -> None:
    init_ros(sys.argv if argv is None else argv)
    node = RobotAdapter()
    spin_node(node, on_shutdown=node.stop)


if __name__ == "__main__":
    main()
