"""The launch logic without launch_ros: launch arguments + manifest (+ fleet) -> node specs, and the runner's
translation of those specs into processes; the real LaunchDescription where launch_ros exists."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TRAINED_BUNDLE, fresh_domain_id, make_bundle, read_json, ros_env
from kdmarl_bringup.swarm_runner import node_command, write_overrides
from kdmarl_bringup.swarm_spec import build, load_fleet, parse_args, read_manifest, swarm_nodes

CONFIG = Path(__file__).resolve().parents[1] / "config"
LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "swarm.launch.py"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("spec") / "bundle", seed=1)


def _by_role(specs: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for s in specs:
        out.setdefault(s.role, []).append(s)
    return out


def test_mpe_backend_is_bridge_plus_one_student_per_agent(bundle: Path) -> None:
    args, specs, params_file = build({"bundle": str(bundle), "episodes": "3", "rate": "20"})
    roles = _by_role(specs)
    assert [s.namespace for s in roles["student"]] == ["agent_0", "agent_1", "agent_2"]
    assert [s.parameters["agent"] for s in roles["student"]] == ["agent_0", "agent_1", "agent_2"]
    assert all(s.parameters["use_sim_time"] is True and s.parameters["mode"] == "lockstep" for s in roles["student"])
    (bridge,) = roles["bridge"]
    assert bridge.parameters["episodes"] == 3 and bridge.parameters["publish_clock"] is True
    assert bridge.parameters["use_sim_time"] is False  # the bridge is the clock source
    assert "adapter" not in roles and len(roles["monitor"]) == 1
    assert specs[0].role == "monitor" and specs[-1].role == "bridge"  # start order
    assert Path(params_file) == CONFIG / "swarm.yaml"
    assert args.rate == 20.0


def test_robot_backends_have_adapters_with_peers_in_agent_order(bundle: Path, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({"robots": [
        {"name": "r2", "agent": "agent_2"}, {"name": "r0", "agent": "agent_0"},
        {"name": "r1", "agent": "agent_1", "enabled": False}]}))
    _, specs, _ = build({"bundle": str(bundle), "backend": "isaac", "mode": "realtime", "fleet": str(fleet),
                         "monitor": "false"})
    roles = _by_role(specs)
    assert sorted(roles) == ["adapter", "student"]  # no bridge, no fake robots, no monitor
    assert [s.namespace for s in roles["student"]] == ["r2", "r0"]  # r1 disabled
    adapters = {s.namespace: s.parameters for s in roles["adapter"]}
    assert adapters["r2"]["peers"] == ["r0", "r1"] and adapters["r0"]["peers"] == ["r1", "r2"]
    assert all(s.parameters["use_sim_time"] for s in specs)  # Isaac Sim publishes /clock
    _, real, _ = build({"bundle": str(bundle), "backend": "real", "mode": "realtime"})
    assert not any(s.parameters.get("use_sim_time") for s in real)
    _, fake, _ = build({"bundle": str(bundle), "backend": "fake", "mode": "realtime", "fleet": str(fleet)})
    assert {s.namespace for s in _by_role(fake)["robot"]} == {"r2", "r0"}
    # In realtime the monitor watches the bundle's envelope; in lockstep (nothing is late there) it does not.
    assert _by_role(fake)["monitor"][0].parameters["bundle"] == str(bundle.resolve())
    _, lockstep, _ = build({"bundle": str(bundle)})
    assert "bundle" not in _by_role(lockstep)["monitor"][0].parameters


@pytest.mark.parametrize(("values", "match"), [
    ({}, "bundle"),
    ({"backend": "gazebo"}, "backend"),
    ({"mode": "fast"}, "mode"),
    ({"backend": "real"}, "lockstep"),
    ({"rate": "0"}, "rate"),
    ({"episodes": "-1"}, "episodes"),
    ({"monitor": "maybe"}, "monitor"),
    ({"colour": "red"}, "unknown"),
])
def test_bad_launch_arguments_are_named(values: dict[str, str], match: str, bundle: Path) -> None:
    full = {"bundle": str(bundle), **values} if match != "bundle" else values
    with pytest.raises(ValueError, match=match):
        parse_args(full)


def test_bad_fleets_are_refused(bundle: Path, tmp_path: Path) -> None:
    agents = ["agent_0", "agent_1", "agent_2"]
    cases = {
        "not in the bundle": {"robots": [{"name": "a", "agent": "agent_9"}]},
        "must be unique": {"robots": [{"name": "a", "agent": "agent_0"}, {"name": "a", "agent": "agent_1"}]},
        "non-empty list": {"robots": []},
    }
    for match, data in cases.items():
        path = tmp_path / "fleet.yaml"
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ValueError, match=match):
            load_fleet(path, agents)
    all_off = [r.__class__(r.name, r.agent, False) for r in load_fleet(CONFIG / "fleet.example.yaml", agents)]
    with pytest.raises(ValueError, match="no enabled robot"):
        swarm_nodes(parse_args({"bundle": str(bundle)}), read_manifest(bundle), all_off)


def test_a_fleet_larger_than_the_team_is_refused(bundle: Path, tmp_path: Path) -> None:
    """Issue 22: the launch refuses more robots than the bundle has agents, and a manifest whose team is not the
    scenario's (600 agents for simple_spread N=3 used to give 602 node specs)."""
    from kdmarl_bringup.swarm_spec import Robot

    args, manifest = parse_args({"bundle": str(bundle)}), read_manifest(bundle)
    robots = [Robot(f"r{i}", f"agent_{i % 3}") for i in range(4)]
    with pytest.raises(ValueError, match="a fleet of 4 robots for a team of 3 agents"):
        swarm_nodes(args, manifest, robots)
    with pytest.raises(ValueError, match="distinct agents"):
        swarm_nodes(args, manifest, [Robot("a", "agent_0"), Robot("b", "agent_0")])
    assert len(swarm_nodes(args, manifest, robots[:3])) == 5  # monitor, 3 students, bridge
    big = tmp_path / "big"
    shutil.copytree(bundle, big)
    data = json.loads((big / "manifest.json").read_text())
    data["agents"] = [{**data["agents"][0], "name": f"agent_{i}"} for i in range(600)]
    (big / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"3 agents .* got 600"):
        build({"bundle": str(big)})


