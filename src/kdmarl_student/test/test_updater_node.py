"""The updater node as a real process over DDS: it stages release 1 at start-up, takes a /kdmarl/release announcement,
refuses a release whose bundle signature fails and says so on /diagnostics (ERROR, the reason), staying on what it
had. The repository is real TUF over real HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from kdmarl_student.fleet_repo import init_repository, publish_bundle  # noqa: E402
from kdmarl_student.fleet_serve import serving  # noqa: E402
from kdmarl_student.ros_support import REPORT_QOS  # noqa: E402
from kdmarl_student.signing import generate_keypair, load_private_key, sign_bundle  # noqa: E402
from kdmarl_student.testing import fresh_domain_id  # noqa: E402
from kdmarl_student.updater_node import RELEASE_QOS, RELEASE_TOPIC  # noqa: E402
from test_support_bundles import make_bundle  # noqa: E402

from kdmarl_msgs.msg import Release  # noqa: E402

TIMEOUT = 40.0


def test_updater_node_stages_announced_release_and_reports_refusals(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "b.key", tmp_path / "b.pub")
    generate_keypair(tmp_path / "x.key", tmp_path / "x.pub")
    bundles = {}
    for name, seed, key in (("r1", 1, "b"), ("r2", 2, "x")):
        bundle, _, _ = make_bundle(tmp_path / name, seed=seed)
        sign_bundle(bundle, load_private_key(tmp_path / f"{key}.key"))
        bundles[name] = bundle
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    init_repository(repo, keys)
    publish_bundle(repo, keys, bundles["r1"], team="spread", public_key=tmp_path / "b.pub")
    domain = fresh_domain_id("kdmarl_student")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), ROS_DOMAIN_ID=str(domain),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(tmp_path / "ros_log"))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("updater_probe", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    seen: list[DiagnosticStatus] = []
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda a: seen.extend(s for s in a.status if s.name.endswith(": updater")), REPORT_QOS)
    announce = node.create_publisher(Release, RELEASE_TOPIC, RELEASE_QOS)

    def wait_for(predicate: Callable[[dict[str, str]], bool], proc: subprocess.Popen) -> DiagnosticStatus:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            assert proc.poll() is None, f"updater node exited: {proc.stdout.read() if proc.stdout else ''}"
            for status in reversed(seen):
                if predicate({kv.key: kv.value for kv in status.values}):
                    return status
        raise AssertionError(f"no matching diagnostics; last: {seen[-1] if seen else None}")

    with serving(repo) as url:
        args = [sys.executable, "-m", "kdmarl_student.updater_node", "--ros-args", "-r", "__ns:=/agent_0",
                "-p", f"state_dir:={tmp_path / 'robot'}", "-p", f"repository_url:={url}", "-p", "team:=spread",
                "-p", f"trusted_root:={repo / 'metadata' / '1.root.json'}",
                "-p", f"bundle_public_key:={tmp_path / 'b.pub'}", "-p", "report_period_s:=0.2"]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            first = wait_for(lambda v: v.get("staged_release") == "1", proc)
            assert first.level == DiagnosticStatus.OK and first.hardware_id == "agent_0"
            publish_bundle(repo, keys, bundles["r2"], team="spread")  # signed with a key robots do not trust
            announce.publish(Release(team="spread", release=2, supersedes=1, cutover_episode=5))
            refused = wait_for(lambda v: v.get("announced_release") == "2" and v.get("last_check") == "refused", proc)
            values = {kv.key: kv.value for kv in refused.values}
            assert refused.level == DiagnosticStatus.ERROR and "verification failed" in values["last_refusal"]
            assert values["staged_release"] == "1" and values["cutover_episode"] == "5"
            assert sorted(p.name for p in (tmp_path / "robot" / "releases").iterdir()) == \
                ["1", "lock", "staged", "status.json"]
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            executor.shutdown()
            node.destroy_node()
            rclpy.shutdown(context=context)
