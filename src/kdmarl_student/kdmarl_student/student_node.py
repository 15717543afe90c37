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
  ``mask``, "allows no action"). An empty mask means every action is available (MPE). A safe answer to a
  masked observation is the configured safe action if the mask allows it, else the manifest's always-available
  one; a mask that allows neither is counted as ``mask`` too;
- a policy output with NaN/Inf logits (a broken graph) gets the safe action (``non_finite_outputs``); logits or a
  state of the wrong shape (a width that depends on the data) are a model fault (``inference_errors``);
- a decision that takes longer than ``decision_deadline_ms`` (default: from the budget, see
  :func:`kdmarl_student.node_health.deadline_seconds`) is cancelled from the node's supervisor thread
  (``RunOptions.terminate``) and answered with the safe action (``deadline_overruns``); ``max_overruns`` in a
  row turn the node to ERROR and it stops acting until deactivated and activated again;
- in realtime mode, a stamp older than ``observation_timeout_s`` or more than ``max_clock_skew_s`` in the
  future (1970, 2100, a wrong clock) gets the safe action (``stale_observations`` / reason ``stamp``); in
  lockstep the bridge's step counter is the clock, so stamps are only reported;
- the same step again (a republish) is answered with the action already decided for it, without a second
  inference (``duplicate_observations``); an older step of the current episode is dropped (reason
  ``out_of_order``). A new episode counter, or a step counter that restarts with a newer stamp (a restarted
  simulator or adapter), starts a new sequence and is logged;
- while the fleet is stopped (the latched ``/kdmarl/stop``, :mod:`kdmarl_student.node_stop`) every admitted
  observation gets the safe action without inference (``fleet_stop_answers``; WARN with who and why) until a resume;
- in realtime mode a watchdog publishes the safe action whenever no observation arrived within
  ``observation_timeout_s``.

