"""A student node's health, without ROS: the values and the verdict of its ``/diagnostics`` status.

The node (:mod:`kdmarl_student.student_node`) wraps what :func:`health` returns into a
``diagnostic_msgs/DiagnosticStatus``; the rules of the verdict live here so they are read in one place:

- ERROR, not acting: the bundle is unusable, a second node publishes this agent's action topic, or repeated
  decisions overran the inference deadline;
- WARN: not active, or since the last report invalid or stale observations, inference errors, non-finite policy
  outputs or deadline overruns, or a measured latency over the budget (naming the field);
- OK otherwise.

Imports only the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels

NEWS = (("invalid_observations", "invalid observations"), ("stale_observations", "stale observations"),
        ("inference_errors", "inference errors"), ("non_finite_outputs", "non-finite policy outputs"),
        ("deadline_overruns", "decisions over the deadline (cancelled, safe action)"),
        ("behind_release_answers", "safe answers behind the team's release (not staged here yet)"))


@dataclass(frozen=True)
class NodeState:
    """Why a node is not acting (each "" when not the case) and whether it is active."""

    active: bool
    configured: bool
    bundle_error: str = ""
    second_decider: str = ""
    overruns: str = ""
    fleet_stop: str = ""  # who stopped the fleet and why, while stopped


def verdict(state: NodeState, new: dict[str, int], snapshot: Any | None) -> tuple[int, str]:
    """(level, message) of a status: see the module docstring. ``new`` is what each counter gained since the
    last report; ``snapshot`` the policy's :class:`~kdmarl_student.metering.ResourceSnapshot` (or None)."""
    if state.bundle_error:
        return ERROR, f"bundle unusable, not acting: {state.bundle_error}"
    if state.second_decider:
        return ERROR, f"not acting: {state.second_decider}"
    if state.overruns:
        return ERROR, f"not acting: {state.overruns}"
    problems = [] if state.active else ["not active"]
    problems += [f"fleet stopped ({state.fleet_stop}): safe action until a resume"] if state.fleet_stop else []
    problems += [f"{new[key]} {words}" for key, words in NEWS if new.get(key)]
    if snapshot is not None and snapshot.budget_met is False:
        over = sorted(k for k, ok in (snapshot.budget_checks or {}).items() if not ok)
        problems.append(f"over budget ({', '.join(over)})")
    return (WARN, "; ".join(problems)) if problems else (OK, "ok")


def state_name(state: NodeState) -> str:
    return "active" if state.active else ("configured" if state.configured else "unconfigured")


def snapshot_values(snapshot: Any | None) -> dict[str, Any]:
    """The policy's measured figures as /diagnostics values (empty before the bundle is loaded)."""
    if snapshot is None:
        return {}
    return {"inference_p50_ms": snapshot.latency_p50_ms, "inference_p99_ms": snapshot.latency_p99_ms,
            "cpu_percent": snapshot.cpu_percent, "rss_bytes": snapshot.rss_bytes,
            "flops_per_decision": snapshot.flops_per_decision, "budget_met": snapshot.budget_met,
            "provider": snapshot.provider}


def deadline_seconds(configured_ms: float, budget: dict[str, Any] | None) -> float:
    """The inference deadline: ``configured_ms`` when > 0, else derived from the budget: 50 x ``max_latency_ms``,
    at least 50 ms (a loaded machine's preemption must not read as an overrun), 100 ms without a latency budget."""
    if configured_ms > 0:
        return configured_ms / 1e3
    latency = (budget or {}).get("max_latency_ms")
    if not latency:
        return 0.1
    return max(50.0 * float(latency), 50.0) / 1e3


__all__ = ["ERROR", "NEWS", "OK", "WARN", "NodeState", "deadline_seconds", "snapshot_values", "state_name", "verdict"]
