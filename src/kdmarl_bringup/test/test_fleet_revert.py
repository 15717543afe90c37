"""Revert and refused-load paths of a fleet update over DDS (issue 23 item 3), with real updater and student nodes.

- A release whose policy yields non-finite outputs on the robot: after the confirmed cut-over that robot reverts to
  its last good release at the first NaN decision, says so on ``/diagnostics`` (WARN, ``last_revert``) and from
  then on answers with its safe action (it runs another release than the team): no episode mixes releases, no
  action is missed, its store is back on release 1 and the other robots stay on release 2.
- A release over one robot's budget, or whose bundle signature fails: the updater refuses it (ERROR on
  ``/diagnostics``, naming why), so its student never loads nor confirms it, ``announce`` gives up, and the whole
  team keeps acting on release 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
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
from kdmarl_student.signing import generate_keypair, load_private_key, sign_bundle  # noqa: E402
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


@pytest.mark.parametrize("case", ["over_budget", "bad_signature"])
def test_a_refused_release_never_stages_and_the_team_keeps_acting(
        processes: Processes, ros_node, tmp_path: Path, case: str) -> None:
    """``over_budget``: release 2 has 64 hidden units (1541 parameters per agent) and robot 2's budget is 1000, so
    robot 2's updater refuses it. ``bad_signature``: release 2 is signed with a key the robots do not trust
    (published without the workstation's signature check), so the lead's updater refuses it and never mirrors it.
    Either way ``announce`` gets no full team, the refusing updater says why on ``/diagnostics`` (ERROR), nothing
    is half-written, and the whole team keeps acting on release 1."""
    rel = make_releases(tmp_path / "releases", N, hidden_2=64 if case == "over_budget" else 16)
    # a bad signature is refused by the lead, which therefore never mirrors it: the followers never see release 2
    refusing, reason = ([2], "max_params") if case == "over_budget" else ([0], "signature")
    unstaged = [2] if case == "over_budget" else list(range(N))
    if case == "bad_signature":
        generate_keypair(tmp_path / "other.key", tmp_path / "other.pub")
        sign_bundle(rel.r2, load_private_key(tmp_path / "other.key"))
    probe = SwapProbe(ros_node, N)
    with serving(rel.repo) as url:
        alive = start_swarm(processes, probe, rel, tmp_path, N, url=url, lead_port=free_port(), timeout=300.0,
                            updater_params={2: {"max_params": 1000.0}} if case == "over_budget" else None)
        publish_bundle(rel.repo, rel.keys, rel.r2, public_key=rel.pub if case == "over_budget" else None)
        announce = subprocess.run(
            [sys.executable, "-m", "kdmarl_student.announce", "--team", TEAM, "--release", "2", "--supersedes", "1",
             "--robots", str(N), "--wait-s", "15"],
            env=processes.env, capture_output=True, text=True, timeout=120, check=False)
        assert announce.returncode == 1, announce.stdout + announce.stderr
        assert "no cut-over" in announce.stdout, announce.stdout

        def refusal(i: int) -> tuple[int, dict[str, str]]:
            return probe.status.get(f"/agent_{i}/updater: updater", (0, {}))

        assert probe.spin(lambda: all(reason in refusal(i)[1].get("last_refusal", "") for i in refusing), 60.0,
                          processes, alive), (probe.status, [processes.log(f"updater_{i}") for i in refusing])
        assert all(refusal(i)[0] == 2 for i in refusing)  # ERROR
        newest = probe.newest_episode()
        assert probe.spin(lambda: probe.newest_episode() >= newest + 3, 120.0, processes, alive), processes.logs()
        processes.stop("bridge")
    episodes = episode_rows(probe)
    assert all(e["releases"] == [1] * N for e in episodes)  # nobody switched, and every robot kept acting
    assert all(e["missed_actions"] == [0] * N for e in episodes) and not any(e["mixed_releases"] for e in episodes)
    stores = [ReleaseStore(tmp_path / f"robot_{i}" / "releases") for i in range(N)]
    assert [s.pointer("current") for s in stores] == [1] * N
    for i in unstaged:  # refused before it was staged (or never mirrored): nothing half-written
        assert stores[i].pointer("staged") is None and not (stores[i].root / "2").exists()