def test_params_yaml_has_wildcard_and_node_sections() -> None:
    params = yaml.safe_load((CONFIG / "swarm.yaml").read_text())
    assert "/**" in params and "/**/student" in params and "/sim_bridge" in params
    for section in params.values():
        for key, value in section["ros__parameters"].items():
            assert not (key.endswith("_s") and isinstance(value, int)), f"{key} must be written as a float"


def test_runner_command_carries_namespace_params_file_and_overrides(bundle: Path, tmp_path: Path) -> None:
    _, specs, params_file = build({"bundle": str(bundle)})
    student = next(s for s in specs if s.role == "student")
    overrides = write_overrides(student, tmp_path)
    cmd = node_command(student, params_file, overrides, python="python3")
    assert cmd[:3] == ["python3", "-m", "kdmarl_student.student_node"]
    assert cmd[cmd.index("--ros-args") + 1:] == ["-r", "__node:=student", "-r", "__ns:=/agent_0", "--params-file",
                                                 params_file, "--params-file", str(overrides)]
    data = yaml.safe_load(overrides.read_text())
    assert data["/agent_0/student"]["ros__parameters"]["agent"] == "agent_0"


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="launch_ros not importable: source a ROS 2 install or let scripts/bootstrap.sh build the "
                           "launch overlay from ../shared/ros2")
