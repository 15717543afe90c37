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

from conftest import Processes, make_bundle, read_json, spin_until  # noqa: E402
from kdmarl_student.bundle_eval import evaluate_bundle  # noqa: E402
from kdmarl_student.ros_support import EPISODE_QOS, OBSERVATION_QOS  # noqa: E402

from kdmarl_msgs.msg import AgentObservation, EpisodeSummary  # noqa: E402

AGENTS = ("ally_0", "ally_1", "ally_2")
SEEDS = [1000, 1001]


def test_smax_ros_lockstep_equals_offline_evaluation(processes: Processes, ros_node, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", "smax:3m", seed=3, max_steps=12)
    summaries: list[EpisodeSummary] = []
    ros_node.create_subscription(EpisodeSummary, "/kdmarl/episode", summaries.append, EPISODE_QOS)
    masks: list[list[bool]] = []
    ros_node.create_subscription(AgentObservation, "/ally_0/observation",
                                 lambda m: masks.append(list(m.action_mask)), OBSERVATION_QOS)
    for agent in AGENTS:
        processes.start(f"student_{agent}", "kdmarl_student.student_node", params={"bundle": str(bundle)},
                        ros_args=["-r", f"__ns:=/{agent}"])
    results = tmp_path / "bridge.json"
    processes.start("bridge", "kdmarl_bringup.sim_bridge", params={
        "bundle": str(bundle), "episodes": len(SEEDS), "seed": SEEDS[0], "results_file": str(results),
        "action_timeout_s": 60.0, "episode_subscribers": 1})
    assert spin_until(ros_node, lambda: len(summaries) >= len(SEEDS), 300.0, processes,
                      alive=tuple(f"student_{a}" for a in AGENTS)), processes.logs()
    assert processes.procs["bridge"].wait(60) == 0, processes.logs()

    offline = evaluate_bundle(bundle, SEEDS)
    over_ros = read_json(results)
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


def test_smax_bundle_is_refused_by_the_robot_backends(tmp_path: Path) -> None:
    """Robot adapters and fake robots are MPE-only: the swarm spec says so for a SMAX bundle."""
    from kdmarl_bringup.swarm_spec import parse_args, read_manifest, swarm_nodes

    bundle = make_bundle(tmp_path / "bundle", "smax:3m", seed=3, max_steps=12)
    manifest = read_manifest(bundle)
    for backend in ("fake", "real", "isaac"):
        args = parse_args({"bundle": str(bundle), "backend": backend, "mode": "realtime"})
        with pytest.raises(ValueError, match=r"MPE-only.*smax:3m.*backend 'mpe'"):
            swarm_nodes(args, manifest)
    assert any(n.role == "bridge" for n in swarm_nodes(parse_args({"bundle": str(bundle)}), manifest))
