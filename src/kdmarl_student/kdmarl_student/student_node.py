"""The student node: one managed (lifecycle) ROS 2 node per robot hosting one agent's ``StudentPolicy``.

Life cycle (what deployed ROS robots and lifecycle managers expect):

- *configure* loads and verifies the bundle entry (manifest schema, sha256, optional ed25519 signature,
  ONNX shapes, one dummy inference). If that fails the node stays *unconfigured*, reports ERROR on
  ``/diagnostics`` with the reason, and never acts: no silent fallback to anything.
- *activate* starts answering observations; *deactivate* stops; *cleanup* drops the policy.
- ``autostart`` (default true) drives configure + activate at start-up, since plain ``ros2 run`` and the
  ``kdmarl-swarm`` runner have no lifecycle manager; set it false under nav2's lifecycle manager or a
  launch-file ``LifecycleNode`` with its own transitions.

Topics (relative, so a namespace per robot gives ``/<robot>/observation`` etc.; DESIGN.md section 3):

=================  ===============================  =====================================================
``observation``    kdmarl_msgs/AgentObservation in  sensor-data QoS (best effort, keep last 5): a late
                                                    observation is worthless, never queue behind it
``action``         kdmarl_msgs/AgentAction out      reliable, keep last 10: every decision must arrive
``resource_usage`` kdmarl_msgs/ResourceUsage out    reliable, keep last 10, ~1 Hz (steady clock)
``/diagnostics``   diagnostic_msgs/DiagnosticArray  reliable, keep last 10, ~1 Hz (steady clock), in
                                                    every lifecycle state
=================  ===============================  =====================================================

Bad input never kills the node, and is never acted on. Every refusal is counted (per reason, in
``/diagnostics``) and logged with a throttled warning:

- an observation of the wrong length, with NaN/Inf, addressed to another agent or to no agent at all gets
  the safe action (``invalid_observations``, reasons ``shape``, ``non_finite``, ``agent``);
- an ``action_mask`` (the step's available actions, SMAX) is passed to the policy, which then picks among the
  available actions only; a mask whose length is not the agent's action count gets the safe action with a
  warning naming the topic and the expected length (reason ``mask``), and an all-false mask too (reason
  ``invalid``). An empty mask means every action is available (MPE);
- a policy output with NaN/Inf logits (a broken graph) gets the safe action (``non_finite_outputs``);
- in realtime mode, a stamp older than ``observation_timeout_s`` or more than ``max_clock_skew_s`` in the
  future (1970, 2100, a wrong clock) gets the safe action (``stale_observations`` / reason ``stamp``); in
  lockstep the bridge's step counter is the clock, so stamps are only reported;
- the same step again (a republish) is answered with the action already decided for it, without a second
  inference (``duplicate_observations``); an older step of the current episode is dropped (reason
  ``out_of_order``). A new episode counter, or a step counter that restarts with a newer stamp (a restarted
  simulator or adapter), starts a new sequence and is logged;
- in realtime mode a watchdog publishes the safe action whenever no observation arrived within
  ``observation_timeout_s``.

Students with memory (manifest ``memory``: history features or a recurrent state) keep their state in the
policy, which only an accepted decision advances: a refused, stale, out-of-order or misaddressed observation
leaves it alone, a republish gets the cached answer. The node resets it (one INFO line each, e.g.
``agent_1: memory reset (recurrent, 32 values): new episode 4``; ``memory_resets`` in /diagnostics), for the
events the manifest's ``memory.reset_on`` lists (every one by default): a new episode counter
(``episode_start``), a step counter that goes back and starts a new sequence (``step_backwards``), lifecycle
activate (``activate``), and in realtime mode the first observation after the watchdog found the input stale
(``stale``). A stateless student logs nothing of this.

A second node publishing this agent's ``action`` topic (two students for one agent) turns the node to
ERROR and it stops acting until the other one is gone: two deciders corrupt every episode silently.
Health and resource timers run on the steady clock: they measure the machine, and sim time may stop or
jump back on reset. It needs only its own observation topic: there is no central node on the control path.
Stopping (SIGINT, SIGTERM, the parent exiting) follows :mod:`kdmarl_student.lifetime`.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_msgs.msg import Header

from kdmarl_msgs.msg import AgentAction, AgentObservation, ResourceUsage
from kdmarl_student.errors import PolicyOutputError
from kdmarl_student.ros_support import (
    ACTION_QOS,
    OBSERVATION_QOS,
    REPORT_QOS,
    RateMeter,
    descriptor,
    diagnostic_status,
    init_ros,
    publisher_names,
    spin_node,
    steady_clock,
)
from kdmarl_student.scenarios import MODES

if TYPE_CHECKING:  # the runtime is imported when the node configures (a broken runtime is a configure ERROR)
    from kdmarl_student.policy import StudentPolicy

# How far back a step counter may jump within one episode and still be a late (reordered) message rather
# than a restarted source, when stamps cannot tell (unstamped observations).
REORDER_WINDOW = 10


def load_policy(bundle: str, agent: str, *, num_threads: int, public_key: str, require_signature: bool,
                providers: str) -> StudentPolicy:
    """Load and verify one agent of a bundle with the on-board runtime (raises BundleError and friends).

    A public key alone already makes the signature mandatory (the runtime's rule); ``require_signature``
    without a key is a configuration error the runtime reports.
    """
    # Imported here so that a broken or missing runtime is a configure ERROR, not a crash at import.
    from kdmarl_student.policy import StudentPolicy  # noqa: PLC0415

    provider_list: str | list[str] = "auto" if providers == "auto" else [p for p in providers.split(",") if p]
    return StudentPolicy(
        bundle, agent, public_key=public_key or None, require_signature=True if require_signature else None,
        intra_op_num_threads=num_threads, providers=provider_list,
    )


class StudentNode(LifecycleNode):
    """One agent's decision maker: observation in, action out, health and resources reported."""

    def __init__(self, node_name: str = "student", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        self.add_on_set_parameters_callback(self._validate_parameters)
        self._steady = steady_clock()
        self._policy: StudentPolicy | None = None
        self._error = ""  # why the bundle cannot be used; non-empty = ERROR
        self._active = False
        self._agent = self._resolve_agent()
        self._safe_action = 0
        self._action_pub = None
        self._usage_pub = None
        self._obs_sub = None
        self._watchdog = None
        self._reset_counters()
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", REPORT_QOS)
        period = float(self.get_parameter("report_period_s").value)
        self._report_timer = self.create_timer(period, self._report, clock=self._steady)

    # ---- parameters -------------------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        self.declare_parameter("bundle", "", descriptor(
            "Bundle directory (manifest.json + agent_*.onnx). Fixed for the node's life: a different model "
            "is a different node.", read_only=True))
        self.declare_parameter("agent", "", descriptor(
            "Bundle agent this node runs; empty = the last component of the node's namespace.", read_only=True))
        self.declare_parameter("mode", "lockstep", descriptor(
            "lockstep: answer every observation (evaluation). realtime: also publish the safe action when no "
            "observation arrived within observation_timeout_s, and refuse stale or future stamps. Takes effect "
            "at the next activate.", additional_constraints="lockstep | realtime"))
        self.declare_parameter("control_rate_hz", 10.0, descriptor(
            "Rate of the realtime watchdog that checks for stale observations.", float_range=(0.1, 1000.0)))
        self.declare_parameter("observation_timeout_s", 0.5, descriptor(
            "Age (steady clock) after which the last observation is stale in realtime mode.",
            float_range=(0.001, 60.0)))
        self.declare_parameter("safe_action", -1, descriptor(
            "Action for invalid or stale observations; -1 = the manifest's safe action (MPE: 0, no-op).",
            int_range=(-1, 1024)))
        self.declare_parameter("num_threads", 1, descriptor(
            "ONNX Runtime intra-op threads; one per node, since every robot process has its own.",
            read_only=True, int_range=(1, 64)))
        self.declare_parameter("public_key", "", descriptor(
            "Path of an ed25519 public key (PEM); with require_signature, unsigned or badly signed bundles "
            "are refused.", read_only=True))
        self.declare_parameter("require_signature", False, descriptor(
            "Refuse bundles whose manifest signature does not verify with public_key.", read_only=True))
        self.declare_parameter("providers", "auto", descriptor(
            "ONNX Runtime execution providers: auto (TensorRT > CUDA > CPU, each proven by a dummy inference) "
            "or a comma-separated list.", read_only=True))
        self.declare_parameter("autostart", True, descriptor(
            "Configure and activate at start-up (no lifecycle manager needed).", read_only=True))
        self.declare_parameter("report_period_s", 1.0, descriptor(
            "Period of ResourceUsage and /diagnostics (steady clock).", read_only=True, float_range=(0.05, 60.0)))
        self.declare_parameter("warn_throttle_s", 5.0, descriptor(
            "Minimum interval between repeated warnings about bad or stale input.", float_range=(0.0, 3600.0)))
        self.declare_parameter("max_clock_skew_s", 0.5, descriptor(
            "Realtime: an observation stamped more than this far in the future (node clock) is refused.",
            float_range=(0.0, 3600.0)))

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            if p.name == "mode" and p.value not in MODES:
                return SetParametersResult(successful=False, reason=f"mode must be one of {MODES}")
        return SetParametersResult(successful=True)

    def _resolve_agent(self) -> str:
        agent = str(self.get_parameter("agent").value)
        if not agent:
            agent = self.get_namespace().rstrip("/").rsplit("/", 1)[-1]
        return agent

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _reset_counters(self) -> None:
        self._counts = {"actions": 0, "safe_actions": 0, "invalid_observations": 0, "stale_observations": 0,
                        "duplicate_observations": 0, "non_finite_outputs": 0, "inference_errors": 0,
                        "memory_resets": 0}
        self._counts_at_report = dict(self._counts)
        self._invalid_reasons: dict[str, int] = {}
        self._last_obs_time: float | None = None  # steady seconds of the last accepted observation
        self._last_obs: tuple[int, int, Any] = (0, 0, None)
        # (episode, step, stamp ns, action, safe) of the last observation answered: orders the next one and
        # answers its republish without a second inference.
        self._last_decision: tuple[int, int, int, int, bool] | None = None
        self._obs_rate = RateMeter()
        self._obs_delay_ms: float | None = None
        self._duplicate_publishers = ""  # non-empty: another node publishes our action topic
        self._warned: dict[str, tuple[float | None, int]] = {}  # kind -> (steady time logged, held back since)
        self._input_went_stale = False  # realtime watchdog fired since the last accepted observation

    # ---- lifecycle ---------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        bundle = str(self._param("bundle"))
        try:
            if not bundle:
                raise ValueError("parameter 'bundle' is empty: set it to a bundle directory")
            if not self._agent:
                raise ValueError("parameter 'agent' is empty and the node has no namespace to take it from")
            self._policy = load_policy(bundle, self._agent, num_threads=int(self._param("num_threads")),
                                       public_key=str(self._param("public_key")),
                                       require_signature=bool(self._param("require_signature")),
                                       providers=str(self._param("providers")))
        except Exception as err:  # every failure to load is reported, none is fatal to the process
            self._policy = None
            self._error = f"{type(err).__name__}: {err}"
            self.get_logger().error(f"bundle unusable, refusing to act: {self._error}")
            return TransitionCallbackReturn.FAILURE
        self._error = ""
        override = int(self._param("safe_action"))
        self._safe_action = override if override >= 0 else self._policy.safe_action
        self._action_pub = self.create_lifecycle_publisher(AgentAction, "action", ACTION_QOS)
        self._usage_pub = self.create_lifecycle_publisher(ResourceUsage, "resource_usage", REPORT_QOS)
        self._obs_sub = self.create_subscription(AgentObservation, "observation", self._on_observation,
                                                 OBSERVATION_QOS)
        self.get_logger().info(f"configured agent {self._agent!r} from {bundle}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._reset_counters()
        self._reset_memory("activate", "activated")
        if self._param("mode") == "realtime":
            self._watchdog = self.create_timer(1.0 / float(self._param("control_rate_hz")), self._check_stale,
                                               clock=self._steady)
        self._active = True
        self.get_logger().info(f"active ({self._param('mode')}), safe action {self._safe_action}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        if self._watchdog is not None:
            self.destroy_timer(self._watchdog)
            self._watchdog = None
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        if self._watchdog is not None:
            self.destroy_timer(self._watchdog)
            self._watchdog = None
        if self._obs_sub is not None:
            self.destroy_subscription(self._obs_sub)
        for pub in (self._action_pub, self._usage_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._obs_sub = self._action_pub = self._usage_pub = None
        self._policy = None

    # ---- the control path --------------------------------------------------------------------------
    def _warn(self, kind: str, text: str) -> None:
        """A warning of one kind at most once per ``warn_throttle_s`` (steady clock), with the number held back.

        Throttled here per kind rather than by rclpy: rclpy throttles per call site (so one kind would hide
        every other) and refuses a throttle duration that changes between calls, which made a
        ``ros2 param set warn_throttle_s`` crash the node at its next warning.
        """
        now = time.perf_counter()
        last, held = self._warned.get(kind, (None, 0))
        if last is not None and now - last < float(self._param("warn_throttle_s")):
            self._warned[kind] = (last, held + 1)
            return
        suffix = f" (+{held} more since the last such warning)" if held else ""
        self._warned[kind] = (now, 0)
        self.get_logger().warning(text + suffix)

    def _reset_memory(self, event: str, why: str) -> None:
        """Reset a stateful policy's memory for ``event`` (one of the manifest's ``memory.reset_on``), say so."""
        policy = self._policy
        if policy is None or not policy.stateful:
            return
        memory = policy.spec.memory or {}
        if event not in memory.get("reset_on", ()):
            return
        policy.reset()
        self._counts["memory_resets"] += 1
        self.get_logger().info(f"{self._agent}: memory reset ({policy.memory_kind}, {policy.state_dim} values): {why}")

    def _reset_for_new_sequence(self, episode: int, step: int) -> None:
        """An observation that starts a new sequence (``_sequence`` said "new"): reset the memory if it is a
        new episode, a step counter gone back, or the first input after a stale period."""
        last, stale = self._last_decision, self._input_went_stale
        self._input_went_stale = False
        if last is None:  # the first observation since activate, which reset already
            return
        if episode != last[0]:
            self._reset_memory("episode_start", f"new episode {episode}" if episode > last[0] else
                               f"episode counter went back from {last[0]} to {episode}")
        elif step <= last[1]:
            self._reset_memory("step_backwards", f"step counter of episode {episode} went back from {last[1]} to "
                               f"{step}")
        elif stale:
            self._reset_memory("stale", f"input resumed after a stale period (episode {episode}, step {step})")

    def _sequence(self, episode: int, step: int, stamp_ns: int) -> str:
        """Where an observation stands against the last one answered: new | duplicate | out_of_order.

        A different episode counter (either way: a simulator restarts at 0) or a step counter that goes
        back with a newer stamp, or further back than :data:`REORDER_WINDOW` steps, is a new sequence.
        """
        last = self._last_decision
        if last is None or episode != last[0] or step > last[1]:
            if last is not None and episode < last[0]:
                self.get_logger().info(f"episode counter went back from {last[0]} to {episode}: new sequence "
                                       "(simulator restarted?)")
            return "new"
        if step == last[1] and stamp_ns == last[2]:
            return "duplicate"
        if stamp_ns > last[2] or last[1] - step > REORDER_WINDOW:
            self.get_logger().info(f"step counter of episode {episode} went back from {last[1]} to {step} with a "
                                   "newer stamp: new sequence (source restarted?)")
            return "new"
        return "out_of_order"

    def _stamp_problem(self, stamp_ns: int, now_ns: int) -> tuple[str, str] | None:
        """Realtime only: (counter, detail) when the stamp is too old or in the future on this node's clock."""
        if self._param("mode") != "realtime":
            return None
        if now_ns <= 0:  # use_sim_time before the first /clock: nothing to compare with
            return None
        age_s = (now_ns - stamp_ns) / 1e9
        if age_s > float(self._param("observation_timeout_s")):
            return "stale", f"observation stamped {age_s:.3g} s ago (observation_timeout_s)"
        if -age_s > float(self._param("max_clock_skew_s")):
            return "stamp", f"observation stamped {-age_s:.3g} s in the future (max_clock_skew_s)"
        return None

    def _on_observation(self, msg: AgentObservation) -> None:
        if not self._active or self._policy is None or self._duplicate_publishers:
            return
        if self._admit(msg):
            self._decide(msg)

    def _admit(self, msg: AgentObservation) -> bool:
        """Address, order and stamp checks; False when the observation was answered or dropped here."""
        now = time.perf_counter()
        stamp, episode, step = msg.header.stamp, int(msg.episode), int(msg.step)
        stamp_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        if msg.agent != self._agent:  # not ours: answered, but never the decision of our (episode, step)
            self._answer_safe(msg, "agent", f"observation addressed to {msg.agent!r}, this node runs "
                              f"{self._agent!r}" if msg.agent else "observation without an agent name",
                              record=False)
            return False
        order = self._sequence(episode, step, stamp_ns)
        if order == "out_of_order":
            self._count_invalid("out_of_order")
            self._warn("out_of_order", f"dropped observation: step {step} of episode {episode} arrived after step "
                       f"{self._last_decision[1] if self._last_decision else '?'}")
            return False
        if order == "duplicate":  # a republish: the decision already taken for this step, no new inference
            assert self._last_decision is not None
            self._counts["duplicate_observations"] += 1
            _, _, _, action, safe = self._last_decision
            self._publish(episode, step, stamp, action, safe=safe, count=False)
            return False
        self._reset_for_new_sequence(episode, step)
        self._last_obs_time = now
        self._last_obs = (episode, step, stamp)
        self._obs_rate.tick(now)
        now_ns = self.get_clock().now().nanoseconds  # node clock (sim time under use_sim_time), read once
        self._obs_delay_ms = (now_ns - stamp_ns) / 1e6 if stamp_ns > 0 else None
        problem = self._stamp_problem(stamp_ns, now_ns)
        if problem is None:
            return True
        counter, detail = problem
        if counter == "stale":
            self._counts["stale_observations"] += 1
            self._warn("stale", f"stale observation, safe action: {detail}")
            self._publish_safe(msg)
        else:
            self._answer_safe(msg, counter, detail)
        return False

    def _decide(self, msg: AgentObservation) -> None:
        """Run the policy on an admitted observation; every failure is answered with the safe action."""
        observation = np.frombuffer(msg.data, dtype=np.float32) if len(msg.data) else np.zeros(0, np.float32)
        mask = None
        if len(msg.action_mask):  # the step's available actions (SMAX); empty = every action
            n_actions = self._policy.spec.n_actions
            if len(msg.action_mask) != n_actions:
                topic = self._obs_sub.topic_name if self._obs_sub is not None else "observation"
                self._count_invalid("mask")  # its own warning kind: a wiring fault, not a bad reading
                self._warn("mask", f"refused action mask on {topic}, safe action: {len(msg.action_mask)} entries, "
                           f"expected {n_actions} (one per action of {self._agent}) or none (every action)")
                self._publish_safe(msg)
                return
            mask = np.asarray(msg.action_mask, dtype=bool)
        start = time.perf_counter()
        try:
            action = int(self._policy.act(observation, mask=mask))
        except ValueError as err:  # ObservationError: wrong length, NaN/Inf, not numeric
            self._answer_safe(msg, getattr(err, "reason", "invalid"), str(err))
            return
        except PolicyOutputError as err:  # NaN/Inf logits: the model is broken, never act on argmax(NaN)
            self._counts["non_finite_outputs"] += 1
            self._warn("non_finite_output", f"policy output not finite, safe action: {err}")
            self._publish_safe(msg)
            return
        except Exception as err:  # an inference failure must not kill a robot's process either
            self._counts["inference_errors"] += 1
            self._warn("inference_error", f"inference failed, safe action: {err}")
            self._publish_safe(msg)
            return
        inference_ms = (time.perf_counter() - start) * 1e3
        self._publish(int(msg.episode), int(msg.step), msg.header.stamp, action, safe=False,
                      inference_ms=inference_ms)

    def _count_invalid(self, reason: str) -> None:
        self._counts["invalid_observations"] += 1
        self._invalid_reasons[reason] = self._invalid_reasons.get(reason, 0) + 1

    def _answer_safe(self, msg: AgentObservation, reason: str, detail: str, *, record: bool = True) -> None:
        """An invalid observation: counted under ``reason``, a throttled warning, the safe action."""
        self._count_invalid(reason)
        self._warn("invalid", f"invalid observation, safe action: {detail}")
        self._publish_safe(msg, record=record)

    def _publish_safe(self, msg: AgentObservation, *, record: bool = True) -> None:
        self._publish(int(msg.episode), int(msg.step), msg.header.stamp, self._safe_action, safe=True,
                      record=record)

    def _check_stale(self) -> None:
        """Realtime watchdog: no fresh observation -> the safe action (the robot stops)."""
        if not self._active:
            return
        age = None if self._last_obs_time is None else time.perf_counter() - self._last_obs_time
        if age is not None and age <= float(self._param("observation_timeout_s")):
            return
        if self._duplicate_publishers:  # not acting at all: nothing to count
            return
        if self._last_obs_time is not None:
            self._input_went_stale = True  # a memory is out of date once the input resumes
        self._counts["stale_observations"] += 1
        episode, step, stamp = self._last_obs
        self._warn("stale", "no observation yet, safe action" if age is None else
                   f"observation stale ({age:.2f} s), safe action")
        self._publish(episode, step, stamp, self._safe_action, safe=True, record=False)

    def _publish(self, episode: int, step: int, stamp: Any, action: int, *, safe: bool,
                 inference_ms: float = 0.0, count: bool = True, record: bool = True) -> bool:
        """Publish one decision; False when nothing was sent (deactivated, or two deciders).

        ``count`` adds it to the action counters (a republish's answer is not a new action); ``record``
        makes it the decision of (episode, step) that orders the next observation and answers a republish.
        """
        if self._action_pub is None or self._duplicate_publishers:
            return False
        msg = AgentAction(agent=self._agent, episode=episode, step=step, action=action, is_safe_action=safe,
                          inference_ms=inference_ms)
        msg.header.stamp = self.get_clock().now().to_msg()
        if stamp is not None:
            msg.observation_stamp = stamp
        self._action_pub.publish(msg)
        if count:
            self._counts["actions"] += 1
            if safe:
                self._counts["safe_actions"] += 1
        if count and record:
            stamp_ns = 0 if stamp is None else stamp.sec * 1_000_000_000 + stamp.nanosec
            self._last_decision = (episode, step, stamp_ns, action, safe)
        return True

    # ---- reports -----------------------------------------------------------------------------------
    def _snapshot(self) -> Any | None:
        if self._policy is None:
            return None
        return self._policy.snapshot()

    def _check_duplicate_publishers(self) -> None:
        """ERROR and no actions while another node also publishes this agent's action topic."""
        if self._action_pub is None:
            self._duplicate_publishers = ""
            return
        topic = self._action_pub.topic_name
        nodes = publisher_names(self, topic)
        if len(nodes) > 1:
            text = f"{len(nodes)} nodes publish {topic} ({', '.join(nodes)}): two deciders for one agent"
            if text != self._duplicate_publishers:
                self.get_logger().error(f"refusing to act: {text}")
            self._duplicate_publishers = text
        elif self._duplicate_publishers:
            self.get_logger().info(f"{topic} has one publisher again: acting")
            self._duplicate_publishers = ""

    def _report(self) -> None:
        self._check_duplicate_publishers()
        snap = self._snapshot()
        if self._active and snap is not None and self._usage_pub is not None:
            self._usage_pub.publish(self._usage_message(snap))
        self._diag_pub.publish(DiagnosticArray(header=self._header(), status=[self._diagnostic(snap)]))
        self._counts_at_report = dict(self._counts)

    def _header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg())

    def _budget(self) -> dict[str, Any]:
        return dict(self._policy.spec.budget or {}) if self._policy is not None else {}

    def _usage_message(self, snap: Any) -> ResourceUsage:
        budget = self._budget()
        return ResourceUsage(
            header=self._header(), agent=self._agent, node_name=self.get_fully_qualified_name(),
            latency_p50_ms=float(snap.latency_p50_ms or 0.0), latency_p99_ms=float(snap.latency_p99_ms or 0.0),
            latency_max_ms=float(snap.latency_max_ms or 0.0), cpu_percent=float(snap.cpu_percent),
            rss_bytes=int(snap.rss_bytes), flops_per_decision=int(snap.flops_per_decision), params=int(snap.params),
            model_memory_bytes=int(snap.memory_bytes), budget_name=str(budget.get("profile") or ""),
            budget_flops=int(budget.get("max_flops") or 0), budget_params=int(budget.get("max_params") or 0),
            budget_memory_bytes=int(budget.get("max_memory_bytes") or 0),
            budget_latency_ms=float(budget.get("max_latency_ms") or 0.0),
            budget_met=snap.budget_met is not False,
            budget_exceeded=sorted(k for k, ok in (snap.budget_checks or {}).items() if not ok),
            non_finite_outputs=self._counts["non_finite_outputs"],
            actions=self._counts["actions"], safe_actions=self._counts["safe_actions"],
            invalid_observations=self._counts["invalid_observations"],
            stale_observations=self._counts["stale_observations"],
        )

    def _diagnostic(self, snap: Any | None) -> DiagnosticStatus:
        now = time.perf_counter()
        new = {k: self._counts[k] - self._counts_at_report.get(k, 0) for k in self._counts}
        values: dict[str, Any] = {
            "agent": self._agent, "bundle": self._param("bundle"), "mode": self._param("mode"),
            "state": "active" if self._active else ("configured" if self._policy is not None else "unconfigured"),
            **self._counts,
            "invalid_reasons": ",".join(f"{k}={v}" for k, v in sorted(self._invalid_reasons.items())),
            "observation_rate_hz": self._obs_rate.rate(now),
            "observation_age_ms": None if self._last_obs_time is None else (now - self._last_obs_time) * 1e3,
            "observation_delay_ms": self._obs_delay_ms,
        }
        if snap is not None:
            values.update({
                "inference_p50_ms": snap.latency_p50_ms, "inference_p99_ms": snap.latency_p99_ms,
                "cpu_percent": snap.cpu_percent, "rss_bytes": snap.rss_bytes,
                "flops_per_decision": snap.flops_per_decision, "budget_met": snap.budget_met,
                "provider": snap.provider,
            })
        if self._policy is not None:
            values["memory"] = self._policy.memory_kind
            values["memory_state_dim"] = self._policy.state_dim
        problems = []
        if self._error:
            level, message = DiagnosticStatus.ERROR, f"bundle unusable, not acting: {self._error}"
        elif self._duplicate_publishers:
            level, message = DiagnosticStatus.ERROR, f"not acting: {self._duplicate_publishers}"
        else:
            if not self._active:
                problems.append("not active")
            if new["invalid_observations"]:
                problems.append(f"{new['invalid_observations']} invalid observations")
            if new["stale_observations"]:
                problems.append(f"{new['stale_observations']} stale observations")
            if new["inference_errors"]:
                problems.append(f"{new['inference_errors']} inference errors")
            if new["non_finite_outputs"]:
                problems.append(f"{new['non_finite_outputs']} non-finite policy outputs")
            if snap is not None and snap.budget_met is False:
                over = sorted(k for k, ok in (snap.budget_checks or {}).items() if not ok)
                problems.append(f"over budget ({', '.join(over)})")
            level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
            message = "; ".join(problems) if problems else "ok"
        name = f"kdmarl_student: {self.get_fully_qualified_name()}"
        return diagnostic_status(level, name, message, self._agent, values)

    # ---- start-up ----------------------------------------------------------------------------------
    def autostart(self) -> None:
        """configure + activate, as a lifecycle manager would; a failed configure leaves ERROR reported."""
        if not bool(self._param("autostart")):
            return
        self.trigger_configure()
        if self._policy is not None:
            self.trigger_activate()


def main(argv: list[str] | None = None) -> None:
    init_ros(sys.argv if argv is None else argv)
    node = StudentNode()
    node.autostart()
    spin_node(node)


if __name__ == "__main__":
    main()

__all__ = ["StudentNode", "load_policy", "main"]