def test_launch_file_builds_a_launch_description(bundle: Path) -> None:  # pragma: no cover - needs launch_ros
    from launch import LaunchContext
    from launch.actions import GroupAction, RegisterEventHandler

    spec = importlib.util.spec_from_file_location("swarm_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    previous = signal.getsignal(signal.SIGINT)
    try:
        description = module.generate_launch_description()  # (it replaces the SIGINT handler, for ros2 launch)
    finally:
        signal.signal(signal.SIGINT, previous)
    context = LaunchContext()
    context.launch_configurations.update({"bundle": str(bundle)})
    for entity in description.entities:
        entity.visit(context)
    opaque = description.entities[-1]
    actions = opaque.execute(context)
    groups = [a for a in actions if isinstance(a, GroupAction)]
    assert len(groups) == 3  # one namespace per agent
    assert sum(isinstance(a, RegisterEventHandler) for a in actions) == 1  # the bridge's exit ends the launch


def test_runner_runs_episodes_and_shuts_down_on_sigint(bundle: Path, tmp_path: Path) -> None:
    """kdmarl-swarm end to end: N episodes -> summary + equal returns; then a forever run stopped by SIGINT."""
    env = ros_env(fresh_domain_id())
    log_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "kdmarl_bringup.swarm_runner", "--bundle", str(bundle), "--episodes", "2",
         "--log-dir", str(log_dir), "--record-mcap", "true", "--timeout", "240", "--expect-equal"],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "monitor summary" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in (["1000"], ["1001"])]
    assert [r[0] for r in rows] == ["1000", "1001"], result.stdout
    assert all(r[3] == "yes" for r in rows), result.stdout  # team return over ROS == offline, per seed
    summary = read_json(log_dir / "summary.json")
    assert summary["episodes"]["count"] == 2 and summary["episodes"]["missed_actions"] == 0
    assert len(summary["nodes"]) == 3
    episodes_csv = (log_dir / "episodes.csv").read_text().splitlines()
    assert len(episodes_csv) == 3 and [line.split(",")[2] for line in episodes_csv[1:]] == ["1000", "1001"], \
        episodes_csv
    usage = (log_dir / "resource_usage.csv").read_text()
    assert all(f"/agent_{i}/resource_usage" in usage for i in range(3)), usage[:500]
    assert (log_dir / "resources.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from mcap_ros2.reader import read_ros2_messages

    topics = {m.channel.topic for m in read_ros2_messages(str(log_dir / "run.mcap"))}
    assert "/kdmarl/episode" in topics and "/diagnostics" in topics

    # Unbounded run: SIGINT to the runner stops every node cleanly.
    forever = tmp_path / "forever"
    runner = subprocess.Popen(
        [sys.executable, "-m", "kdmarl_bringup.swarm_runner", "--bundle", str(bundle), "--log-dir", str(forever)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        csv = forever / "episodes.csv"
        while time.monotonic() < deadline and not (csv.is_file() and len(csv.read_text().splitlines()) >= 2):
            assert runner.poll() is None, runner.stdout.read() if runner.stdout else ""
            time.sleep(0.5)
        os.kill(runner.pid, signal.SIGINT)
        out, _ = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    assert runner.returncode == 0, out
    pids = [int(line.rsplit("pid ", 1)[1].rstrip(")")) for line in out.splitlines() if line.startswith("started ")]
    assert len(pids) == 5
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    finished = len(csv.read_text().splitlines()) - 1
    assert read_json(forever / "summary.json")["episodes"]["count"] == finished >= 1


def test_committed_test_bundle_carries_the_current_hardware_budgets() -> None:
    """The reference bundle's budgets are its hardware profiles' (a stale max_latency_ms made every node read
    OVER): regenerate it (test/data/README.md) when a profile changes."""
    hardware = REPO / "src" / "kdmarl_teacher" / "kdmarl_teacher" / "config" / "hardware"
    for agent in read_json(TRAINED_BUNDLE / "manifest.json")["agents"]:
        budget = agent["budget"]
        profile = yaml.safe_load((hardware / f"{budget['profile']}.yaml").read_text())
        for key in ("max_flops", "max_params", "max_memory_bytes", "max_latency_ms"):
            assert budget[key] == profile[key], (agent["name"], key)


def test_budget_column_names_the_field_over() -> None:
    """FLOPs that fit must not read as OVER because latency is over: the verdict names the field."""
    pytest.importorskip("rclpy")
    from kdmarl_bringup.monitor import budget_verdict

    from kdmarl_msgs.msg import ResourceUsage

    assert budget_verdict(ResourceUsage(budget_met=True)) == ""
    assert budget_verdict(ResourceUsage(budget_met=False, budget_exceeded=["latency"])) == " OVER latency"
    assert budget_verdict(ResourceUsage(budget_met=False, budget_exceeded=["flops", "memory"])) == " OVER flops,memory"


def test_fleet_drive_fields_reach_adapters_and_fake_robots(bundle: Path, tmp_path: Path) -> None:
    """Issue 24: 'defaults' apply to every robot, a robot's own field wins, the launch argument 'drive' fills what
    the fleet leaves unset; the fake robot gets the base's fields (drive, limits, cmd_vel type), the adapter all."""
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({
        "defaults": {"drive": "diff_drive", "max_linear": 1, "max_angular": 2.5, "cmd_vel_stamped": True},
        "robots": [{"name": "a", "agent": "agent_0", "initial_pose": [0.0, 1.0, 1.5]},
                   {"name": "b", "agent": "agent_1", "drive": "holonomic", "max_linear": 0.5},
                   {"name": "c", "agent": "agent_2", "conversion": "heading", "cmd_vel_frame_id": "c/base"}]}))
    _, specs, _ = build({"bundle": str(bundle), "backend": "fake", "mode": "realtime", "fleet": str(fleet)})
    adapters = {s.namespace: s.parameters for s in specs if s.role == "adapter"}
    robots = {s.namespace: s.parameters for s in specs if s.role == "robot"}
    assert adapters["a"]["drive"] == "diff_drive" and adapters["a"]["max_linear"] == 1.0
    assert isinstance(adapters["a"]["max_linear"], float)  # rclpy refuses an int for a double parameter
    assert adapters["b"]["drive"] == "holonomic" and adapters["b"]["max_linear"] == 0.5
    assert adapters["b"]["max_angular"] == 2.5 and adapters["b"]["cmd_vel_stamped"] is True
    assert adapters["c"]["conversion"] == "heading" and adapters["c"]["cmd_vel_frame_id"] == "c/base"
    assert robots["a"]["initial_pose"] == [0.0, 1.0, 1.5] and robots["a"]["drive"] == "diff_drive"
    assert "conversion" not in robots["c"] and "cmd_vel_frame_id" not in robots["c"]
    assert robots["b"] == {"initial_pose": [0.0, 0.0], "use_sim_time": False, "drive": "holonomic",
                           "max_linear": 0.5, "max_angular": 2.5, "cmd_vel_stamped": True}
    _, plain, _ = build({"bundle": str(bundle), "backend": "fake", "mode": "realtime", "drive": "diff_drive"})
    assert all(s.parameters["drive"] == "diff_drive" for s in plain if s.role in ("adapter", "robot"))
    _, default, _ = build({"bundle": str(bundle), "backend": "fake", "mode": "realtime"})
    assert not any("drive" in s.parameters for s in default)  # the params file's (holonomic)


@pytest.mark.parametrize(("entry", "match"), [
    ({"drive": "tank"}, r"robots\[0\]\.drive must be one of \('holonomic', 'diff_drive'\), got 'tank'"),
    ({"max_linear": -1}, r"robots\[0\]\.max_linear must be a number >= 0"),
    ({"max_angular": "fast"}, r"robots\[0\]\.max_angular must be a number >= 0"),
    ({"max_linear_accel": float("nan")}, r"robots\[0\]\.max_linear_accel must be a number"),
    ({"projection_distance": 0}, r"robots\[0\]\.projection_distance must be a number > 0"),
    ({"cmd_vel_stamped": "yes"}, r"robots\[0\]\.cmd_vel_stamped must be true or false"),
    ({"conversion": "pid"}, r"robots\[0\]\.conversion must be one of"),
    ({"max_linar": 1.0}, r"robots\[0\] has unknown field\(s\) \['max_linar'\]"),
    ({"initial_pose": [1, 2, 3, 4]}, r"initial_pose must be \[x, y\] or \[x, y, yaw\]"),
])
def test_bad_drive_fields_are_named(entry: dict, match: str, tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"robots": [{"name": "a", "agent": "agent_0", **entry}]}))
    with pytest.raises(ValueError, match=f"{path}: {match}" if "robots" in match else match):
        load_fleet(path, ["agent_0"])
    path.write_text(yaml.safe_dump({"defaults": {"max_angular": -2.0}, "robots": [{"name": "a", "agent": "agent_0"}]}))
    with pytest.raises(ValueError, match=r"defaults\.max_angular must be a number >= 0"):
        load_fleet(path, ["agent_0"])
    path.write_text(yaml.safe_dump({"defaults": {"name": "x"}, "robots": [{"name": "a", "agent": "agent_0"}]}))
    with pytest.raises(ValueError, match="'defaults' must be a mapping of drive fields"):
        load_fleet(path, ["agent_0"])


def test_example_fleets_load() -> None:
    agents = ["agent_0", "agent_1", "agent_2"]
    tb3 = load_fleet(CONFIG / "fleet.turtlebot3.example.yaml", agents)
    assert all(r.drive["drive"] == "diff_drive" and r.drive["max_linear"] == 0.22 for r in tb3)
    assert [r.agent for r in load_fleet(CONFIG / "fleet.example.yaml", agents)] == agents
