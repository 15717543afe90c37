"""A real ``ros2 launch`` swarm that changes release while it runs (issue 23 "done when"): the fleet YAML's
``updates`` section starts an updater per robot (the lead mirroring a real TUF repository served over HTTP on
127.0.0.1, followers on the lead), the students run from their release stores, and the operator's ``announce``
switches the running team from release 1 to 2. Skips like ``test_launch.py`` where ``ros2 launch`` is missing."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")

from conftest import read_json  # noqa: E402
from kdmarl_bringup.swap_swarm import TEAM, SwapProbe, free_port, make_releases  # noqa: E402
from kdmarl_student.bundle_eval import evaluate_bundle  # noqa: E402
from kdmarl_student.fleet_repo import publish_bundle  # noqa: E402
from kdmarl_student.fleet_serve import serving  # noqa: E402
from test_launch import Launch, pytestmark  # noqa: E402, F401  (the same skip)

N = 3


def test_ros2_launch_swarm_changes_release_while_it_runs(tmp_path: Path) -> None:
    rel = make_releases(tmp_path / "releases", N)
    log_dir = tmp_path / "swarm"
    with serving(rel.repo) as url:
        fleet = tmp_path / "fleet.yaml"
        fleet.write_text(yaml.safe_dump({
            "robots": [{"name": f"agent_{i}", "agent": f"agent_{i}"} for i in range(N)],
            "updates": {"state_dir": str(tmp_path / "state" / "{robot}"), "repository_url": url, "team": TEAM,
                        "trusted_root": str(rel.repo / "metadata" / "1.root.json"),
                        "bundle_public_key": str(rel.pub), "lead": "agent_0", "serve_port": free_port(),
                        "poll_period_s": 0.5}}))
        launch = Launch(tmp_path, f"bundle:={rel.r1}", f"fleet:={fleet}", "episodes:=0", f"log_dir:={log_dir}")
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=int(launch.env["ROS_DOMAIN_ID"]))
        node = rclpy.create_node("launch_swap_probe", context=context)
        announce = None
        try:
            probe = SwapProbe(node, N)
            assert probe.spin(lambda: len(probe.summaries) >= 2, 240.0), launch.output()[-4000:]
            publish_bundle(rel.repo, rel.keys, rel.r2, public_key=rel.pub)
            announce = subprocess.Popen(
                [sys.executable, "-m", "kdmarl_student.announce", "--team", TEAM, "--release", "2", "--supersedes",
                 "1", "--robots", str(N), "--margin", "20", "--wait-s", "120"], env=launch.env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            lines: list[str] = []
            while not any("cut-over:" in line for line in lines):
                line = announce.stdout.readline()
                assert line, f"announce exited: {''.join(lines)}\n{launch.output()[-4000:]}"
                lines.append(line)
            cutover = int(re.search(r"from episode (\d+)", lines[-1]).group(1))
            assert probe.spin(lambda: probe.newest_episode() >= cutover + 2, 240.0), launch.output()[-4000:]
            time.sleep(1.5)  # the monitor hears the students' diagnostics on release 2
        finally:
            if announce is not None:
                announce.terminate()
                announce.wait(30)
            node.destroy_node()
            rclpy.shutdown(context=context)
            launch.interrupt_and_close()
    episodes = [probe.summaries[e] for e in sorted(probe.summaries)]
    assert [int(s.episode) for s in episodes] == list(range(len(episodes)))
    assert all(list(s.missed_actions) == [0] * N and not s.mixed_releases for s in episodes)
    # The team leaves release 1 together at the announced cut-over, or at a later episode start when the
    # announcement reached the students after the cut-over had begun (a loaded machine; still never mixed).
    switch = next((i for i, s in enumerate(episodes) if list(s.releases) != [1] * N), len(episodes))
    assert cutover <= switch < len(episodes), (cutover, switch)
    assert [list(s.releases) for s in episodes] == [[1] * N] * switch + [[2] * N] * (len(episodes) - switch)
    for bundle, mine in ((rel.r1, episodes[:switch]), (rel.r2, episodes[switch:])):
        offline = evaluate_bundle(bundle, [int(s.seed) for s in mine])
        np.testing.assert_array_equal(np.array([list(s.agent_returns) for s in mine]), offline.agent_returns)
    summary = read_json(log_dir / "summary.json")  # the monitor showed each robot's release
    assert {n["release"] for n in summary["nodes"].values()} == {"2"}, summary["nodes"]
    assert summary["episodes"]["mixed_release_episodes"] == 0
