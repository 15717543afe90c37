"""A composed team (issue 25) runs over real DDS with returns equal to offline.

Two real bundles (a hand-written seeker team and random students, one of which sees less) are composed with
``kdmarl_student.compose.compose_bundle``; the student nodes and the simulation bridge then step the composed
bundle in lockstep, and the returns must equal ``evaluate_bundle`` of the composed bundle exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from conftest import Processes, make_bundle, make_seeker_bundle, run_lockstep  # noqa: E402
from kdmarl_student.bundle_eval import evaluate_bundle  # noqa: E402
from kdmarl_student.compose import compose_bundle  # noqa: E402
from kdmarl_student.manifest import load_manifest  # noqa: E402


def test_composed_team_over_ros_equals_offline(processes: Processes, ros_node, tmp_path: Path) -> None:
    seeker = make_seeker_bundle(tmp_path / "seeker")
    small = make_bundle(tmp_path / "small", seed=5,
                        sensing={"agent_2": {"slices": ["self_vel", "self_pos", "landmarks"]}})
    seeds = [1000, 1001, 1002]
    bundle = compose_bundle([f"agent_0={seeker}", f"agent_1={seeker}", f"agent_2={small}"], tmp_path / "mixed",
                            eval_episodes=len(seeds), envelope_episodes=0)
    assert load_manifest(bundle).data["producer"]["students"] == "composed"
    summaries, over_ros = run_lockstep(processes, ros_node, bundle, seeds)

    offline = evaluate_bundle(bundle, seeds)
    team = load_manifest(bundle).data["team"]
    assert team["student_return"]["mean"] == pytest.approx(offline.returns.mean(), abs=1e-6)
    assert over_ros["missed_actions"] == 0
    np.testing.assert_array_equal(np.array([e["agent_returns"] for e in over_ros["episodes"]]), offline.agent_returns)
    assert [s.team_return for s in summaries] == offline.returns.tolist()
    # a mixed team: neither part's team plays these episodes
    assert not np.array_equal(offline.returns, evaluate_bundle(seeker, seeds).returns)
    assert not np.array_equal(offline.returns, evaluate_bundle(small, seeds).returns)
