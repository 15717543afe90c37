"""A running lockstep swarm switched from release 1 to release 2 over DDS (issue 23 items 3 and 5, fast version):
real updater and student processes per robot (a lead mirroring the workstation's TUF repository over HTTP on
127.0.0.1, followers updating from it), the sim bridge, and the operator's ``announce``. No action is missed across
the swap, no episode mixes releases, every episode's returns equal the offline evaluation of the release that ran
it, bit for bit (:func:`kdmarl_student.bundle_eval.evaluate_bundle`), and the team switches only at a cut-over every
robot confirmed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from conftest import Processes  # noqa: E402
from kdmarl_bringup.swap_swarm import make_releases, run_swap  # noqa: E402
from kdmarl_student.bundle_eval import evaluate_bundle  # noqa: E402

N = 3


def _assert_episodes_equal_offline(episodes: list[dict], bundle: Path) -> None:
    if episodes:
        offline = evaluate_bundle(bundle, [e["seed"] for e in episodes])
        np.testing.assert_array_equal(np.array([e["agent_returns"] for e in episodes]), offline.agent_returns)


def _switch_episode(episodes: list[dict], cutover: int) -> int:
    """The episode the team left release 1 in: the announced cut-over, or a later episode start together when the
    announcement reached the students after the cut-over had begun (a loaded machine; still no mixed episode)."""
    switch = next((i for i, e in enumerate(episodes) if e["releases"] != [1] * N), len(episodes))
    assert switch >= cutover, (switch, cutover)
    return switch


def test_a_running_swarm_switches_release_with_no_missed_action_and_no_mixed_episode(
        processes: Processes, ros_node, tmp_path: Path) -> None:
    rel = make_releases(tmp_path / "releases", N)
    result = run_swap(processes, ros_node, rel, tmp_path, N)
    episodes, cutover = result["episodes"], result["cutover_episode"]
    assert [e["episode"] for e in episodes] == list(range(len(episodes)))
    assert all(e["missed_actions"] == [0] * N for e in episodes), processes.logs()
    assert not any(e["mixed_releases"] for e in episodes)
    switch = _switch_episode(episodes, cutover)
    assert [e["releases"] for e in episodes] == [[1] * N] * switch + [[2] * N] * (len(episodes) - switch)
    _assert_episodes_equal_offline(episodes[:switch], rel.r1)
    _assert_episodes_equal_offline(episodes[switch:], rel.r2)
    assert len(episodes) - switch >= 3
    # The swap went to disk after the decisions: every robot's store now runs 2 with 1 kept for a revert.
    assert all(store == {"current": 2, "previous": 1, "staged": None} for store in result["stores"].values())


def test_a_robot_that_never_confirms_keeps_the_team_on_its_release_until_it_confirms_late(
        processes: Processes, ros_node, tmp_path: Path) -> None:
    """The confirmed cut-over. The last follower's updater is offline across the publish and ``announce`` waits for
    the other robots only: that robot cannot load release 2, so it never confirms the first cut-over, every student
    aborts it at its decision episode, and the whole team runs release 1 through it (nobody switches). Its updater
    comes back, it loads release 2 and confirms late, and ``announce``'s next cut-over moves the whole team together."""
    rel = make_releases(tmp_path / "releases", N)
    result = run_swap(processes, ros_node, rel, tmp_path, N, offline=N - 1)
    episodes, cutover, aborted = result["episodes"], result["cutover_episode"], result["aborted_cutover_episode"]
    assert aborted is not None and cutover > aborted
    assert all(e["missed_actions"] == [0] * N for e in episodes)
    assert not any(e["mixed_releases"] for e in episodes)
    switch = _switch_episode(episodes, cutover)
    assert switch > aborted  # nobody switched at the aborted cut-over
    assert [e["releases"] for e in episodes] == [[1] * N] * switch + [[2] * N] * (len(episodes) - switch)
    _assert_episodes_equal_offline(episodes[:switch], rel.r1)
    _assert_episodes_equal_offline(episodes[switch:], rel.r2)
    assert f"cut-over at episode {aborted} aborted by" in processes.log("announce")
    # An online student aborted it for lack of the offline robot's answer (one abort is enough: announce may commit
    # the next cut-over before the others reach the decision episode, and they then never decide on this one).
    assert any(f"cut-over to release 2 at episode {aborted}: no confirmation from agent_{N - 1}" in
               processes.log(f"student_{i}") for i in range(N - 1)), processes.logs()
    assert all(store == {"current": 2, "previous": 1, "staged": None} for store in result["stores"].values())