``safe_action`` (-1: the manifest's) is checked against the agent's actions when the node configures (a bad one
is a configure ERROR naming the range) and whenever it is set (refused with the range), and applies from the next
safe answer on. Every log line an incoming message can cause (warnings, and the INFO lines about restarted
sequences and memory resets) is throttled per kind (``warn_throttle_s``); the counters carry the totals.

Threads: the subscription, parameter and lifecycle services run in the executor (the main thread); the inference
deadline, the realtime watchdog, ``/diagnostics`` + ``ResourceUsage`` and stop signals run in the node's own
supervisor thread (:mod:`kdmarl_student.supervisor`), so none of them waits behind a decision, and Ctrl-C or
SIGTERM cancel a decision in flight. The ROS-free rules (ordering, resets, counters, throttling, the health
verdict) are in :mod:`kdmarl_student.sequencing` and :mod:`kdmarl_student.node_health`.

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
Health and resource reports run on the steady clock: they measure the machine, and sim time may stop or
jump back on reset. It needs only its own observation topic: there is no central node on the control path.
Stopping (SIGINT, SIGTERM, the parent exiting) follows :mod:`kdmarl_student.lifetime`.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter

from kdmarl_msgs.msg import AgentAction, AgentObservation, ResourceUsage
from kdmarl_student.errors import DecisionTimeoutError, PolicyOutputError
from kdmarl_student.lifetime import signal_wakeup
from kdmarl_student.node_params import declare_student_parameters
from kdmarl_student.node_release import ReleaseHandling
from kdmarl_student.node_stop import FleetStopHandling
from kdmarl_student.node_supervision import Supervision
from kdmarl_student.ros_support import (
    ACTION_QOS,
    OBSERVATION_QOS,
    REPORT_QOS,
    RateMeter,
    init_ros,
    spin_node,
)
from kdmarl_student.scenarios import MODES
from kdmarl_student.sequencing import Counters, Sequencer, Throttle, stamp_problem
from kdmarl_student.supervisor import Supervisor

if TYPE_CHECKING:  # the runtime is imported when the node configures (a broken runtime is a configure ERROR)
    from kdmarl_student.policy import StudentPolicy


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


def _stamp_ns(stamp: Any) -> int:
    return 0 if stamp is None else stamp.sec * 1_000_000_000 + stamp.nanosec


class StudentNode(ReleaseHandling, FleetStopHandling, Supervision, LifecycleNode):
    """One agent's decision maker: observation in, action out, health and resources reported."""

    def __init__(self, node_name: str = "student", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        declare_student_parameters(self)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self._policy: StudentPolicy | None = None
        self._error = ""  # why the bundle cannot be used; non-empty = ERROR
        self._active = False
        self._agent = self._resolve_agent()
        self._action_pub = self._usage_pub = self._obs_sub = None
        self._lock = threading.RLock()  # publishers and the policy, against the supervisor thread
        self._deciding_since: float | None = None  # steady start of the answer in progress (reports wait a moment)
        self._throttle = Throttle(lambda: float(self._param("warn_throttle_s")), time.perf_counter)
        self._reset_state()
        self._init_releases()
        self._subscribe_fleet_stop()  # before the observation subscription: a pending stop is taken first
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", REPORT_QOS)
        self._apply_nice(int(self._param("nice")))  # before the supervisor thread starts: it inherits the value
        self._supervisor = Supervisor(f"{self._agent or 'student'}-supervisor", wake_fd=signal_wakeup(),
                                      on_signal=self._on_signal, on_error=self._on_job_error)
        self._supervisor.every("deadline", self._deadline_tick, self._enforce_deadline)
        self._supervisor.every("watchdog", lambda: 1.0 / float(self._param("control_rate_hz")), self._check_stale)
        self._supervisor.every("report", lambda: float(self._param("report_period_s")), self._report)
        self._supervisor.start()

    # ---- parameters -------------------------------------------------------------------------------
    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            if p.name == "mode" and p.value not in MODES:
                return SetParametersResult(successful=False, reason=f"mode must be one of {MODES}")
            if p.name == "safe_action" and self._policy is not None:
                problem = self._safe_action_problem(int(p.value), self._policy)
                if problem:
                    return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    def _safe_action_problem(self, value: int, policy: StudentPolicy) -> str:
        n = policy.spec.n_actions
        if value == -1 or 0 <= value < n:
            return ""
        return (f"safe_action must be -1 (the manifest's, {policy.safe_action}) or an action of {self._agent} in "
                f"[0, {n - 1}] ({', '.join(policy.spec.action_meanings)}); got {value}")

    def _apply_nice(self, nice: int) -> None:
        if nice == 0:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)  # Linux: this thread; threads started later inherit it
        except (OSError, AttributeError) as err:
            self.get_logger().warning(f"parameter nice {nice} not applied ({err}); running at the default priority")

    def _resolve_agent(self) -> str:
        agent = str(self.get_parameter("agent").value)
        return agent or self.get_namespace().rstrip("/").rsplit("/", 1)[-1]

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _reset_state(self) -> None:
        self._counters = Counters()
        self._sequencer = Sequencer()
        self._last_obs_time: float | None = None  # steady seconds of the last accepted observation
        self._last_obs: tuple[int, int, Any] = (0, 0, None)
        self._obs_rate = RateMeter()
        self._obs_delay_ms: float | None = None
        self._duplicate_publishers = ""  # non-empty: another node publishes our action topic
        self._overruns_in_row = 0
        self._overrun_error = ""  # non-empty: repeated deadline overruns, not acting

    # ---- lifecycle ---------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        bundle = str(self._param("bundle"))
        releases = str(self._param("release_state_dir"))
        try:
            if not bundle and not releases:
                raise ValueError("parameter 'bundle' is empty: set it to a bundle directory (or release_state_dir)")
            if not self._agent:
                raise ValueError("parameter 'agent' is empty and the node has no namespace to take it from")

            def load(path: str) -> StudentPolicy:
                return load_policy(path, self._agent, num_threads=int(self._param("num_threads")),
                                   public_key=str(self._param("public_key")),
                                   require_signature=bool(self._param("require_signature")),
                                   providers=str(self._param("providers")))

            # With a release store (node_release) the slot runs <release_state_dir>/releases/current.
            policy = self._open_release_slot(self._agent, load) if releases else load(bundle)
            bundle = f"{releases}/releases/{self._release_number}" if releases else bundle
            problem = self._safe_action_problem(int(self._param("safe_action")), policy)
            if problem:
                raise ValueError(f"parameter {problem}")
        except Exception as err:  # every failure to load is reported, none is fatal to the process
            self._policy = None
            self._error = f"{type(err).__name__}: {err}"
            self.get_logger().error(f"bundle unusable, refusing to act: {self._error}")
            return TransitionCallbackReturn.FAILURE
        self._error = ""
        # Everything loaded so far (rclpy, numpy, onnxruntime, the policy) lives as long as the process: out of the
        # cyclic GC's reach, so a collection never walks it in the middle of a decision (issue 22, decision p99).
        gc.collect()
        gc.freeze()
        with self._lock:
            self._policy = policy
            self._action_pub = self.create_lifecycle_publisher(AgentAction, "action", ACTION_QOS)
            self._usage_pub = self.create_lifecycle_publisher(ResourceUsage, "resource_usage", REPORT_QOS)
        self._obs_sub = self.create_subscription(AgentObservation, "observation", self._on_observation,
                                                 OBSERVATION_QOS)
        self.get_logger().info(f"configured agent {self._agent!r} from {bundle}; decision deadline "
                               f"{self._deadline_s() * 1e3:.4g} ms")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._reset_state()
        self._reset_memory("activate", "activated")
        self._active = True
        self.get_logger().info(f"active ({self._param('mode')}), safe action {self._safe_action()}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        if self._obs_sub is not None:
            self.destroy_subscription(self._obs_sub)
        with self._lock:
            for pub in (self._action_pub, self._usage_pub):
                if pub is not None:
                    self.destroy_lifecycle_publisher(pub)
            self._obs_sub = self._action_pub = self._usage_pub = None
            self._policy = None
            self._slot = None

    def stop_supervisor(self) -> None:
        """End the supervisor thread (before the node is destroyed) and cancel a decision in flight."""
        policy = self._policy
        if policy is not None:
            policy.cancel()
        self._supervisor.stop()

    # ---- logging -----------------------------------------------------------------------------------
    def _log(self, kind: str, text: str, level: str = "warning") -> None:
        """A line a message caused: at most one per kind per ``warn_throttle_s``, with the number held back."""
        line = self._throttle.admit(kind, text)
        if line is None:
            return
        logger = self.get_logger()  # one call site per severity: rclpy refuses a severity change at one site
        if level == "info":
            logger.info(line)
        elif level == "error":
            logger.error(line)
        else:
            logger.warning(line)

    def _warn(self, kind: str, text: str) -> None:
        self._log(kind, text, "warning")

    def _reset_memory(self, event: str, why: str) -> None:
        """Reset a stateful policy's memory for ``event`` (one of the manifest's ``memory.reset_on``), say so."""
        policy = self._policy
        if policy is None or not policy.stateful or event not in (policy.spec.memory or {}).get("reset_on", ()):
            return
        policy.reset()
        self._counters.add("memory_resets")
        text = f"{self._agent}: memory reset ({policy.memory_kind}, {policy.state_dim} values): {why}"
        if event == "activate":  # a lifecycle transition, not a message: always said
            self.get_logger().info(text)
        else:
            self._log(f"memory_reset_{event}", text, "info")

    # ---- the control path --------------------------------------------------------------------------
    def _on_observation(self, msg: AgentObservation) -> None:
        if not self._active or self._policy is None or self._duplicate_publishers or self._overrun_error:
            return
        self._deciding_since = time.perf_counter()  # the supervisor holds a report back for a moment meanwhile
        try:
            if self._admit(msg):
                self._decide(msg)
        finally:
            self._deciding_since = None

    def _admit(self, msg: AgentObservation) -> bool:
        """Address, order and stamp checks; False when the observation was answered or dropped here."""
        now = time.perf_counter()
        stamp, episode, step = msg.header.stamp, int(msg.episode), int(msg.step)
        stamp_ns = _stamp_ns(stamp)
        if msg.agent != self._agent:  # not ours: answered, but never the decision of our (episode, step)
            self._answer_safe(msg, "agent", f"observation addressed to {msg.agent!r}, this node runs "
                              f"{self._agent!r}" if msg.agent else "observation without an agent name",
                              record=False)
            return False
        order, note = self._sequencer.classify(episode, step, stamp_ns)
        last = self._sequencer.last
        if order == "out_of_order":
            self._counters.invalid("out_of_order")
            self._warn("out_of_order", f"dropped observation: step {step} of episode {episode} arrived after step "
                       f"{last.step if last else '?'}")
            return False
        if order == "duplicate":  # a republish: the decision already taken for this step, no new inference
            assert last is not None
            self._counters.add("duplicate_observations")
            self._publish(episode, step, stamp, last.action, safe=last.safe, count=False)
            return False
        if note:
            self._counters.add("sequence_restarts")
            self._log("sequence_restart", note, "info")
        reset = self._sequencer.reset_event(episode, step)
        if reset is not None:
            self._reset_memory(*reset)
        self._last_obs_time = now
        self._last_obs = (episode, step, stamp)
        self._obs_rate.tick(now)
        now_ns = self.get_clock().now().nanoseconds  # node clock (sim time under use_sim_time), read once
        self._obs_delay_ms = (now_ns - stamp_ns) / 1e6 if stamp_ns > 0 else None
        if self._param("mode") != "realtime":  # lockstep: the bridge's step counter is the clock
            return True
        problem = stamp_problem(stamp_ns, now_ns, float(self._param("observation_timeout_s")),
                                float(self._param("max_clock_skew_s")))
        if problem is None:
            return True
        counter, detail = problem
        if counter == "stale":
            self._counters.add("stale_observations")
            self._warn("stale", f"stale observation, safe action: {detail}")
            self._publish_safe(msg)
        else:
            self._answer_safe(msg, counter, detail)
        return False

    def _read_mask(self, msg: AgentObservation) -> tuple[np.ndarray | None, bool]:
        """(the step's available actions or None for every action, False when the mask was refused and answered)."""
        if not len(msg.action_mask):  # empty = every action (MPE)
            return None, True
        assert self._policy is not None
        n_actions = self._policy.spec.n_actions
        topic = self._obs_sub.topic_name if self._obs_sub is not None else "observation"
        if len(msg.action_mask) != n_actions:
            detail = (f"{len(msg.action_mask)} entries, expected {n_actions} (one per action of {self._agent}) or "
                      "none (every action)")
        else:
            mask = np.asarray(msg.action_mask, dtype=bool)
            if mask.any():
                return mask, True
            detail = f"it allows no action (the safe action {self._policy.safe_action} is always available)"
        self._counters.invalid("mask")  # its own warning kind: a wiring fault, not a bad reading
        self._warn("mask", f"refused action mask on {topic}, safe action: {detail}")
        self._publish_safe(msg)
        return None, False

    def _decide(self, msg: AgentObservation) -> None:
        """Run the policy on an admitted observation; every failure is answered with the safe action."""
        policy = self._policy
        mask, ok = self._read_mask(msg)
        if policy is None or not ok or self._answered_stopped(msg, mask):  # /kdmarl/stop: node_stop
            return
        observation = np.frombuffer(msg.data, dtype=np.float32) if len(msg.data) else np.zeros(0, np.float32)
        start = time.perf_counter()
        try:
            action = self._act(policy, observation, msg, mask)  # through the release slot, if any (node_release)
        except ValueError as err:  # ObservationError: wrong length, NaN/Inf, not numeric
            self._answer_safe(msg, getattr(err, "reason", "invalid"), str(err), mask=mask)
            return
        except DecisionTimeoutError:
            self._overrun(msg, mask, time.perf_counter() - start)
            return
        except PolicyOutputError as err:  # NaN/Inf logits, a wrong shape: the model is broken, never act on it
            counter = "non_finite_outputs" if err.reason.startswith("non_finite") else "inference_errors"
            self._counters.add(counter)
            self._warn(counter, f"policy output unusable, safe action: {err}" if counter == "inference_errors" else
                       f"policy output not finite, safe action: {err}")
            self._publish_safe(msg, mask=mask)
            return
        except Exception as err:  # an inference failure must not kill a robot's process either
            self._counters.add("inference_errors")
            self._warn("inference_error", f"inference failed, safe action: {err}")
            self._publish_safe(msg, mask=mask)
            return
        self._overruns_in_row = 0
        if self._behind_release(int(msg.episode)):  # the team runs another release: never act on a mixed team
            self._counters.add("behind_release_answers")
            self._warn("behind_release", f"{self._agent} runs release {self._release_number}, the team release "
                       f"{self._announced.release} since episode {self._announced.cutover_episode}: safe action "
                       "until it is staged here")
            self._publish_safe(msg, mask=mask)
            return
        self._publish(int(msg.episode), int(msg.step), msg.header.stamp, action, safe=False,
                      inference_ms=(time.perf_counter() - start) * 1e3)

    def _overrun(self, msg: AgentObservation, mask: np.ndarray | None, seconds: float) -> None:
        """A decision cancelled at its deadline: safe action, counted; ERROR after ``max_overruns`` in a row."""
        self._counters.add("deadline_overruns")
        self._overruns_in_row += 1
        deadline_ms = self._deadline_s() * 1e3
        self._warn("deadline", f"decision cancelled after {seconds * 1e3:.1f} ms (deadline {deadline_ms:.4g} ms), "
                   "safe action")
        self._publish_safe(msg, mask=mask)
        limit = int(self._param("max_overruns"))
        if self._overruns_in_row >= limit:
            self._overrun_error = (f"{self._overruns_in_row} decisions in a row over the {deadline_ms:.4g} ms deadline "
                                   "(decision_deadline_ms): the model is too slow for this device; deactivate and "
                                   "activate to retry")
            self.get_logger().error(f"refusing to act: {self._overrun_error}")

    def _safe_action(self, mask: np.ndarray | None = None) -> int:
        """The configured safe action, or on a masked step the manifest's always-available one where the mask
        forbids the configured one (a mask that allows neither is counted as ``mask``)."""
        policy = self._policy
        configured = int(self._param("safe_action"))
        if policy is None:
            return max(configured, 0)
        configured = policy.safe_action if configured < 0 else configured
        if mask is None or mask[configured]:
            return configured
        if mask[policy.safe_action]:
            return policy.safe_action
        self._counters.invalid("mask")
        self._warn("mask_safe", f"the action mask forbids the safe action {configured} and the manifest's "
                   f"{policy.safe_action} (action.mask.always_available): the mask is inconsistent with the bundle")
        return configured

    def _answer_safe(self, msg: AgentObservation, reason: str, detail: str, *, record: bool = True,
                     mask: np.ndarray | None = None) -> None:
        """An invalid observation: counted under ``reason``, a throttled warning, the safe action."""
        self._counters.invalid(reason)
        self._warn("invalid", f"invalid observation, safe action: {detail}")
        self._publish_safe(msg, record=record, mask=mask)

    def _publish_safe(self, msg: AgentObservation, *, record: bool = True, mask: np.ndarray | None = None) -> None:
        self._publish(int(msg.episode), int(msg.step), msg.header.stamp, self._safe_action(mask), safe=True,
                      record=record)

    def _publish(self, episode: int, step: int, stamp: Any, action: int, *, safe: bool,
                 inference_ms: float = 0.0, count: bool = True, record: bool = True) -> bool:
        """Publish one decision; False when nothing was sent (deactivated, two deciders, repeated overruns).

        ``count`` adds it to the action counters (a republish's answer is not a new action); ``record``
        makes it the decision of (episode, step) that orders the next observation and answers a republish.
        """
        if self._duplicate_publishers or self._overrun_error:
            return False
        msg = AgentAction(agent=self._agent, episode=episode, step=step, action=action, is_safe_action=safe,
                          inference_ms=inference_ms, release=self._release_number)
        msg.header.stamp = self.get_clock().now().to_msg()
        if stamp is not None:
            msg.observation_stamp = stamp
        with self._lock:
            if self._action_pub is None:
                return False
            self._action_pub.publish(msg)
        if count:
            self._counters.add("actions")
            if safe:
                self._counters.add("safe_actions")
            if record:
                self._sequencer.record(episode, step, _stamp_ns(stamp), action, safe)
        return True

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
    spin_node(node, on_shutdown=node.stop_supervisor)


if __name__ == "__main__":
    main()

__all__ = ["StudentNode", "load_policy", "main"]
