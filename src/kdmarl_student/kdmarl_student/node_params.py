"""The student node's parameters: one table of name, default, description and limits (``ros2 param describe``
shows them). ``read_only`` ones are fixed for the node's life; the others take effect as described."""

from __future__ import annotations

from typing import Any

from kdmarl_student.ros_support import descriptor

# name -> (default, description, descriptor options)
STUDENT_PARAMETERS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    "bundle": ("", "Bundle directory (manifest.json + agent_*.onnx). Fixed for the node's life: a different model is "
               "a different node.", {"read_only": True}),
    "release_state_dir": ("", "Fleet updates (docs/fleet_updates.md): the robot's updater_node state_dir; the node "
                          "then runs <release_state_dir>/releases/current (not 'bundle') and hot-swaps to each "
                          "announced release at its cut-over episode. Empty: no updates.", {"read_only": True}),
    "release_wait_s": (60.0, "With release_state_dir: how long configure waits for the updater to stage a first "
                       "release (started together, the updater's first check takes a moment).",
                       {"read_only": True, "float_range": (0.0, 3600.0)}),
    "release_team": ("", "Team whose /kdmarl/release announcements this node follows; empty = the running bundle's "
                     "scenario name (kdmarl publish's default team).", {"read_only": True}),
    "agent": ("", "Bundle agent this node runs; empty = the last component of the node's namespace.",
              {"read_only": True}),
    "mode": ("lockstep", "lockstep: answer every observation (evaluation). realtime: also publish the safe action "
             "when no observation arrived within observation_timeout_s, and refuse stale or future stamps.",
             {"additional_constraints": "lockstep | realtime"}),
    "control_rate_hz": (10.0, "Rate of the realtime watchdog that checks for stale observations.",
                        {"float_range": (0.1, 1000.0)}),
    "observation_timeout_s": (0.5, "Age (steady clock) after which the last observation is stale in realtime mode.",
                              {"float_range": (0.001, 60.0)}),
    "safe_action": (-1, "Action for invalid or stale observations; -1 = the manifest's safe action (MPE: 0, no-op). "
                    "Checked against the agent's action count at configure and whenever set (refused with the "
                    "range); applies from the next safe answer. On a masked step (SMAX) the manifest's "
                    "always-available action replaces it where the mask forbids it.",
                    {"int_range": (-1, 1024), "additional_constraints": "-1 or an action index below n_actions"}),
    "decision_deadline_ms": (0.0, "A decision still running after this long is cancelled and answered with the safe "
                             "action; 0 = from the budget: 50 x max_latency_ms, at least 50 ms (100 ms without a "
                             "latency budget).", {"float_range": (0.0, 60_000.0)}),
    "max_overruns": (3, "Decisions over the deadline in a row after which the node reports ERROR and stops acting "
                     "(until deactivated and activated again).", {"int_range": (1, 1_000_000)}),
    "num_threads": (1, "ONNX Runtime intra-op threads; one per node, since every robot process has its own.",
                    {"read_only": True, "int_range": (1, 64)}),
    "public_key": ("", "Path of an ed25519 public key (PEM); with require_signature, unsigned or badly signed "
                   "bundles are refused.", {"read_only": True}),
    "require_signature": (False, "Refuse bundles whose manifest signature does not verify with public_key.",
                          {"read_only": True}),
    "providers": ("auto", "ONNX Runtime execution providers: auto (TensorRT > CUDA > CPU, each proven by a dummy "
                  "inference) or a comma-separated list.", {"read_only": True}),
    "autostart": (True, "Configure and activate at start-up (no lifecycle manager needed).", {"read_only": True}),
    "report_period_s": (1.0, "Period of ResourceUsage and /diagnostics (steady clock).",
                        {"read_only": True, "float_range": (0.05, 60.0)}),
    "warn_throttle_s": (5.0, "Minimum interval between repeated log lines of one kind caused by incoming messages "
                        "(warnings and INFO alike; the counters carry the totals).", {"float_range": (0.0, 3600.0)}),
    "nice": (0, "Scheduling niceness of the node's decision and supervisor threads, set at start (-20 highest .. 19; "
             "0 = leave it). A negative value needs CAP_SYS_NICE; if refused the node says so and goes on. On a "
             "busy robot computer it keeps other processes from preempting a decision (CFS: never starves them).",
             {"read_only": True, "int_range": (-20, 19)}),
    "max_clock_skew_s": (0.5, "Realtime: an observation stamped more than this far in the future (node clock) is "
                         "refused.", {"float_range": (0.0, 3600.0)}),
}


def declare_student_parameters(node: Any) -> None:
    """Declare every parameter of :data:`STUDENT_PARAMETERS` on ``node`` with its descriptor."""
    for name, (default, description, options) in STUDENT_PARAMETERS.items():
        node.declare_parameter(name, default, descriptor(description, **options))


__all__ = ["STUDENT_PARAMETERS", "declare_student_parameters"]
