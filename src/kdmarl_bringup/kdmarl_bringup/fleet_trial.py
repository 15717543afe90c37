"""Realtime trials of a fleet of fake robots over DDS, scored by the real mpe2 simple_spread (tests and bench).

A fleet (fake robots + robot adapters + students) is started the way a user starts it, from a fleet YAML through
``kdmarl-swarm`` (the node specs ``swarm.launch.py`` starts). :class:`FleetProbe` is the outside observer: it
publishes the landmarks and teleports the robots (``initialpose``) to the start of a real simple_spread episode
(``mpe2`` ``reset(seed)``), then samples every robot's odometry once per control period and scores the sampled
positions with mpe2's own reward functions (``global_reward``, ``reward``, blended by the env's
``local_ratio``, as ``SimpleEnv`` does) and ``kdmarl_student.scenarios.task_metrics`` (landmarks covered at the
last step, collisions summed over the steps). Robots are scored at their base (odometry) position. It also
records every ``cmd_vel`` the adapters publish, for the limit checks.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import yaml
from geometry_msgs.msg import Pose, PoseArray, PoseWithCovarianceStamped, Twist, TwistStamped
from kdmarl_student.ros_support import CMD_QOS, LATCHED_QOS
from kdmarl_student.scenarios import make_mpe2_env, scenario_spec, task_metrics
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from kdmarl_bringup.base_io import yaw_quaternion


@dataclass(frozen=True)
class Start:
    """One episode's start: robot positions and headings, landmark positions (metres, world_scale 1)."""

    seed: int
    positions: np.ndarray  # [N, 2]
    yaws: np.ndarray  # [N]
    landmarks: np.ndarray  # [N, 2]


def spread_starts(seeds: list[int]) -> list[Start]:
    """Real simple_spread starts (mpe2 ``reset(seed)``); headings uniform from ``default_rng(seed)`` (MPE agents
    have none), the same for every drive kind."""
    env = make_mpe2_env(scenario_spec("simple_spread"))
    out = []
    for seed in seeds:
        env.reset(seed=seed)
        world = env.unwrapped.world
        positions = np.array([a.state.p_pos for a in world.agents], dtype=np.float64)
        out.append(Start(seed, positions, np.random.default_rng(seed).uniform(-math.pi, math.pi, len(positions)),
                         np.array([lm.state.p_pos for lm in world.landmarks], dtype=np.float64)))
    return out


