"""Revert and refused-load paths of a fleet update over DDS (issue 23 item 3), with real updater and student nodes.

- A release whose policy yields non-finite outputs on the robot: after the confirmed cut-over that robot reverts to
  its last good release at the first NaN decision, says so on ``/diagnostics`` (WARN, ``last_revert``) and from
  then on answers with its safe action (it runs another release than the team): no episode mixes releases, no
  action is missed, its store is back on release 1 and the other robots stay on release 2.
- A release over one robot's budget: its updater refuses it (ERROR on ``/diagnostics``, naming the budget), so its
  student never loads nor confirms it, ``announce`` gives up, and the whole team keeps acting on release 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from conftest import Processes  # noqa: E402
from kdmarl_bringup.swap_swarm import (  # noqa: E402
    TEAM,
    SwapProbe,
    episode_rows,
    free_port,
    make_releases,
    run_swap,
    start_swarm,
)
from kdmarl_student.fleet_repo import publish_bundle  # noqa: E402
from kdmarl_student.fleet_serve import serving  # noqa: E402
from kdmarl_student.manifest import MANIFEST_FILE, sha256_file  # noqa: E402
from kdmarl_student.release_store import ReleaseStore  # noqa: E402
from kdmarl_student.signing import load_private_key, sign_bundle  # noqa: E402
from kdmarl_student.testing import write_onnx_log_policy  # noqa: E402

N = 3


def _break_agent_0(bundle: Path, key: Path) -> None:
    """Release 2's agent_0 becomes log(obs + 1) @ W (NaN for an observation value below -1), signed again."""
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    entry = manifest["agents"][0]
    shape = (int(entry["observation"]["input_dim"]), int(entry["action"]["n_actions"]))
    weights = np.random.default_rng(0).normal(size=shape)
    path = write_onnx_log_policy(bundle / "broken_agent_0.onnx", weights.astype(np.float32))
    entry["model"].update(file=path.name, sha256=sha256_file(path), bytes=path.stat().st_size)
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    sign_bundle(bundle, load_private_key(key))


def test_a_release_with_non_finite_outputs_reverts_on_that_robot_and_the_team_never_mixes(
        processes: Processes, ros_node, tmp_path: Path) -> None:
    rel = make_releases(tmp_path / "releases", N)
    _break_agent_0(rel.r2, tmp_path / "releases" / "bundle.key")
    result = run_swap(processes, ros_node, rel, tmp_path, N, acting=tuple(range(1, N)))
    episodes, cutover = result["episodes"], result["cutover_episode"]
    assert all(e["missed_actions"] == [0] * N for e in episodes), processes.logs()
    assert not any(e["mixed_releases"] for e in episodes)
    switch = next(i for i, e in enumerate(episodes) if e["releases"] != [1] * N)
    assert switch >= cutover
    # agent_0 reverted at its first NaN decision: from then on its answers are safe actions (release 0), never
    # release 1 policy actions beside the team's release 2.
    for e in episodes[switch:]:
        assert e["releases"][1:] == [2] * (N - 1) and e["releases"][0] in (0, 2), e
    assert episodes[-1]["releases"][0] == 0
    level, values = next((v for name, v in result["status"].items()
                          if name.startswith("kdmarl_student: ") and "/agent_0/" in name))
    assert level >= 1 and values["release"] == "1" and "non_finite" in values["last_revert"], values
    assert result["stores"][0]["current"] == 1
    assert all(result["stores"][i]["current"] == 2 for i in range(1, N))
    assert "reverted to release 1" in processes.log("student_0")


def test_a_release_over_one_robots_budget_is_refused_and_the_team_keeps_acting(
        processes: Processes, ros_node, tmp_path: Path) -> None:
    """Release 2 has 64 hidden units (1541 parameters per agent), robot 2's budget is 1000: its updater refuses it."""
    rel = make_releases(tmp_path / "releases", N, hidden_2=64)
    probe = SwapProbe(ros_node, N)
    with serving(rel.repo) as url:
        alive = start_swarm(processes, probe, rel, tmp_path, N, url=url, lead_port=free_port(), timeout=300.0,
                            updater_params={2: {"max_params": 1000.0}})
        publish_bundle(rel.repo, rel.keys, rel.r2, public_key=rel.pub)
        announce = subprocess.run(
            [sys.executable, "-m", "kdmarl_student.announce", "--team", TEAM, "--release", "2", "--supersedes", "1",
             "--robots", str(N), "--wait-s", "15"],
            env=processes.env, capture_output=True, text=True, timeout=120, check=False)
        assert announce.returncode == 1, announce.stdout + announce.stderr
        assert "no cut-over" in announce.stdout and "2 of 3 robots" in announce.stdout, announce.stdout
        refused = lambda: probe.status.get("/agent_2/updater: updater", (0, {}))[1]  # noqa: E731
        assert probe.spin(lambda: "max_params" in refused().get("last_refusal", ""), 60.0, processes, alive), \
            (probe.status, processes.log("updater_2"))
        assert probe.status["/agent_2/updater: updater"][0] == 2  # ERROR
        newest = probe.newest_episode()
        started = time.monotonic()
        assert probe.spin(lambda: probe.newest_episode() >= newest + 3, 120.0, processes, alive), processes.logs()
        assert time.monotonic() - started < 120.0
        processes.stop("bridge")
    episodes = episode_rows(probe)
    assert all(e["releases"] == [1] * N for e in episodes)  # nobody switched, and robot 2 kept acting
    assert all(e["missed_actions"] == [0] * N for e in episodes) and not any(e["mixed_releases"] for e in episodes)
    stores = [ReleaseStore(tmp_path / f"robot_{i}" / "releases") for i in range(N)]
    assert [s.pointer("current") for s in stores] == [1] * N
    assert stores[2].pointer("staged") is None  # refused before it was staged: nothing half-written
    assert [s.pointer("staged") for s in stores[:2]] == [2, 2]  # the others have it, waiting for a cut-over
