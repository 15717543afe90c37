"""Google Research Football over ROS (issue 27): the simulation bridge steps a GRF game (GrfSimulator, the same
``kdmarl_student.grf_game.GrfGame`` the offline evaluation steps), one student node per controlled player, and the
lockstep results equal ``kdmarl evaluate --bundle``'s (``evaluate_bundle``) episode for episode: per-agent
returns, team returns and the episode figures (won, goal_diff). Random-weight students on a tiny 3v1 bundle;
episodes cut at ``max_steps`` 12. Skips without gfootball (bash scripts/setup_grf.sh)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
# a marker, not importorskip: the test is collected and its skip carries the reason into the JUnit report
pytestmark = pytest.mark.skipif(importlib.util.find_spec("gfootball") is None,
                                reason="gfootball not installed (optional extra: bash scripts/setup_grf.sh)")

from conftest import Processes, make_bundle, run_lockstep  # noqa: E402
from kdmarl_student.bundle_eval import evaluate_bundle  # noqa: E402

AGENTS = ("player_0", "player_1", "player_2")
SEEDS = [1000, 1001]


def test_grf_ros_lockstep_equals_offline_evaluation(processes: Processes, ros_node, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle", "grf:academy_3_vs_1_with_keeper", seed=3, max_steps=12)
    summaries, over_ros = run_lockstep(processes, ros_node, bundle, SEEDS, timeout=300.0, agents=AGENTS,
                                       action_timeout_s=60.0)
    offline = evaluate_bundle(bundle, SEEDS)
    assert over_ros["scenario"] == "grf:academy_3_vs_1_with_keeper" and over_ros["missed_actions"] == 0
    assert [e["seed"] for e in over_ros["episodes"]] == [s.seed for s in summaries] == SEEDS
    np.testing.assert_array_equal(np.array([e["agent_returns"] for e in over_ros["episodes"]]), offline.agent_returns)
    np.testing.assert_array_equal(np.array([list(s.agent_returns) for s in summaries]), offline.agent_returns)
    assert [s.team_return for s in summaries] == offline.returns.tolist()
    assert set(offline.metrics) == {"won", "goal_diff"}
    for name, values in offline.metrics.items():
        assert [e["metrics"][name] for e in over_ros["episodes"]] == values.tolist(), name
    assert all(list(s.missed_actions) == [0, 0, 0] for s in summaries)
