"""Simulation bridge: steps the simulator of a bundle's scenario with actions that come over ROS.

The simulator is picked from the scenario's name (:mod:`kdmarl_bringup.simulators`): the real mpe2 env for
the MPE scenarios, one SMAX battle (``kdmarl_student.smax_battle.SmaxBattle``, jax + jaxmarl) for ``smax:<map>``.
Per agent it publishes ``/<ns>/observation`` (the full observation, float32, exactly what the offline
evaluation feeds the policy; on SMAX with the step's available actions in ``action_mask``, empty on MPE) and
listens on ``/<ns>/action``. It never imports torch or kdmarl_teacher: a simulation machine needs numpy,
rclpy and the simulator (mpe2, or jax + jaxmarl for SMAX) only.

Lockstep mode (evaluation): observation t goes out, the bridge waits until every agent answered step t or
``action_timeout_s`` passed (a missing agent does no-op and its miss is counted), then steps. Observations
use the sensor-data QoS (best effort), so the bridge re-sends step t to agents that have not answered every
``republish_period_s``; a student answers a repeat with the same deterministic action. The very first step
waits up to ``wait_for_students_s`` instead: that is the start-up handshake, so a slow machine does not
turn start-up into misses. Episode k is ``reset(seed=seed + k)``, the convention of the offline evaluation,
so with deterministic students the team returns (and on SMAX the wins) over ROS equal the offline ones
exactly. A missing agent's action is the manifest's safe action (MPE no-op 0, SMAX stop 4).

Realtime mode (robots' semantics): a fixed-rate loop on the steady clock; at each tick every agent's latest
action wins (no-op if it has none younger than ``action_timeout_s``); an agent whose answer to the previous
observation did not arrive before the tick has missed its deadline (counted).

The bridge trusts no publisher with the simulator: an action index outside the agent's action space is
ignored with a warning naming the topic (the agent has missed that step; ``invalid_actions``), and on SMAX an
action the step's mask forbids (a realtime answer to an earlier step, or a student that ignores the mask) is
replaced by the safe action (``unavailable_actions``), so the simulator only ever steps available actions.

Exactly one student per agent: two nodes publishing one agent's ``action`` topic would both answer and
corrupt every episode, so the bridge refuses to start (and stops) when it sees that, naming the nodes: on the
graph before it publishes step 0 of every episode, and by the writer of every action it receives (two writers
answering the same step of one agent), before it steps the simulator with either.
The episode loops live in :mod:`kdmarl_bringup.bridge_stepping`.
It exits 0 after its episodes or when stopped (SIGINT/SIGTERM), 1 on an error (bad parameters, a second
decider); ``results_file`` says how many episodes ran, which is how the launch file and the runner tell a
finished run from an interrupted one (``swarm_spec.bridge_problem``).

Each episode ends with a ``kdmarl_msgs/EpisodeSummary`` on ``/kdmarl/episode`` (reliable, transient local so
a late monitor still gets them), with each agent's release (``AgentAction.release`` of its policy actions) and
``mixed_releases``; the bridge counts mixed-release episodes (``mixed_release_episodes`` in ``/diagnostics``, ERROR,
and in ``results_file``): with fleet updates a team episode must never mix releases. With ``publish_clock`` the
bridge is the ``/clock`` source for nodes that run with ``use_sim_time`` (simulated time = steps x dt, monotonic
across episodes).
"""

from __future__ import annotations

import array
import json
import sys
import time
from typing import Any

import numpy as np
import rclpy
import rclpy.duration
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from kdmarl_student.atomic import atomic_file
from kdmarl_student.lifetime import bound_teardown, shutdown_requested
from kdmarl_student.manifest import load_manifest
from kdmarl_student.ros_support import (
    ACTION_QOS,
    CLOCK_QOS,
    EPISODE_QOS,
    OBSERVATION_QOS,
    REPORT_QOS,
    descriptor,
    diagnostic_status,
    init_ros,
    publisher_names,
)
from kdmarl_student.scenarios import MODES, scenario_spec
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Header