class SpreadScorer:
    """mpe2's simple_spread reward and task figures for externally measured agent positions."""

    def __init__(self) -> None:
        self.env = make_mpe2_env(scenario_spec("simple_spread"))
        self.env.reset(seed=0)
        self.world = self.env.unwrapped.world
        self.scenario = self.env.unwrapped.scenario
        self.local_ratio = float(self.env.unwrapped.local_ratio)

    def step(self, positions: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """Per-agent rewards [N] and task figures of one step's positions."""
        for agent, p in zip(self.world.agents, positions, strict=True):
            agent.state.p_pos = np.asarray(p, dtype=np.float64)
        for lm, p in zip(self.world.landmarks, landmarks, strict=True):
            lm.state.p_pos = np.asarray(p, dtype=np.float64)
        glob = float(self.scenario.global_reward(self.world))
        rewards = np.array([glob * (1.0 - self.local_ratio) + float(self.scenario.reward(a, self.world))
                            * self.local_ratio for a in self.world.agents])
        world = SimpleNamespace(agents=self.world.agents, landmarks=self.world.landmarks)
        return rewards, task_metrics("simple_spread", world)


def write_fleet(path: Path, robots: list[str], agents: list[str], defaults: dict[str, Any]) -> Path:
    """A fleet YAML: robot i runs agent i; ``defaults`` are drive fields for every robot."""
    entries = [{"name": r, "agent": a, "initial_pose": [0.0, 1.0 * i, 0.0]}
               for i, (r, a) in enumerate(zip(robots, agents, strict=True))]
    path.write_text(yaml.safe_dump({"defaults": defaults, "robots": entries}, sort_keys=False))
    return path


def runner_args(bundle: Path, fleet: Path, log_dir: Path, rate: float = 10.0) -> list[str]:
    """``python -m kdmarl_bringup.swarm_runner`` arguments of a realtime fake-robot fleet without monitor."""
    return ["--bundle", str(bundle), "--backend", "fake", "--mode", "realtime", "--monitor", "false",
            "--fleet", str(fleet), "--log-dir", str(log_dir), "--rate", repr(rate), "--grace", "15",
            "--no-compare-offline", "--drain", "0"]


def runner_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kdmarl_bringup.swarm_runner", *args]


def _pose(x: float, y: float, yaw: float = 0.0) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y = float(x), float(y)
    pose.orientation.z, pose.orientation.w = yaw_quaternion(yaw)
    return pose


class FleetProbe:
    """The observer of a fleet: odometry and cmd_vel of every robot, landmarks and teleports out."""

    def __init__(self, node: Node, robots: list[str], stamped: bool) -> None:
        self.node, self.robots = node, robots
        self.odom: dict[str, tuple[np.ndarray, float]] = {}  # base position, yaw
        self._teleport: dict[str, np.ndarray] = {}  # robot -> start position not yet seen in its odometry
        self.cmds: dict[str, list[tuple[float, Any]]] = {r: [] for r in robots}  # (receive time, message)
        for r in robots:
            node.create_subscription(Odometry, f"/{r}/odom", lambda m, r=r: self._on_odom(r, m),
                                     qos_profile_sensor_data)
            node.create_subscription(TwistStamped if stamped else Twist, f"/{r}/cmd_vel",
                                     lambda m, r=r: self.cmds[r].append((time.monotonic(), m)), CMD_QOS)
        self.landmarks_pub = node.create_publisher(PoseArray, "/landmarks", LATCHED_QOS)
        self.reset_pubs = {r: node.create_publisher(PoseWithCovarianceStamped, f"/{r}/initialpose", 10)
                           for r in robots}
        self.executor = SingleThreadedExecutor(context=node.context)
        self.executor.add_node(node)
        self.scorer = SpreadScorer()

    def _on_odom(self, robot: str, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        self.odom[robot] = (np.array([p.x, p.y]), math.atan2(2.0 * q.w * q.z, 1.0 - 2.0 * q.z * q.z))
        target = self._teleport.get(robot)
        if target is not None and float(np.linalg.norm(self.odom[robot][0] - target)) < 0.05:
            del self._teleport[robot]  # this message showed the teleport (later ones may have moved on)

    def spin(self, seconds: float, until: Any = None) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if until is not None and until():
                return True
            self.executor.spin_once(timeout_sec=0.01)
        return bool(until()) if until is not None else True

    def moving(self, cmd: Any) -> bool:
        t = cmd.twist if isinstance(cmd, TwistStamped) else cmd
        return t.linear.x != 0.0 or t.linear.y != 0.0 or t.angular.z != 0.0

    def wait_ready(self, timeout: float, alive: Any = None) -> bool:
        """Every robot's odometry seen and every adapter commanding motion (its student acts)."""
        def ready() -> bool:
            if alive is not None:
                alive()
            return len(self.odom) == len(self.robots) and all(
                sum(self.moving(m) for _, m in self.cmds[r][-50:]) >= 3 for r in self.robots)
        return self.spin(timeout, ready)

    def episode(self, start: Start, steps: int = 25, period: float = 0.1) -> dict[str, Any]:
        """Teleport to ``start``, then score ``steps`` samples one ``period`` apart: team return (mean over agents
        of the summed reward), landmarks covered at the last step, collisions summed over the steps."""
        self.landmarks_pub.publish(PoseArray(poses=[_pose(*p) for p in start.landmarks]))
        self._teleport = {r: np.asarray(p, dtype=float) for r, p in zip(self.robots, start.positions, strict=True)}
        for r, p, yaw in zip(self.robots, start.positions, start.yaws, strict=True):
            msg = PoseWithCovarianceStamped()
            msg.pose.pose = _pose(p[0], p[1], float(yaw))
            self.reset_pubs[r].publish(msg)
        # Scoring starts once every robot's odometry has shown the teleport (one message within 5 cm of the start:
        # the robots move again at once, so on a busy machine the latest message may already be past it), as an MPE
        # episode starts.
        if not self.spin(30.0, lambda: not self._teleport):
            raise RuntimeError(f"robots {sorted(self._teleport)} did not report the teleport within 30 s")
        returns = np.zeros(len(self.robots))
        collisions = 0.0
        metrics: dict[str, float] = {}
        next_t = time.monotonic()
        for _ in range(steps):
            next_t += period
            self.spin(max(0.0, next_t - time.monotonic()))
            positions = np.array([self.odom[r][0] for r in self.robots])
            rewards, metrics = self.scorer.step(positions, start.landmarks)
            returns += rewards
            collisions += metrics["collisions"]
        return {"seed": start.seed, "team_return": float(returns.mean()),
                "landmarks_covered": metrics["landmarks_covered"], "collisions": collisions}

    def over_limits(self, limits: dict[str, Any]) -> list[str]:
        """Every recorded (stamped) command above a velocity limit, or above an acceleration limit relative to the
        robot's previous recorded command: ``|Δv| <= a·Δt`` with Δt the difference of the stamps (+ 1 ms). The
        adapter allows ``a·min(dt, period)`` per published command, so this holds between any two of them, also
        when the observer missed some in between (a busy reader's keep-last queue drops; measured: gaps of up to
        0.25 s in a 50 Hz stream on the loaded machine). Exact zeros are stops, sent at once by design. Limits
        absent or 0 are none."""
        lim = {k: float(limits.get(k) or math.inf) for k in
               ("max_linear", "max_angular", "max_linear_accel", "max_angular_accel")}
        bad = []
        for robot, cmds in self.cmds.items():
            prev = None
            for _, msg in cmds:
                t = msg.twist
                stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
                lin = math.hypot(t.linear.x, t.linear.y)
                if lin > lim["max_linear"] or abs(t.angular.z) > lim["max_angular"]:
                    bad.append(f"{robot}: {t.linear.x}, {t.linear.y}, {t.angular.z} above the velocity limits")
                if prev is not None and (lin or t.angular.z):
                    dt = stamp - prev[0] + 1e-3
                    if (math.hypot(t.linear.x - prev[1], t.linear.y - prev[2]) > lim["max_linear_accel"] * dt + 1e-9
                            or abs(t.angular.z - prev[3]) > lim["max_angular_accel"] * dt + 1e-9):
                        bad.append(f"{robot}: {prev} -> {stamp}, {t.linear.x}, {t.linear.y}, {t.angular.z} above "
                                   "the acceleration limits")
                prev = (stamp, t.linear.x, t.linear.y, t.angular.z)
        return bad
