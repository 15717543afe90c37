"""The swarm over real DDS: student processes and the simulation bridge in lockstep.

Timing is never asserted (the machine is shared and slow); every wait is for an event with a generous
timeout, and each test runs in its own ROS domain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from conftest import Processes, make_bundle, read_json, run_lockstep, spin_until  # noqa: E402
from kdmarl_student.bundle_eval import evaluate_bundle  # noqa: E402
from kdmarl_student.ros_support import ACTION_QOS, EPISODE_QOS  # noqa: E402

from kdmarl_msgs.msg import AgentAction, EpisodeSummary  # noqa: E402

AGENTS = ("agent_0", "agent_1", "agent_2")


def _start_students(procs: Processes, bundle: Path, agents: tuple[str, ...] = AGENTS, **params: object) -> None:
    for agent in agents:
        procs.start(f"student_{agent}", "kdmarl_student.student_node",
                    params={"bundle": str(bundle), **params}, ros_args=["-r", f"__ns:=/{agent}"])


HISTORY = {"slices": ["self_vel", "landmarks", "other_agents"], "history": {"mode": "delta", "slices": ["self_pos"]}}
# Students with memory (issue 11): the node must reset them at each new episode counter exactly as
# evaluate_bundle resets them at each episode start. "recurrent" are random GRU students (one after a tanh
# trunk), "history" MLPs with delta features, "memory_probes" hand-written students whose actions show a
# missed or extra reset (kdmarl_student.testing), with history features on a third agent.
BUNDLES = {
    "mlp": {},
    "recurrent": {"recurrent": {"agent_0": 8, "agent_1": {"state_dim": 6, "trunk": [16]}, "agent_2": 4}},
    "history": {"sensing": {"agent_0": {"slices": "all", "history": {"mode": "previous"}}, "agent_1": HISTORY,
                            "agent_2": HISTORY}},
    "memory_probes": {"recurrent": {"agent_0": 4}, "sensing": {"agent_1": HISTORY}, "memory_probe": True},
}


@pytest.mark.parametrize("students", list(BUNDLES))
def test_ros_returns_equal_offline_returns(processes: Processes, ros_node, tmp_path: Path, students: str) -> None:
    """Deterministic students, same seeds: team and per-agent returns over ROS == evaluate_bundle, exactly,
    for stateless students and for students with memory (recurrent, history features)."""
    bundle = make_bundle(tmp_path / "bundle", seed=3, **BUNDLES[students])
    seeds = [1000, 1001, 1002]
    summaries, over_ros = run_lockstep(processes, ros_node, bundle, seeds, agents=AGENTS)
    offline = evaluate_bundle(bundle, seeds)
    assert over_ros["missed_actions"] == 0
    assert [e["seed"] for e in over_ros["episodes"]] == seeds
    assert [s.seed for s in summaries] == seeds
    np.testing.assert_array_equal(np.array([e["agent_returns"] for e in over_ros["episodes"]]), offline.agent_returns)
    np.testing.assert_array_equal(np.array([list(s.agent_returns) for s in summaries]), offline.agent_returns)
    assert [s.team_return for s in summaries] == offline.returns.tolist()
    for name, values in offline.metrics.items():
        assert [e["metrics"][name] for e in over_ros["episodes"]] == values.tolist()
    assert all(list(s.missed_actions) == [0, 0, 0] for s in summaries)


def test_killed_student_costs_only_its_own_actions(processes: Processes, ros_node, tmp_path: Path) -> None:
    """Kill one student mid-run: the others keep acting, the bridge counts that agent's misses (no-op)."""
    bundle = make_bundle(tmp_path / "bundle", seed=4)
    actions: dict[str, int] = dict.fromkeys(AGENTS, 0)
    for agent in AGENTS:
        ros_node.create_subscription(AgentAction, f"/{agent}/action",
                                     lambda m, a=agent: actions.__setitem__(a, actions[a] + 1), ACTION_QOS)
    summaries: list[EpisodeSummary] = []
    ros_node.create_subscription(EpisodeSummary, "/kdmarl/episode", summaries.append, EPISODE_QOS)
    _start_students(processes, bundle)
    processes.start("bridge", "kdmarl_bringup.sim_bridge", params={
        "bundle": str(bundle), "episodes": 0, "action_timeout_s": 0.3, "republish_period_s": 0.1,
        "episode_subscribers": 1})
    assert spin_until(ros_node, lambda: min(actions.values()) >= 10, 180.0, processes,
                      alive=("bridge",)), processes.logs()
    processes.kill("student_agent_0")
    after_kill = dict(actions)
    # Wait for an episode that ran entirely without agent_0.
    assert spin_until(ros_node, lambda: any(s.missed_actions[0] == s.steps for s in summaries), 180.0,
                      processes, alive=("bridge", "student_agent_1", "student_agent_2")), processes.logs()
    full = next(s for s in summaries if s.missed_actions[0] == s.steps)
    assert list(full.missed_actions[1:]) == [0, 0]
    assert actions["agent_1"] > after_kill["agent_1"] + 20 and actions["agent_2"] > after_kill["agent_2"] + 20
    assert np.isfinite(full.team_return)


def test_a_second_decider_is_refused_before_it_steps_the_simulator(processes: Processes, ros_node,
                                                                   tmp_path: Path) -> None:
    """Issue 22: a rogue that starts answering agent_0's observations after the bridge's start-of-episode check (the
    graph looked fine) used to drive whole episodes next to the student. Now the first step both answer is refused:
    the bridge exits 1 before stepping it, so episode 0 never completes."""
    from kdmarl_student.ros_support import OBSERVATION_QOS

    from kdmarl_msgs.msg import AgentObservation

    bundle = make_bundle(tmp_path / "bundle", seed=5)
    rogue: dict[str, object] = {}

    def answer(obs: AgentObservation) -> None:  # the rogue appears only once the episode runs
        if "pub" not in rogue:
            rogue["pub"] = ros_node.create_publisher(AgentAction, "/agent_0/action", ACTION_QOS)
        rogue["pub"].publish(AgentAction(agent="agent_0", episode=obs.episode, step=obs.step, action=1))

    ros_node.create_subscription(AgentObservation, "/agent_0/observation", answer, OBSERVATION_QOS)
    _start_students(processes, bundle, mode="realtime", report_period_s=60.0)
    results = tmp_path / "bridge.json"
    processes.start("bridge", "kdmarl_bringup.sim_bridge", params={
        "bundle": str(bundle), "episodes": 3, "mode": "realtime", "rate_hz": 5.0, "results_file": str(results)})
    assert spin_until(ros_node, lambda: processes.procs["bridge"].poll() is not None, 240.0), processes.logs()
    assert processes.procs["bridge"].returncode == 1, processes.logs()
    log = processes.log("bridge")
    assert "two writers answered step" in log and "/agent_0/action" in log, log
    stats = read_json(results)
    assert stats["episodes"] == [], stats  # episode 0 (25 steps at 5 Hz) never finished with two deciders
    assert stats["steps"] < 25, stats