from kdmarl_bringup.bridge_stepping import Stepping, running
from kdmarl_bringup.simulators import make_simulator
from kdmarl_msgs.msg import AgentAction, AgentObservation, EpisodeSummary


class SecondDeciderError(RuntimeError):
    """Two nodes publish one agent's action topic: the bridge cannot know whose actions to step with."""


class SimBridge(Stepping, Node):
    """A simulator (mpe2 or SMAX) behind per-agent observation/action topics."""

    def __init__(self) -> None:
        super().__init__("sim_bridge")
        self.declare_parameter("bundle", "", descriptor(
            "Bundle directory; its manifest names the scenario, its parameters and the agents.", read_only=True))
        self.declare_parameter("scenario", "simple_spread", descriptor(
            "Scenario when no bundle is given (its defaults; smax:<map> for SMAX).", read_only=True))
        self.declare_parameter("mode", "lockstep", descriptor(
            "lockstep (evaluation: wait for every action) | realtime (fixed rate, latest action wins).",
            read_only=True, additional_constraints="lockstep | realtime"))
        self.declare_parameter("rate_hz", 10.0, descriptor("Realtime step rate.", read_only=True,
                                                           float_range=(0.1, 1000.0)))
        self.declare_parameter("action_timeout_s", 2.0, descriptor(
            "Lockstep: wait this long for an agent's action before it does no-op (a miss). Realtime: an "
            "action older than this is ignored.", float_range=(0.001, 600.0)))
        self.declare_parameter("republish_period_s", 0.25, descriptor(
            "Lockstep: re-send an unanswered observation this often (best-effort QoS may drop one).",
            float_range=(0.001, 60.0)))
        self.declare_parameter("wait_for_students_s", 120.0, descriptor(
            "Start-up handshake: how long the first step waits for every student (0 = forever).",
            read_only=True, float_range=(0.0, 3600.0)))
        self.declare_parameter("episodes", 0, descriptor("Episodes to run, then exit (0 = until shut down).",
                                                         read_only=True, int_range=(0, 1_000_000)))
        self.declare_parameter("seed", 1000, descriptor("Episode k resets the simulator with seed + k.", read_only=True,
                                                        int_range=(0, 2**31 - 1)))
        self.declare_parameter("agents", [""], descriptor(
            "Agents that have a student; others do no-op without being waited for (default: every agent).",
            read_only=True))
        self.declare_parameter("namespaces", [""], descriptor(
            "Namespace per entry of 'agents' (default: the agent's name).", read_only=True))
        self.declare_parameter("publish_clock", False, descriptor(
            "Publish /clock (simulated time) for nodes with use_sim_time.", read_only=True))
        self.declare_parameter("episode_subscribers", 0, descriptor(
            "Start only once this many /kdmarl/episode subscribers (monitor, test, runner) are matched, so a "
            "short run cannot finish before they hear it.", read_only=True, int_range=(0, 1000)))
        self.declare_parameter("results_file", "", descriptor(
            "Write every episode summary and the bridge's statistics as JSON here on exit.", read_only=True))

        bundle = str(self.get_parameter("bundle").value)
        safe: dict[str, int] = {}
        if bundle:
            manifest = load_manifest(bundle)
            self.spec = scenario_spec(manifest.scenario["name"], **dict(manifest.scenario.get("params", {})))
            safe = {a.name: a.safe_action for a in manifest.agents}
        else:
            self.spec = scenario_spec(str(self.get_parameter("scenario").value))
        self.all_agents = list(self.spec.agent_names)
        self.noop = {a: safe.get(a, int(self.spec.extra.get("safe_action", 0))) for a in self.all_agents}
        self.n_actions = dict(zip(self.all_agents, self.spec.n_actions, strict=True))
        agents = [a for a in self.get_parameter("agents").value if a] or list(self.all_agents)
        namespaces = [n for n in self.get_parameter("namespaces").value if n] or list(agents)
        unknown = sorted(set(agents) - set(self.all_agents))
        if unknown or len(namespaces) != len(agents):
            raise ValueError(f"parameter 'agents' {agents} must name scenario agents {self.all_agents} and "
                             f"'namespaces' must have one entry per agent, got {namespaces}")
        self.agents = agents
        self.mode = str(self.get_parameter("mode").value)
        if self.mode not in MODES:
            raise ValueError(f"parameter 'mode' must be one of {MODES}, got {self.mode!r}")
        self.sim = make_simulator(self.spec)  # mpe2, or SMAX for smax:<map> (kdmarl_bringup.simulators)
        self.dt = self.sim.dt

        self.obs_pubs = {a: self.create_publisher(AgentObservation, f"/{ns}/observation", OBSERVATION_QOS)
                         for a, ns in zip(agents, namespaces, strict=True)}
        self.topics = {a: f"/{ns}" for a, ns in zip(agents, namespaces, strict=True)}
        for agent, ns in zip(agents, namespaces, strict=True):  # (msg, info): info names the writer of each action
            self.create_subscription(AgentAction, f"/{ns}/action",
                                     lambda msg, info, a=agent: self._on_action(a, msg, info), ACTION_QOS)
        self.episode_pub = self.create_publisher(EpisodeSummary, "/kdmarl/episode", EPISODE_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", REPORT_QOS)
        self.clock_pub = (self.create_publisher(Clock, "/clock", CLOCK_QOS)
                          if self.get_parameter("publish_clock").value else None)
        self.executor_ = SingleThreadedExecutor()
        self.executor_.add_node(self)

        # Per-step bookkeeping, written by the action callback.
        self.episode = 0
        self.step_index = 0
        self.answers: dict[str, int] = {}
        self.masks: dict[str, np.ndarray] | None = None  # the current step's available actions (SMAX)
        self.latest: dict[str, tuple[int, int, int, float]] = {}  # agent -> (episode, step, action, steady t)
        self.sent_at: dict[tuple[int, int], float] = {}  # first publish time of recent steps (steady)
        self.timed: set[tuple[tuple[int, int], str]] = set()
        self.latencies_ms: list[float] = []
        self.summaries: list[dict[str, Any]] = []
        self.total_steps = 0
        self.total_misses = 0
        self.writers: dict[tuple[str, int, int], str] = {}  # (agent, episode, step) -> first writer (this episode)
        self.second_decider = ""  # non-empty: two writers answered one agent (the run stops before the next step)
        self.release_sets: dict[str, set[int]] = {}  # this episode's releases per agent (bridge_stepping)
        self.mixed_episodes = 0  # episodes whose policy actions came from more than one release (must stay 0)
        self.invalid_actions = 0  # messages whose action index is outside the agent's action space (ignored)
        self.unavailable_actions = 0  # actions the step's mask forbids (SMAX), replaced by the safe action
        self.started = time.perf_counter()
        self.stepping_time = 0.0  # lockstep: wall time of timed steps (observation out -> env stepped)
        self.timed_steps = 0
        self.last_diag = 0.0

    # ---- callbacks ---------------------------------------------------------------------------------
    def _on_action(self, agent: str, msg: AgentAction, info: Any = None) -> None:
        now = time.perf_counter()
        self._note_writer(agent, msg, info)
        if not 0 <= msg.action < self.n_actions[agent]:  # never let a rogue publisher step the simulator
            self.invalid_actions += 1
            self.get_logger().warning(
                f"{self.topics[agent]}/action: action {msg.action} is outside {agent}'s action space "
                f"[0, {self.n_actions[agent]}) of {self.spec.name}; ignored, so it counts as a missed action",
                throttle_duration_sec=5.0)
            return
        self.latest[agent] = (msg.episode, msg.step, int(msg.action), now)
        if msg.episode == self.episode and not msg.is_safe_action:  # a policy's action: which release decided it
            self.release_sets.setdefault(agent, set()).add(int(msg.release))
        key = (msg.episode, msg.step)
        sent = self.sent_at.get(key)
        if sent is not None and (key, agent) not in self.timed:  # late answers count too: honest percentiles
            self.timed.add((key, agent))
            self.latencies_ms.append((now - sent) * 1e3)
        if msg.episode == self.episode and msg.step == self.step_index and agent not in self.answers:
            self.answers[agent] = int(msg.action)

    # ---- helpers -----------------------------------------------------------------------------------
    def _sim_stamp(self) -> Time:
        ns = round(self.total_steps * self.dt * 1e9)
        return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    def _publish_observations(self, obs: dict[str, np.ndarray], agents: list[str]) -> None:
        stamp = self._sim_stamp()
        for agent in agents:
            msg = AgentObservation(agent=agent, episode=self.episode, step=self.step_index)
            msg.header = Header(stamp=stamp, frame_id="world")
            msg.data = array.array("f", np.asarray(obs[agent], dtype=np.float32).tobytes())
            if self.masks is not None:  # SMAX: the step's available actions (empty on MPE = every action)
                msg.action_mask = [bool(v) for v in self.masks[agent]]
            self.obs_pubs[agent].publish(msg)

    def _forget_old_steps(self, keep: int = 50) -> None:
        """Keep publish times of the last ``keep`` steps, so late answers are still timed, memory bounded."""
        while len(self.sent_at) > keep:
            oldest = next(iter(self.sent_at))
            del self.sent_at[oldest]
            self.timed = {k for k in self.timed if k[0] != oldest}

    def _spin_for(self, seconds: float) -> None:
        self.executor_.spin_once(timeout_sec=max(0.0, seconds))

    def _wait_for_discovery(self) -> None:
        """Block until every student's subscription and publisher are matched (or the handshake timeout)."""
        limit = float(self.get_parameter("wait_for_students_s").value)
        deadline = None if limit <= 0 else time.perf_counter() + limit
        while running():
            missing = [a for a in self.agents
                       if self.obs_pubs[a].get_subscription_count() < 1
                       or self.count_publishers(f"{self.topics[a]}/action") < 1]
            if self.episode_pub.get_subscription_count() < int(self.get_parameter("episode_subscribers").value):
                missing.append("/kdmarl/episode subscribers")
            if not missing:  # (run() checks for a second decider before every episode)
                return
            if deadline is not None and time.perf_counter() > deadline:
                self.get_logger().warning(f"students not found for {missing}; starting anyway (they will miss)")
                return
            self.get_logger().info(f"waiting for students of {missing}", throttle_duration_sec=5.0)
            self._spin_for(0.1)

    def _note_writer(self, agent: str, msg: AgentAction, info: Any) -> None:
        """Two writers answering the same step of one agent are two live deciders (a restarted student cannot answer
        a step its predecessor already answered: the bridge re-sends a step only to agents that have not): the run
        stops before the simulator takes that step. Independent of the graph, whose node names can lag discovery."""
        gid = info.get("publisher_gid") if isinstance(info, dict) else None
        if gid is None or self.second_decider:
            return
        writer = repr(gid.get("data", gid)) if isinstance(gid, dict) else repr(gid)
        first = self.writers.setdefault((agent, int(msg.episode), int(msg.step)), writer)
        if first != writer:
            topic = f"{self.topics[agent]}/action"
            nodes = publisher_names(self, topic)
            self.second_decider = (f"two writers answered step {msg.step} of episode {msg.episode} on {topic} "
                                   f"(publishers: {', '.join(nodes) or 'not yet named by discovery'}): one student "
                                   f"per agent, refusing to step {agent} with two deciders")

    def _raise_if_second_decider(self) -> None:
        if self.second_decider:
            raise SecondDeciderError(self.second_decider)

    def _check_single_deciders(self) -> None:
        """Raise :class:`SecondDeciderError` when any agent's action topic has more than one publisher."""
        for agent in self.agents:
            topic = f"{self.topics[agent]}/action"
            nodes = publisher_names(self, topic)
            if len(nodes) > 1:
                raise SecondDeciderError(f"{len(nodes)} nodes publish {topic} ({', '.join(nodes)}): one student "
                                         f"per agent, refusing to step {agent} with two deciders")

    def _publish_diagnostics(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last_diag < 1.0:
            return
        self.last_diag = now
        lat = np.asarray(self.latencies_ms[-10_000:]) if self.latencies_ms else None
        values = {
            "mode": self.mode, "scenario": self.spec.name, "episode": self.episode, "step": self.step_index,
            "steps": self.total_steps, "missed_actions": self.total_misses,
            "invalid_actions": self.invalid_actions, "unavailable_actions": self.unavailable_actions,
            "mixed_release_episodes": self.mixed_episodes,
            "steps_per_s": self.timed_steps / self.stepping_time if self.stepping_time > 0 else 0.0,
            "obs_to_action_p50_ms": None if lat is None else float(np.percentile(lat, 50)),
            "obs_to_action_p99_ms": None if lat is None else float(np.percentile(lat, 99)),
        }
        level = DiagnosticStatus.WARN if self.total_misses else DiagnosticStatus.OK
        message = f"{self.total_misses} missed actions" if self.total_misses else "ok"
        if self.mixed_episodes:
            level, message = DiagnosticStatus.ERROR, f"{self.mixed_episodes} episodes mixed releases; {message}"
        status = diagnostic_status(level, "kdmarl_bringup: /sim_bridge", message, self.spec.name, values)
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))

    def statistics(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(0)
        return {
            "mode": self.mode, "scenario": self.spec.name, "agents": self.all_agents, "steps": self.total_steps,
            "missed_actions": self.total_misses, "invalid_actions": self.invalid_actions,
            "unavailable_actions": self.unavailable_actions, "mixed_release_episodes": self.mixed_episodes,
            "wall_time_s": time.perf_counter() - self.started,
            "lockstep_steps_per_s": self.timed_steps / self.stepping_time if self.stepping_time > 0 else None,
            "obs_to_action_ms": {
                "count": int(lat.size),
                "p50": float(np.percentile(lat, 50)) if lat.size else None,
                "p99": float(np.percentile(lat, 99)) if lat.size else None,
                "max": float(lat.max()) if lat.size else None,
            },
            "episodes": self.summaries,
        }

    def write_results(self) -> None:
        path = str(self.get_parameter("results_file").value)
        if path:
            with atomic_file(path) as handle:
                handle.write(json.dumps(self.statistics(), indent=2).encode())


def main(argv: list[str] | None = None) -> int:
    init_ros(sys.argv if argv is None else argv)
    node, code = None, 0
    try:
        node = SimBridge()
        node.run()
        if not shutdown_requested():
            # Let reliable subscribers (monitor, runner) receive the last summaries before the process goes,
            # reporting meanwhile (a monitor marks a node silent for 3 s STALE, and this wait can take seconds).
            deadline = time.perf_counter() + 5.0
            while running() and time.perf_counter() < deadline:
                if node.episode_pub.wait_for_all_acked(rclpy.duration.Duration(seconds=0.2)):
                    break
                node._publish_diagnostics()
            end = time.perf_counter() + 0.5
            while running() and time.perf_counter() < end:
                node.executor_.spin_once(timeout_sec=0.05)
    except (ValueError, OSError, SecondDeciderError) as err:  # bad parameters/bundle, two deciders: exit 1
        (node.get_logger() if node is not None else rclpy.logging.get_logger("sim_bridge")).error(str(err))
        code = 1
    finally:
        if node is not None:
            node.write_results()
            bound_teardown()
            node.executor_.remove_node(node)
            node.destroy_node()
            node.executor_.shutdown()  # before the context (ros_support.spin_node says why)
        rclpy.try_shutdown(uninstall_handlers=False)  # True would reset our SIGINT handler to SIG_DFL
    return code


if __name__ == "__main__":
    sys.exit(main())
