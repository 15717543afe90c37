"""What a ROS 2 engineer does with the swarm, done for real: ``ros2 launch`` and the ``ros2`` CLI.

Every test runs the real ``ros2 launch kdmarl_bringup swarm.launch.py`` in its own process group and ROS
domain (a subprocess is the most faithful launch test: it is what users type) and talks to it with the real
``ros2 topic/param/lifecycle`` verbs. They skip, saying what is missing, where neither a ROS 2 install nor
the upstream overlay the bootstrap builds from ``../shared/ros2`` provides ``ros2 launch``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
psutil = pytest.importorskip("psutil")

from conftest import TRAINED_BUNDLE, fresh_domain_id, read_json, ros_env  # noqa: E402
from kdmarl_bringup.swarm_spec import LAUNCH_ARGUMENTS  # noqa: E402
from kdmarl_student.bundle_eval import evaluate_bundle  # noqa: E402

from kdmarl_msgs.msg import AgentAction  # noqa: E402


def _ros2_launch_missing() -> str:
    """Why ``ros2 launch`` cannot run here ("" when it can)."""
    import shutil

    if shutil.which("ros2") is None:
        return ("no `ros2` CLI: source a ROS 2 install, or let scripts/bootstrap.sh build the launch/ros2cli "
                "overlay from ../shared/ros2 (KDMARL_ROS2_SOURCES)")
    import importlib.util

    for module in ("launch", "launch_ros", "ros2launch"):
        if importlib.util.find_spec(module) is None:
            return f"`ros2` found but Python package {module!r} is not importable"
    return ""


_MISSING = _ros2_launch_missing()
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=_MISSING or "n/a")


class Launch:
    """One ``ros2 launch`` in its own session (so a signal to its group is a terminal's Ctrl-C)."""

    def __init__(self, tmp_path: Path, *arguments: str, name: str = "launch") -> None:
        self.env = ros_env(fresh_domain_id())
        self.log_path = tmp_path / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(["ros2", "launch", "kdmarl_bringup", "swarm.launch.py", *arguments],
                                     env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=tmp_path)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, count: int = 1, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.output().count(text) < count:
            assert self.proc.poll() is None, f"launch exited ({self.proc.returncode}) before {text!r}:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {count}x {text!r} after {timeout} s:\n{self.output()[-4000:]}"
            time.sleep(0.2)

    def nodes(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def ros2(self, *args: str, until: str = "", timeout: float = 60.0) -> subprocess.CompletedProcess:
        """A ``ros2`` CLI call in the launch's domain, repeated until its output contains ``until``.

        The CLI finds nodes by discovery (through the ``ros2`` daemon of this domain, stopped by
        :meth:`close`), which takes a moment after a node appears: an engineer would simply run it again.
        """
        deadline = time.monotonic() + timeout
        while True:
            result = subprocess.run(["ros2", *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                                    check=False)
            if until in result.stdout + result.stderr or time.monotonic() > deadline:
                return result
            time.sleep(0.5)

    def interrupt_and_close(self, timeout: float = 60.0) -> None:
        """Ctrl-C (SIGINT to the launch's group), up to ``timeout`` s to finish, then :meth:`close`."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        self.close()

    def close(self) -> None:
        subprocess.run(["ros2", "daemon", "stop"], env=self.env, capture_output=True, timeout=60, check=False)
        if self.proc.poll() is None:
            for child in self.nodes():
                child.kill()
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


def _gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still alive (not zombies) after waiting up to ``timeout`` seconds."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_finite_launch_exits_by_itself_with_the_offline_returns(tmp_path: Path) -> None:
    """``episodes:=3`` ends the launch (exit 0) with returns equal to evaluate_bundle's, episode for episode."""
    log_dir = tmp_path / "swarm"
    launch = Launch(tmp_path, f"bundle:={TRAINED_BUNDLE}", "episodes:=3", "seed:=1000", f"log_dir:={log_dir}")
    try:
        assert launch.proc.wait(240) == 0, launch.output()
    finally:
        launch.close()
    out = launch.output()
    assert "Traceback" not in out and "process has died" not in out, out
    results = read_json(log_dir / "bridge_results.json")
    offline = evaluate_bundle(TRAINED_BUNDLE, [1000, 1001, 1002])
    assert [e["seed"] for e in results["episodes"]] == [1000, 1001, 1002]
    assert [e["team_return"] for e in results["episodes"]] == offline.returns.tolist()
    np.testing.assert_array_equal(np.array([e["agent_returns"] for e in results["episodes"]]), offline.agent_returns)
    assert results["missed_actions"] == 0
    summary = read_json(log_dir / "summary.json")  # the monitor heard all three and wrote its summary
    assert summary["episodes"]["team_returns"] == offline.returns.tolist()
    assert len(summary["nodes"]) == 3
    # One status line and one final table, not a redrawn live table (8 749 of 8 776 lines of one run before).
    assert out.count("kdmarl swarm —") == 1 and len(out.splitlines()) < 200, out


def test_show_args_and_bad_arguments(tmp_path: Path) -> None:
    """--show-args lists every argument; a bad value is one clear line and a non-zero exit, no traceback."""
    env = ros_env(fresh_domain_id())

    def run(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ros2", "launch", "kdmarl_bringup", "swarm.launch.py", *arguments], env=env,
                              capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)

    shown = run("--show-args")
    assert shown.returncode == 0, shown.stderr
    for name, (_, description) in LAUNCH_ARGUMENTS.items():
        assert f"'{name}':" in shown.stdout and description.split(" (")[0][:40] in shown.stdout, name
    cases = {
        "unknown backend": ((f"bundle:={TRAINED_BUNDLE}", "backend:=gazebo"),
                            "launch argument 'backend' must be one of"),
        "missing bundle": (("bundle:=/nonexistent/bundle",),
                           "/nonexistent/bundle: a bundle directory; it does not exist"),
        "no bundle": ((), "launch argument 'bundle' is required"),
        "rate out of range": ((f"bundle:={TRAINED_BUNDLE}", "rate:=0"), "launch argument 'rate' must be in"),
        "lockstep on robots": ((f"bundle:={TRAINED_BUNDLE}", "backend:=real"), "mode 'lockstep' needs backend 'mpe'"),
    }
    for label, (arguments, message) in cases.items():
        result = run(*arguments)
        text = result.stdout + result.stderr
        assert result.returncode != 0, label
        assert message in text and "Traceback" not in text, f"{label}:\n{text}"
        assert "process started" not in text, f"{label}: nodes started despite the error:\n{text}"


@pytest.mark.parametrize("how", ["sigint", "sigint_twice", "sigterm_to_launch"])
def test_stop_leaves_no_traceback_and_no_process(tmp_path: Path, how: str) -> None:
    """Ctrl-C as a terminal sends it (SIGINT to the group; once, and twice 50 ms apart), or SIGTERM to
    ``ros2 launch`` alone: every node exits, cleanly for Ctrl-C, and no process is left behind."""
    launch = Launch(tmp_path, f"bundle:={TRAINED_BUNDLE}", "backend:=fake", "mode:=realtime",
                    f"log_dir:={tmp_path / 'swarm'}")
    try:
        launch.wait_for("active (realtime)", count=3)
        nodes = launch.nodes()
        assert len(nodes) >= 10, [n.cmdline() for n in nodes]  # monitor + 3 x (fake robot, adapter, student)
        time.sleep(2.0)  # let the robots drive
        if how == "sigterm_to_launch":
            os.kill(launch.proc.pid, signal.SIGTERM)
        else:
            os.killpg(launch.proc.pid, signal.SIGINT)
            if how == "sigint_twice":
                time.sleep(0.05)
                os.killpg(launch.proc.pid, signal.SIGINT)
        code = launch.proc.wait(60)
        left = _gone(nodes, timeout=20.0)
        assert not left, f"left behind: {[p.cmdline() for p in left]}\n{launch.output()}"
    finally:
        launch.close()
    out = launch.output()
    assert "Traceback" not in out, out
    if how != "sigterm_to_launch":  # after SIGTERM launch is gone and its children's output with it
        assert code == 0, out
        assert "process has died" not in out, out
        assert out.count("shutting down (SIGINT)") >= 10, out
        assert "zero cmd_vel" in out or "monitor wrote" in out


def test_ros2_cli_on_a_running_swarm(tmp_path: Path) -> None:
    """topic list/echo/hz, param get/set with read-only and range refusals, lifecycle get/set on a student."""
    launch = Launch(tmp_path, f"bundle:={TRAINED_BUNDLE}", "mode:=realtime", "rate:=10.0",
                    f"log_dir:={tmp_path / 'swarm'}")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(launch.env["ROS_DOMAIN_ID"]))
    probe = rclpy.create_node("cli_probe", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    actions: list[AgentAction] = []
    from kdmarl_student.ros_support import ACTION_QOS

    probe.create_subscription(AgentAction, "/agent_0/action", actions.append, ACTION_QOS)

    def spin_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)

    try:
        launch.wait_for("active (realtime)", count=3)
        for topic in ("/agent_0/observation", "/agent_0/action", "/agent_0/resource_usage", "/diagnostics",
                      "/kdmarl/episode", "/clock"):
            listed = launch.ros2("topic", "list", until=topic)
            assert topic in listed.stdout.split(), listed
        echo = launch.ros2("topic", "echo", "--once", "/agent_0/action", until="agent: agent_0")
        assert echo.returncode == 0 and "action:" in echo.stdout, echo
        hz = subprocess.Popen(["ros2", "topic", "hz", "/agent_0/action"], env=launch.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
        time.sleep(6.0)
        os.killpg(hz.pid, signal.SIGINT)
        hz_out, _ = hz.communicate(timeout=30)
        assert "average rate:" in hz_out, hz_out

        node = "/agent_0/student"
        got = launch.ros2("param", "get", node, "mode", until="realtime")
        assert "String value is: realtime" in got.stdout, got
        refused = launch.ros2("param", "set", node, "bundle", "/tmp/another", until="Setting parameter failed")
        assert "read-only" in (refused.stdout + refused.stderr).lower(), refused
        out_of_range = launch.ros2("param", "set", node, "control_rate_hz", "5000.0", until="Setting parameter")
        assert "Setting parameter failed" in out_of_range.stdout + out_of_range.stderr, out_of_range
        accepted = launch.ros2("param", "set", node, "warn_throttle_s", "2.0", until="Set parameter")
        assert "Set parameter successful" in accepted.stdout, accepted
        assert "2.0" in launch.ros2("param", "get", node, "warn_throttle_s", until="2.0").stdout

        assert "active [3]" in launch.ros2("lifecycle", "get", node, until="active").stdout
        spin_for(1.0)
        assert actions, "no actions from an active student"
        done = launch.ros2("lifecycle", "set", node, "deactivate", until="Transitioning")
        assert "Transitioning successful" in done.stdout, done
        assert "inactive [2]" in launch.ros2("lifecycle", "get", node, until="inactive").stdout
        spin_for(1.0)  # in-flight messages
        actions.clear()
        spin_for(3.0)
        assert actions == [], f"{len(actions)} actions from an inactive student"
        done = launch.ros2("lifecycle", "set", node, "activate", until="Transitioning")
        assert "Transitioning successful" in done.stdout, done
        spin_for(3.0)
        assert actions, "no actions after activate"
    finally:
        executor.remove_node(probe)
        probe.destroy_node()
        rclpy.shutdown(context=context)
        launch.interrupt_and_close()
    assert "Traceback" not in launch.output(), launch.output()
