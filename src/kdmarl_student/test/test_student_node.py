"""The student node as a real process over DDS: bad input gives safe actions and WARN, a bad bundle gives
ERROR and no actions, and the node keeps running through all of it.

Each test runs in its own ROS domain (discovery limited to localhost) and kills its processes.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from kdmarl_student.student_node import ACTION_QOS, OBSERVATION_QOS, REPORT_QOS  # noqa: E402
from test_support_bundles import make_bundle  # noqa: E402

from kdmarl_msgs.msg import AgentAction, AgentObservation, ResourceUsage  # noqa: E402

_counter = itertools.count()


class Harness:
    """Student processes plus an in-process probe node, all in one private ROS domain."""

    def __init__(self, tmp: Path) -> None:
        self.domain = 1 + (os.getpid() * 11 + next(_counter) * 17 + 50) % 100
        self.tmp = tmp
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
                        ROS_DOMAIN_ID=str(self.domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                        PYTHONUNBUFFERED="1")
        self.procs: dict[str, subprocess.Popen] = {}
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain)
        self.node = rclpy.create_node("student_node_probe", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def start_student(self, ns: str, **params: Any) -> None:
        args = []
        for key, value in params.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ["-p", f"{key}:={text}"]
        log = (self.tmp / f"{ns}.log").open("w")
        self.procs[ns] = subprocess.Popen(
            [sys.executable, "-m", "kdmarl_student.student_node", "--ros-args", "-r", f"__ns:=/{ns}", *args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def logs(self) -> str:
        return "\n".join(f"--- {ns}\n{(self.tmp / f'{ns}.log').read_text()[-3000:]}" for ns in self.procs)

    def spin_until(self, predicate: Callable[[], bool], timeout: float, step: Callable[[], None] | None = None
                   ) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if step is not None:
                step()
            self.executor.spin_once(timeout_sec=0.1)
            for ns, proc in self.procs.items():
                assert proc.poll() is None, f"student {ns} died:\n{self.logs()}"
        return predicate()

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.close()


def _statuses(arrays: list[DiagnosticArray], ns: str) -> list[DiagnosticStatus]:
    return [s for a in arrays for s in a.status if s.name.endswith(f"/{ns}/student")]


def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_malformed_and_stale_observations_give_safe_actions_and_warn(harness: Harness, tmp_path: Path) -> None:
    bundle, _, _ = make_bundle(tmp_path / "bundle", seed=5)
    harness.start_student("agent_0", bundle=str(bundle))
    harness.start_student("agent_1", bundle=str(bundle), mode="realtime", observation_timeout_s=0.3,
                          control_rate_hz=5.0)
    actions: list[AgentAction] = []
    realtime: list[AgentAction] = []
    diagnostics: list[DiagnosticArray] = []
    usage: list[ResourceUsage] = []
    node = harness.node
    node.create_subscription(AgentAction, "/agent_0/action", actions.append, ACTION_QOS)
    node.create_subscription(AgentAction, "/agent_1/action", realtime.append, ACTION_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, REPORT_QOS)
    node.create_subscription(ResourceUsage, "/agent_0/resource_usage", usage.append, REPORT_QOS)
    pub = node.create_publisher(AgentObservation, "/agent_0/observation", OBSERVATION_QOS)

    good = np.linspace(-1, 1, 18, dtype=np.float32)
    bad_inputs = [
        ("short", good[:5].tolist()),
        ("nan", [*good[:17].tolist(), float("nan")]),
        ("inf", [float("inf"), *good[1:].tolist()]),
        ("empty", []),
    ]
    cases = [*bad_inputs, ("good", good.tolist())]

    def send_all() -> None:
        for step, (_, data) in enumerate(cases):
            pub.publish(AgentObservation(agent="agent_0", episode=7, step=step, data=data))

    # Observations are best effort: re-send until every case was answered (a repeat gets the same answer).
    answered = lambda: {a.step for a in actions if a.episode == 7} >= set(range(len(cases)))  # noqa: E731
    assert harness.spin_until(answered, 120.0, step=send_all), harness.logs()
    by_step = {a.step: a for a in actions if a.episode == 7}
    for step, (label, _) in enumerate(bad_inputs):
        assert by_step[step].is_safe_action, label
        assert by_step[step].action == 0, label  # the manifest's safe action (MPE no-op)
    assert not by_step[len(bad_inputs)].is_safe_action
    pub.publish(AgentObservation(agent="agent_2", episode=8, step=0, data=good.tolist()))  # someone else's

    def warned() -> bool:
        return any(s.level == DiagnosticStatus.WARN and "invalid" in s.message
                   for s in _statuses(diagnostics, "agent_0"))

    assert harness.spin_until(warned, 30.0), harness.logs()
    assert harness.spin_until(lambda: any(u.invalid_observations >= 4 for u in usage), 30.0)
    last = usage[-1]
    assert last.flops_per_decision > 0 and last.params > 0 and last.rss_bytes > 0 and last.actions >= 5
    # Realtime student with no observation at all: the watchdog publishes the safe action, counted as stale.
    assert harness.spin_until(lambda: len(realtime) >= 3, 30.0), harness.logs()
    assert all(a.is_safe_action and a.action == 0 for a in realtime)
    assert harness.spin_until(lambda: any(s.level == DiagnosticStatus.WARN and "stale" in s.message
                                          for s in _statuses(diagnostics, "agent_1")), 30.0)
    assert all(p.poll() is None for p in harness.procs.values()), harness.logs()


def test_bad_bundle_reports_error_and_refuses_to_act(harness: Harness, tmp_path: Path) -> None:
    bundle, _, _ = make_bundle(tmp_path / "bundle", seed=6)
    model = bundle / "agent_0.onnx"
    model.write_bytes(model.read_bytes() + b"\0")  # a tampered model: sha256 no longer matches
    harness.start_student("agent_0", bundle=str(bundle))
    harness.start_student("agent_1", bundle=str(tmp_path / "no_such_bundle"))
    actions: list[AgentAction] = []
    diagnostics: list[DiagnosticArray] = []
    harness.node.create_subscription(AgentAction, "/agent_0/action", actions.append, ACTION_QOS)
    harness.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, REPORT_QOS)
    pub = harness.node.create_publisher(AgentObservation, "/agent_0/observation", OBSERVATION_QOS)

    def errors(ns: str) -> list[DiagnosticStatus]:
        return [s for s in _statuses(diagnostics, ns) if s.level == DiagnosticStatus.ERROR]

    assert harness.spin_until(lambda: errors("agent_0") and errors("agent_1"), 90.0), harness.logs()
    assert "sha256" in errors("agent_0")[-1].message
    assert _values(errors("agent_0")[-1])["state"] == "unconfigured"
    good = np.zeros(18, dtype=np.float32).tolist()
    end = time.monotonic() + 3.0
    harness.spin_until(lambda: time.monotonic() > end,
                       10.0, step=lambda: pub.publish(AgentObservation(agent="agent_0", data=good)))
    assert actions == []  # refuses to act: no silent fallback, not even a safe action
    assert all(p.poll() is None for p in harness.procs.values())


def test_over_budget_is_a_warning(harness: Harness, tmp_path: Path) -> None:
    bundle, _, _ = make_bundle(tmp_path / "bundle", seed=7, budget={"name": "tiny", "max_flops": 1})
    harness.start_student("agent_0", bundle=str(bundle))
    diagnostics: list[DiagnosticArray] = []
    harness.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, REPORT_QOS)
    assert harness.spin_until(lambda: any("over budget" in s.message and s.level == DiagnosticStatus.WARN
                                          for s in _statuses(diagnostics, "agent_0")), 60.0), harness.logs()
