"""The student node's supervision: what its own thread runs beside the decisions (issue 22).

:class:`Supervision` is a mixin of :class:`kdmarl_student.student_node.StudentNode`: the jobs the node registers with
its :class:`~kdmarl_student.supervisor.Supervisor` -- the inference deadline (cancel a decision that overran it), the
realtime watchdog (the safe action when the input went stale), the health and resource reports (``/diagnostics``
and ``ResourceUsage``, with the check for a second decider on the action topic) -- and the stop-signal hook. They
run in the supervisor thread, so none waits behind a decision; they touch the node's publishers under its lock and
defer a report while an observation is being answered.
"""

from __future__ import annotations

import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Header

from kdmarl_msgs.msg import ResourceUsage
from kdmarl_student.lifetime import note_signal
from kdmarl_student.node_health import WARN, NodeState, deadline_seconds, snapshot_values, state_name, verdict
from kdmarl_student.ros_support import diagnostic_status, publisher_names

REPORT_HOLD_S = 0.005  # a report waits at most this long for the decision in progress (normal ones take ~0.2 ms)


class Supervision:
    """The supervisor thread's jobs of a student node (a mixin; see the module docstring)."""

    def _deadline_s(self) -> float:
        policy = self._policy
        return deadline_seconds(float(self._param("decision_deadline_ms")), policy.spec.budget if policy else None)

    def _deadline_tick(self) -> float:
        """How often the supervisor looks for an overdue decision: a quarter of the deadline, within [5, 50] ms."""
        return min(max(self._deadline_s() / 4.0, 0.005), 0.05)

    def _enforce_deadline(self) -> None:
        policy = self._policy
        if policy is not None and policy.busy_since is not None:
            policy.cancel_overdue(self._deadline_s())

    def _on_signal(self, signum: int) -> None:
        """A stop signal seen by the supervisor thread: request the stop and cancel a decision in flight."""
        note_signal(signum)
        policy = self._policy
        if policy is not None:
            policy.cancel()

    def _on_job_error(self, name: str, err: BaseException) -> None:
        self._log(f"job_{name}", f"supervisor job {name} failed: {type(err).__name__}: {err}", "error")

    def _check_stale(self) -> None:
        """Realtime watchdog: no fresh observation -> the safe action (the robot stops)."""
        if not self._active or self._param("mode") != "realtime" or self._duplicate_publishers or self._overrun_error:
            return
        age = None if self._last_obs_time is None else time.perf_counter() - self._last_obs_time
        if age is not None and age <= float(self._param("observation_timeout_s")):
            return
        if self._last_obs_time is not None:
            self._sequencer.input_went_stale = True  # a memory is out of date once the input resumes
        self._counters.add("stale_observations")
        episode, step, stamp = self._last_obs
        self._warn("stale", "no observation yet, safe action" if age is None else
                   f"observation stale ({age:.2f} s), safe action")
        self._publish(episode, step, stamp, self._safe_action(), safe=True, record=False)

    def _check_duplicate_publishers(self) -> None:
        """ERROR and no actions while another node also publishes this agent's action topic."""
        pub = self._action_pub
        if pub is None:
            self._duplicate_publishers = ""
            return
        topic = pub.topic_name
        nodes = publisher_names(self, topic)
        if len(nodes) > 1:
            text = f"{len(nodes)} nodes publish {topic} ({', '.join(nodes)}): two deciders for one agent"
            if text != self._duplicate_publishers:
                self.get_logger().error(f"refusing to act: {text}")
            self._duplicate_publishers = text
        elif self._duplicate_publishers:
            self.get_logger().info(f"{topic} has one publisher again: acting")
            self._duplicate_publishers = ""

    def _report(self) -> float | None:
        since = self._deciding_since
        if since is not None and time.perf_counter() - since < REPORT_HOLD_S:
            return 0.002  # after the decision in progress: its answer must not wait for a report's Python work
        # (a decision running longer than REPORT_HOLD_S is slow or stuck: report now, that is when it matters)
        self._check_duplicate_publishers()
        policy = self._policy
        snap = policy.snapshot() if policy is not None else None
        usage = self._usage_message(snap) if self._active and snap is not None else None
        status = self._diagnostic(snap)
        with self._lock:  # the publishers may be released meanwhile (cleanup, shutdown)
            if usage is not None and self._usage_pub is not None:
                self._usage_pub.publish(usage)
            self._diag_pub.publish(DiagnosticArray(header=self._header(), status=[status]))
        return None

    def _header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg())

    def _usage_message(self, snap: Any) -> ResourceUsage:
        budget = dict(self._policy.spec.budget or {}) if self._policy is not None else {}
        counts = self._counters
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
            non_finite_outputs=counts["non_finite_outputs"], actions=counts["actions"],
            safe_actions=counts["safe_actions"], invalid_observations=counts["invalid_observations"],
            stale_observations=counts["stale_observations"],
        )

    def _diagnostic(self, snap: Any | None) -> Any:
        now = time.perf_counter()
        policy = self._policy
        state = NodeState(active=self._active, configured=policy is not None, bundle_error=self._error,
                          second_decider=self._duplicate_publishers, overruns=self._overrun_error,
                          fleet_stop=self.fleet_stop_text())
        values: dict[str, Any] = {
            "agent": self._agent, "bundle": self._param("bundle"), "mode": self._param("mode"),
            "state": state_name(state), **self._counters.counts, "invalid_reasons": self._counters.reasons_text(),
            "observation_rate_hz": self._obs_rate.rate(now),
            "observation_age_ms": None if self._last_obs_time is None else (now - self._last_obs_time) * 1e3,
            "observation_delay_ms": self._obs_delay_ms, "decision_deadline_ms": self._deadline_s() * 1e3,
            "safe_action": self._safe_action(), "fleet_stop": self.fleet_stop_text(), **snapshot_values(snap),
        }
        if policy is not None:
            values["memory"] = policy.memory_kind
            values["memory_state_dim"] = policy.state_dim
        release = self._release_tick()  # node_release: stage an announced release, pointer changes, its status
        values.update(release)
        level, message = verdict(state, self._counters.since_report(), snap)
        trouble = release.get("last_revert") or release.get("stage_error")
        if trouble and level < WARN:
            level, message = WARN, f"release {release.get('release')}: {trouble}"
        name = f"kdmarl_student: {self.get_fully_qualified_name()}"
        return diagnostic_status(bytes([level]), name, message, self._agent, values)


__all__ = ["REPORT_HOLD_S", "Supervision"]
