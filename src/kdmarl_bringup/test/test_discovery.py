"""A swarm simulated on one host discovers completely past 32 processes (kdmarl_bringup.discovery).

The reproduction is ``scripts/discovery_probe.py``: real rclpy processes on one topic, every one counting the
subscriptions its publisher matched. With plain ``LOCALHOST`` the processes with participant ids of 32 or more
never see each other; with the swarm's environment all 36 see all 36. How long that takes depends on the machine's
load (once over 10 s on two busy CI cores), so every process reports as soon as it sees all 36, within a deadline
long enough that only a participant nobody announces to can miss it.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO, fresh_domain_id, ros_env
from kdmarl_bringup.discovery import PROFILE_VAR, profile_path, swarm_discovery_env


def test_swarm_environment_applies_only_to_localhost_fast_dds() -> None:
    assert swarm_discovery_env({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}) == {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT", PROFILE_VAR: str(profile_path())}
    assert swarm_discovery_env({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}) == {}
    assert swarm_discovery_env({}) == {}
    assert swarm_discovery_env({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                                "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) == {}
    assert swarm_discovery_env({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                                PROFILE_VAR: "/etc/my_profile.xml"}) == {}  # the user's own profile wins
    assert profile_path().is_file()


def test_36_processes_all_discover_each_other() -> None:
    """36 participants (a 16-robot swarm with updaters is ~35): every one matches all 36 subscriptions."""
    env = ros_env(fresh_domain_id())
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE")
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # the probe applies the swarm's environment itself
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "discovery_probe.py"), "--n", "36", "--fixed",
                           "--domain", env["ROS_DOMAIN_ID"], "--wait", "60"],
                          check=False, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "0 of 36 saw fewer than 36" in done.stdout
