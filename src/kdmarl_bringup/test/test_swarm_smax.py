"""SMAX over ROS (issue 12): the simulation bridge steps a SMAX battle, publishes each step's action masks, the
student nodes act among the available actions, and the lockstep results equal ``kdmarl evaluate --bundle``'s
(``evaluate_bundle``) episode for episode: per-agent returns, team returns and the battle figures (won,
allies_alive, enemy_hp_left). Random-weight students on a tiny 3m bundle; battles cut at ``max_steps`` 12."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("jaxmarl")

from conftest import Processes, make_bundle, read_json, run_lockstep, spin_until  # noqa: E402
from kdmarl_student.bundle_eval import evaluate_bundle  # noqa: E402
from kdmarl_student.ros_support import ACTION_QOS, EPISODE_QOS, OBSERVATION_QOS  # noqa: E402

from kdmarl_msgs.msg import AgentAction, AgentObservation, EpisodeSummary  # noqa: E402

AGENTS = ("ally_0", "ally_1", "ally_2")
SEEDS = [1000, 1001]


def test_smax_ros_lockstep_equals_offline_evaluation(processes: Processes, ros_node, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", "smax:3m", seed=3, max_steps=12)
    masks: list[list[bool]] = []
    ros_node.create_subscription(AgentObservation, "/ally_0/observation",
                                 lambda m: masks.append(list(m.action_mask)), OBSERVATION_QOS)
    summaries, over_ros = run_lockstep(processes, ros_node, bundle, SEEDS, timeout=300.0, agents=AGENTS,
                                       action_timeout_s=60.0)
    offline = evaluate_bundle(bundle, SEEDS)
    assert over_ros["scenario"] == "smax:3m" and over_ros["missed_actions"] == 0
    assert [e["seed"] for e in over_ros["episodes"]] == [s.seed for s in summaries] == SEEDS
    np.testing.assert_array_equal(np.array([e["agent_returns"] for e in over_ros["episodes"]]), offline.agent_returns)
    np.testing.assert_array_equal(np.array([list(s.agent_returns) for s in summaries]), offline.agent_returns)
    assert [s.team_return for s in summaries] == offline.returns.tolist()
    assert set(offline.metrics) == {"won", "allies_alive", "enemy_hp_left"}
    for name, values in offline.metrics.items():
        assert [e["metrics"][name] for e in over_ros["episodes"]] == values.tolist(), name
        assert [dict(zip(s.metric_names, s.metric_values, strict=True))[name] for s in summaries] == \
            pytest.approx(values.tolist(), rel=1e-6), name  # the message's float32
    assert all(list(s.missed_actions) == [0, 0, 0] for s in summaries)
    # The masks went over the wire: 8 entries (4 moves, stop, 3 attacks), stop always available.
    assert masks and all(len(m) == 8 and m[4] for m in masks)


ATTACK_0, STOP = 5, 4  # smax:3m actions: 4 moves, stop, attack enemy 0..2


def test_bridge_never_steps_an_invalid_or_unavailable_action(processes: Processes, ros_node, tmp_path: Path) -> None:
    """Rogue deciders (the test process publishes every agent's action): ally_0 always attacks enemy 0, which
    is unavailable while it is out of range or dead; ally_1 sends an index outside the action space; ally_2
    stops. The bridge must finish the battle, ignore ally_1's messages (missed, warned with the topic), step
    ally_0 with the safe action wherever its attack is unavailable, and so equal an offline battle that
    applies exactly those substitutions."""
    from kdmarl_student.manifest import load_manifest
    from kdmarl_student.scenarios import scenario_spec
    from kdmarl_student.smax_battle import SmaxBattle

    bundle = make_bundle(tmp_path / "bundle", "smax:3m", seed=3, max_steps=12)
    rogue = {"ally_0": ATTACK_0, "ally_1": 99, "ally_2": STOP}
    pubs = {a: ros_node.create_publisher(AgentAction, f"/{a}/action", ACTION_QOS) for a in AGENTS}
    sent = {a: 0 for a in AGENTS}

    def answer(agent: str, obs: AgentObservation) -> None:
        pubs[agent].publish(AgentAction(agent=agent, episode=obs.episode, step=obs.step, action=rogue[agent]))
        sent[agent] += 1

    for agent in AGENTS:
        ros_node.create_subscription(AgentObservation, f"/{agent}/observation",
                                     lambda m, a=agent: answer(a, m), OBSERVATION_QOS)
    summaries: list[EpisodeSummary] = []
    ros_node.create_subscription(EpisodeSummary, "/kdmarl/episode", summaries.append, EPISODE_QOS)
    results = tmp_path / "bridge.json"
    processes.start("bridge", "kdmarl_bringup.sim_bridge", params={
        "bundle": str(bundle), "episodes": 1, "seed": SEEDS[0], "results_file": str(results),
        "action_timeout_s": 0.5, "wait_for_students_s": 15.0, "episode_subscribers": 1})
    assert spin_until(ros_node, lambda: len(summaries) >= 1, 120.0, processes), processes.logs()
    assert processes.procs["bridge"].wait(60) == 0, processes.logs()

    manifest = load_manifest(bundle)
    battle = SmaxBattle(scenario_spec(manifest.scenario["name"], **dict(manifest.scenario.get("params", {}))))
    battle.reset(SEEDS[0])
    returns, substituted, steps, done = np.zeros(3), 0, 0, False
    while not done:
        attack_available = bool(battle.available_actions()["ally_0"][ATTACK_0])
        substituted += not attack_available
        actions = {"ally_0": ATTACK_0 if attack_available else STOP, "ally_1": STOP, "ally_2": STOP}
        _, rewards, terms, truncs, _ = battle.step(actions)
        returns += [rewards[a] for a in AGENTS]
        steps += 1
        done = all(terms[a] or truncs[a] for a in AGENTS)

    over_ros = read_json(results)
    (episode,) = over_ros["episodes"]
    assert episode["steps"] == steps and substituted > 0
    np.testing.assert_array_equal(episode["agent_returns"], returns)
    assert episode["missed_actions"] == [0, steps, 0]  # ally_1's answers were all ignored
    assert over_ros["unavailable_actions"] == substituted
    assert over_ros["invalid_actions"] >= steps and sent["ally_1"] >= steps
    log = processes.log("bridge")
    assert "/ally_1/action: action 99 is outside ally_1's action space [0, 8) of smax:3m" in log, log
    assert f"/ally_0/action: action {ATTACK_0} is not available" in log, log


def test_smax_bundle_is_refused_by_the_robot_backends(tmp_path: Path) -> None:
    """Robot adapters and fake robots are MPE-only: the swarm spec says so for a SMAX bundle."""
    from kdmarl_bringup.swarm_runner import scenario_name
    from kdmarl_bringup.swarm_spec import parse_args, read_manifest, swarm_nodes

    bundle = make_bundle(tmp_path / "bundle", "smax:3m", seed=3, max_steps=12)
    manifest = read_manifest(bundle)
    for backend in ("fake", "real", "isaac"):
        args = parse_args({"bundle": str(bundle), "backend": backend, "mode": "realtime"})
        with pytest.raises(ValueError, match=r"MPE-only.*smax:3m.*backend 'mpe'"):
            swarm_nodes(args, manifest)
    assert any(n.role == "bridge" for n in swarm_nodes(parse_args({"bundle": str(bundle)}), manifest))
    assert scenario_name(bundle) == "smax:3m"  # the runner's start line names the battle, not only "mpe"
