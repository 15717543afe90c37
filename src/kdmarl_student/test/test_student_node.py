"""The student node as a real process over DDS (issue 9, "tests that can fail").

Hostile observations get the safe action, are dropped or are answered from the cache, each counted under a
named reason; a model broken for some inputs gets the safe action; warnings are throttled; two deciders for
one agent turn both to ERROR until one is gone; a bad bundle gives ERROR and no actions; a double Ctrl-C
exits cleanly. Every expectation is checked against the node's own reports (AgentAction, ResourceUsage,
/diagnostics, its log), so a node without the behaviour fails. The last tests pin defects found while
writing these (a runtime throttle change crashed the node, one throttle hid every other kind of warning, a
foreign message poisoned the republish cache, refusing deciders counted actions never sent).

Each harness runs its students in a private ROS domain (discovery limited to localhost) and stops them at the
end. Observations are best effort, so a message is re-published until answered; a republish of the same
step and stamp is itself a duplicate, answered from the node's cache and never counted as a decision. No
test asserts timing: every wait is for an event, with a generous timeout.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from kdmarl_student.ros_support import ACTION_QOS, OBSERVATION_QOS, REPORT_QOS  # noqa: E402
from kdmarl_student.testing import fresh_domain_id  # noqa: E402
from rclpy.duration import Duration  # noqa: E402
from test_support_bundles import install_model, make_bundle, write_onnx_log_policy  # noqa: E402

from kdmarl_msgs.msg import AgentAction, AgentObservation, ResourceUsage  # noqa: E402

SAFE_ACTION = 0  # the manifest's safe action for MPE (no-op)
# In [0, 1]: finite logits from the MLP and from the log(obs + 1) graph alike.
GOOD = np.linspace(0.0, 1.0, 18, dtype=np.float32)
# builtin_interfaces/Time.sec is an int32: 2038-01-19 is the farthest future a stamp can name (2100 cannot be sent).
FAR_FUTURE_SEC = 2**31 - 1
TIMEOUT = 30.0  # for events that normally take milliseconds; generous for a loaded two-core machine


class Harness:
    """Student processes plus an in-process probe node, all in one private ROS domain.

    The probe records every action and ResourceUsage of the namespaces it watches and every /diagnostics
    status, each list in arrival order, so a test can ask what arrived after a given point.
    """

    def __init__(self, tmp: Path) -> None:
        self.domain = fresh_domain_id("kdmarl_student")
        self.tmp = tmp
        (tmp / "ros_log").mkdir(exist_ok=True)
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
                        ROS_DOMAIN_ID=str(self.domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                        ROS_LOG_DIR=str(tmp / "ros_log"), PYTHONUNBUFFERED="1")
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopped: set[str] = set()  # stopped on purpose: no longer expected to be alive
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain)
        self.node = rclpy.create_node("student_node_probe", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.diagnostics: list[DiagnosticStatus] = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics",
                                      lambda a: self.diagnostics.extend(a.status), REPORT_QOS)
        self.actions: dict[str, list[AgentAction]] = {}
        self.usage: dict[str, list[ResourceUsage]] = {}
        self._pubs: dict[str, Any] = {}

    # ---- processes ---------------------------------------------------------------------------------
    def start_student(self, name: str, ns: str | None = None, node_name: str | None = None, **params: Any) -> None:
        """Start a student process named ``name`` (its log file) in namespace ``ns`` (default ``name``)."""
        ns = ns or name
        args = ["-r", f"__ns:=/{ns}"] + (["-r", f"__node:={node_name}"] if node_name else [])
        for key, value in params.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ["-p", f"{key}:={text}"]
        self.watch(ns)
        with self.log_path(name).open("w") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "kdmarl_student.student_node", "--ros-args", *args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, name: str, sig: signal.Signals, times: int | None = 1, gap_s: float = 0.05,
             while_waiting: Callable[[], None] | None = None) -> int:
        """Send ``sig`` to the student's process group ``times`` times ``gap_s`` apart (a terminal's Ctrl-C
        reaches the whole group; ``ros2 launch`` forwards another a moment later), or every ``gap_s`` until it
        exits when ``times`` is None, and return its exit code."""
        proc = self.procs[name]
        self.stopped.add(name)
        sent, next_signal = 0, time.monotonic()
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            if (times is None or sent < times) and time.monotonic() >= next_signal:
                with contextlib.suppress(ProcessLookupError):  # exited since the poll
                    os.killpg(proc.pid, sig)
                sent, next_signal = sent + 1, time.monotonic() + gap_s
            if while_waiting is not None:
                while_waiting()
            self.executor.spin_once(timeout_sec=0.01)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"student {name} did not exit within {TIMEOUT} s of {sig.name}:\n{self.logs()}")
        return proc.returncode

    def log_path(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def log(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-3000:]}" for name in self.procs)

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

    # ---- topics ------------------------------------------------------------------------------------
    def watch(self, ns: str) -> None:
        """Record ``/<ns>/action`` and ``/<ns>/resource_usage``; publish on ``/<ns>/observation``."""
        if ns in self.actions:
            return
        self.actions[ns], self.usage[ns] = [], []
        self.node.create_subscription(AgentAction, f"/{ns}/action", self.actions[ns].append, ACTION_QOS)
        self.node.create_subscription(ResourceUsage, f"/{ns}/resource_usage", self.usage[ns].append, REPORT_QOS)
        self._pubs[ns] = self.node.create_publisher(AgentObservation, f"/{ns}/observation", OBSERVATION_QOS)

    def publish(self, ns: str, msg: AgentObservation) -> None:
        self._pubs[ns].publish(msg)

    def now(self, offset_s: float = 0.0) -> Time:
        """A stamp on the probe's clock (the students' clock: same machine, no sim time)."""
        return (self.node.get_clock().now() + Duration(nanoseconds=int(offset_s * 1e9))).to_msg()

    def spin_until(self, predicate: Callable[[], bool], timeout: float = TIMEOUT,
                   step: Callable[[], None] | None = None) -> bool:
        """Spin the probe (calling ``step`` each round) until ``predicate``; every student must stay alive."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if step is not None:
                step()
            self.executor.spin_once(timeout_sec=0.1)
            for name, proc in self.procs.items():
                assert name in self.stopped or proc.poll() is None, f"student {name} died:\n{self.logs()}"
        return predicate()

    def answers(self, ns: str, episode: int, step: int) -> list[AgentAction]:
        return [a for a in self.actions[ns] if a.episode == episode and a.step == step]

    def send_until_answered(self, ns: str, msg: AgentObservation, already: int = 0) -> AgentAction:
        """Re-publish ``msg`` until more than ``already`` answers for its (episode, step) arrived; the first new one."""
        def answered() -> bool:
            return len(self.answers(ns, msg.episode, msg.step)) > already

        assert self.spin_until(answered, step=lambda: self.publish(ns, msg)), \
            f"no answer on /{ns}/action for episode {msg.episode} step {msg.step}:\n{self.logs()}"
        return self.answers(ns, msg.episode, msg.step)[already]

    # ---- reports -----------------------------------------------------------------------------------
    def statuses(self, ns: str, node: str = "student", since: int = 0) -> list[DiagnosticStatus]:
        """The /diagnostics statuses of node ``/<ns>/<node>`` among those received from index ``since`` on."""
        return [s for s in self.diagnostics[since:] if s.name.endswith(f"/{ns}/{node}")]

    def settle(self, ns: str, node: str = "student", reports: int = 2) -> dict[str, str]:
        """The values of the ``reports``-th status that arrives from now on: by then everything sent before
        this call was processed (a report published just before the last decision can arrive after it, the
        next one cannot)."""
        since = len(self.diagnostics)
        assert self.spin_until(lambda: len(self.statuses(ns, node, since)) >= reports), \
            f"no /diagnostics from /{ns}/{node}:\n{self.logs()}"
        return values(self.statuses(ns, node, since)[-1])


def values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def count(report: dict[str, str], counter: str) -> int:
    """A counter of a /diagnostics status: a plain key, or ``reason:<name>`` inside ``invalid_reasons``."""
    if counter.startswith("reason:"):
        reasons = dict(item.split("=", 1) for item in report["invalid_reasons"].split(",") if item)
        return int(reasons.get(counter.removeprefix("reason:"), 0))
    return int(report[counter])


def observation(episode: int, step: int, agent: str, stamp: Time | None = None,
                data: np.ndarray | list[float] = GOOD, *, mask: list[bool] | None = None) -> AgentObservation:
    msg = AgentObservation(agent=agent, episode=episode, step=step, data=[float(x) for x in data],
                           action_mask=[bool(m) for m in mask or []])
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.close()


# ---- the corpus of hostile observations -----------------------------------------------------------------
REALTIME, LOCKSTEP = "agent_0", "agent_1"  # namespaces (= agents) of the two corpus students


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """Two long-lived students serving every corpus case: a realtime one (normal MLP) and a lockstep one whose
    model is log(obs + 1) @ W, finite for the corpus's normal data, NaN for a value below -1.

    The realtime watchdog must stay quiet during the tests (it would count stale observations), hence a large
    ``observation_timeout_s``; fast reports keep :meth:`Harness.settle` short.
    """
    tmp = tmp_path_factory.mktemp("fleet")
    bundle, _, _ = make_bundle(tmp / "bundle", seed=5)
    weights = np.random.default_rng(0).normal(size=(18, 5)).astype(np.float32)
    install_model(bundle, 1, write_onnx_log_policy(bundle / "agent_1.onnx", weights))
    h = Harness(tmp)
    try:
        h.start_student(REALTIME, bundle=str(bundle), mode="realtime", observation_timeout_s=30.0,
                        report_period_s=0.25)
        h.start_student(LOCKSTEP, bundle=str(bundle), report_period_s=0.25)
        for ns in (REALTIME, LOCKSTEP):  # both active and discovered: answered, and not with the safe action
            assert not h.send_until_answered(ns, observation(1, 0, ns, h.now())).is_safe_action, h.logs()
        yield h
    finally:
        h.close()


Build = Callable[[Harness, int, str], list[AgentObservation]]


@dataclass(frozen=True)
class Case:
    """One hostile input. ``build(harness, episode, agent)`` returns the messages: all but the last are a
    preamble, each answered before the next; the last is the attack, whose outcome is

    - ``safe``: answered with ``is_safe_action`` and the safe action, ``counter`` goes up;
    - ``dropped``: no answer for its (episode, step), ``counter`` goes up (so it was seen, not lost);
    - ``repeat``: the same answer as the preamble's, ``counter`` (duplicates) goes up, no new decision;
    - ``acted``: answered by the policy (not the safe action), no invalid or stale count.
    """

    id: str
    build: Build
    outcome: str
    counter: str = ""
    student: str = REALTIME


def _one(data: Any = GOOD, agent: str | None = None, stamp: Callable[[Harness], Time] | None = None,
         mask: list[bool] | None = None) -> Build:
    """A single message at step 0 of the case's episode (stamped now unless ``stamp`` says otherwise)."""
    def build(h: Harness, episode: int, own: str) -> list[AgentObservation]:
        when = stamp(h) if stamp is not None else h.now()
        return [observation(episode, 0, own if agent is None else agent, when, data, mask=mask)]

    return build


def _with(index: int, value: float) -> np.ndarray:
    data = GOOD.copy()
    data[index] = value
    return data


def _out_of_order(h: Harness, episode: int, own: str) -> list[AgentObservation]:
    """Step 5, then step 3 with its (older) stamp: a late message of the same episode."""
    return [observation(episode, 5, own, h.now()), observation(episode, 3, own, h.now(-1.0))]


def _republish(h: Harness, episode: int, own: str) -> list[AgentObservation]:
    msg = observation(episode, 2, own, h.now())
    return [msg, msg]


def _restarted_source(h: Harness, episode: int, own: str) -> list[AgentObservation]:
    """The step counter goes back with a newer stamp (an adapter restarted mid-episode): a new sequence."""
    return [observation(episode, 8, own, h.now(-1.0)), observation(episode, 2, own, h.now())]


def _foreign_then_own(h: Harness, episode: int, own: str) -> list[AgentObservation]:
    """A misrouted observation of another agent for the same step and stamp as ours (the simulation bridge
    stamps all agents of a step alike), then ours: ours must still be decided by the policy."""
    stamp = h.now()
    return [observation(episode, 4, "agent_2", stamp), observation(episode, 4, own, stamp)]


CASES = [
    Case("short", _one(GOOD[:5]), "safe", "reason:shape"),
    Case("long", _one([*GOOD, 0.0]), "safe", "reason:shape"),
    Case("empty", _one([]), "safe", "reason:shape"),
    Case("nan", _one(_with(17, float("nan"))), "safe", "reason:non_finite"),
    Case("inf", _one(_with(0, float("inf"))), "safe", "reason:non_finite"),
    Case("minus_inf", _one(_with(9, float("-inf"))), "safe", "reason:non_finite"),
    Case("other_agent", _one(agent="agent_2"), "safe", "reason:agent"),
    Case("no_agent", _one(agent=""), "safe", "reason:agent"),
    Case("out_of_order", _out_of_order, "dropped", "reason:out_of_order"),
    Case("out_of_order_lockstep", _out_of_order, "dropped", "reason:out_of_order", student=LOCKSTEP),
    Case("republish", _republish, "repeat", "duplicate_observations"),
    Case("republish_of_invalid", lambda h, e, a: 2 * _one(GOOD[:3])(h, e, a), "repeat", "duplicate_observations"),
    Case("restarted_source", _restarted_source, "acted"),
    Case("stamp_1970", _one(stamp=lambda h: Time(sec=1)), "safe", "stale_observations"),
    Case("stamp_before_1970", _one(stamp=lambda h: Time(sec=-(2**31))), "safe", "stale_observations"),
    Case("stamp_2038", _one(stamp=lambda h: Time(sec=FAR_FUTURE_SEC)), "safe", "reason:stamp"),
    Case("stamp_a_minute_ahead", _one(stamp=lambda h: h.now(60.0)), "safe", "reason:stamp"),
    # Lockstep: the bridge's step counter is the clock; stamps are only reported.
    Case("stamp_1970_lockstep", _one(stamp=lambda h: Time(sec=1)), "acted", student=LOCKSTEP),
    # A valid observation on which the model itself returns NaN logits (log of a negative number).
    Case("nan_logits", _one(_with(3, -2.0)), "safe", "non_finite_outputs", student=LOCKSTEP),
    Case("minus_inf_logits", _one(_with(0, -1.0)), "safe", "non_finite_outputs", student=LOCKSTEP),
    # Action masks (SMAX): one entry per action (5 here) or none; an all-false mask allows nothing.
    Case("mask_too_short", _one(mask=[True] * 4), "safe", "reason:mask"),
    Case("mask_too_long", _one(mask=[True] * 6), "safe", "reason:mask", student=LOCKSTEP),
    Case("mask_all_false", _one(mask=[False] * 5), "safe", "reason:mask"),  # issue 22: was counted as "invalid"
    Case("mask_all_true", _one(mask=[True] * 5), "acted"),
]
# Episode of each case: its own, so cases never meet through the step-order rules; the fence before a case
# is episode - 1, the one after a dropped attack episode + 1.
EPISODES = {case.id: 100 + 10 * i for i, case in enumerate(CASES)}



@pytest.mark.parametrize("case", [
    *(pytest.param(c, id=c.id) for c in CASES),
    pytest.param(Case("foreign_then_own", _foreign_then_own, "acted"), id="foreign_then_own"),
])
def test_hostile_observation_corpus(fleet: Harness, case: Case) -> None:
    """Each hostile input has exactly its documented outcome, counted under its documented name."""
    h, ns = fleet, case.student
    episode = EPISODES.get(case.id, 90_000)
    h.send_until_answered(ns, observation(episode - 1, 0, ns, h.now()))  # fence: the node is fresh and idle
    *preamble, attack = case.build(h, episode, ns)
    first: list[AgentAction] = [h.send_until_answered(ns, msg) for msg in preamble]
    before = h.settle(ns)  # after the preamble and its republished copies
    seen = len(h.answers(ns, attack.episode, attack.step))

    if case.outcome == "dropped":
        for _ in range(5):  # best effort: several copies, so a lost one cannot make the test pass vacuously
            h.publish(ns, attack)
            h.executor.spin_once(timeout_sec=0.05)
        h.send_until_answered(ns, observation(episode + 1, 0, ns, h.now()))  # same writer: after the attack
        h.spin_until(lambda: False, timeout=2.0)  # any answer to the attack would have arrived by now
        after = h.settle(ns)
        assert len(h.answers(ns, attack.episode, attack.step)) == seen, "a dropped observation was answered"
        assert count(after, case.counter) > count(before, case.counter), after
        return

    answer = h.send_until_answered(ns, attack, already=seen)
    after = h.settle(ns)
    assert (answer.agent, answer.episode, answer.step) == (ns, attack.episode, attack.step)
    if case.outcome == "safe":
        assert answer.is_safe_action and answer.action == SAFE_ACTION, answer
        assert count(after, case.counter) > count(before, case.counter), after
    elif case.outcome == "repeat":
        assert (answer.action, answer.is_safe_action) == (first[-1].action, first[-1].is_safe_action)
        assert count(after, case.counter) > count(before, case.counter), after
        assert count(after, "actions") == count(before, "actions"), "a republish was decided again"
    else:
        assert case.outcome == "acted"
        assert not answer.is_safe_action, answer
        for counter in ("invalid_observations", "stale_observations", "non_finite_outputs"):
            assert count(after, counter) == count(before, counter), (counter, after)


def test_non_finite_policy_output_gives_safe_action_and_warn(fleet: Harness) -> None:
    """NaN logits from the model (not the input) are refused: safe action, counted in ResourceUsage, WARN on
    /diagnostics, and the process goes on deciding."""
    h, ns = fleet, LOCKSTEP
    h.settle(ns)  # earlier cases may have counted some already
    since_diag, prior = len(h.diagnostics), h.usage[ns][-1].non_finite_outputs
    answer = h.send_until_answered(ns, observation(50_000, 0, ns, h.now(), _with(3, -2.0)))
    assert answer.is_safe_action and answer.action == SAFE_ACTION, answer
    assert h.spin_until(lambda: h.usage[ns][-1].non_finite_outputs > prior), h.logs()
    usage = h.usage[ns][-1]
    assert usage.safe_actions >= 1
    assert usage.flops_per_decision > 0 and usage.params > 0 and usage.rss_bytes > 0 and usage.actions >= 2

    def warned() -> bool:
        return any(s.level == DiagnosticStatus.WARN and "non-finite" in s.message
                   for s in h.statuses(ns, since=since_diag))

    assert h.spin_until(warned), h.logs()
    # In the log: throttling is per kind of warning, so an earlier warning of another kind cannot hide it.
    assert "policy output not finite" in h.log(ns)
    assert not h.send_until_answered(ns, observation(50_001, 0, ns, h.now())).is_safe_action


def test_invalid_observation_warnings_are_throttled(fleet: Harness) -> None:
    """A burst of 60+ invalid observations: every one counted, only a handful of log lines (warn_throttle_s 5 s).

    The burst goes on until its first line appeared, so a node that never logs fails too.
    """
    h, ns = fleet, REALTIME
    start_log, since_diag = len(h.log(ns)), len(h.diagnostics)
    before = h.settle(ns)

    def lines() -> int:
        return h.log(ns)[start_log:].count("invalid observation")

    started, sent = time.monotonic(), 0
    while sent < 60 or (lines() == 0 and time.monotonic() - started < 20.0):
        answer = h.send_until_answered(ns, observation(60_000, sent, ns, h.now(), GOOD[:7]))
        assert answer.is_safe_action, answer
        sent += 1
    elapsed = time.monotonic() - started
    after = h.settle(ns)
    assert count(after, "reason:shape") - count(before, "reason:shape") == sent
    assert count(after, "invalid_observations") - count(before, "invalid_observations") == sent
    assert 1 <= lines() <= 2 + elapsed / 5.0, (sent, elapsed, h.log(ns)[start_log:])
    assert any(s.level == DiagnosticStatus.WARN and "invalid observations" in s.message
               for s in h.statuses(ns, since=since_diag))


def test_a_different_refusal_is_logged_despite_the_throttle(fleet: Harness) -> None:
    """The throttle is for repeats: right after an invalid-observation warning, a broken model output (a
    different problem, needing a different fix) still gets its own line."""
    h, ns = fleet, LOCKSTEP
    start = len(h.log(ns))
    steps = itertools.count()
    h.spin_until(lambda: "invalid observation" in h.log(ns)[start:], 20.0,
                 step=lambda: h.send_until_answered(ns, observation(70_000, next(steps), ns, h.now(), GOOD[:5])))
    assert "invalid observation" in h.log(ns)[start:], h.logs()
    # The corpus's NaN-logit cases warned on this student: their own kind may repeat only after
    # warn_throttle_s (5 s), so wait that out; the invalid-observation line just written must not matter.
    last_nan = h.log(ns).rfind("policy output not finite")
    if last_nan >= 0:
        time.sleep(5.5)
    answer = h.send_until_answered(ns, observation(70_001, 0, ns, h.now(), _with(3, -2.0)))
    assert answer.is_safe_action
    assert "policy output not finite" in h.log(ns)[start:]  # written before the answer was published
    assert h.log(ns)[start:].index("invalid observation") < h.log(ns)[start:].rindex("policy output not finite")


def test_action_mask_is_obeyed_and_a_wrong_length_is_refused_by_name(fleet: Harness) -> None:
    """A one-hot mask makes the policy pick that action (never an unavailable one); a mask of the wrong length
    gets the safe action and a WARN naming the topic and the expected length."""
    h, ns = fleet, REALTIME
    for action in range(5):
        mask = [i == action for i in range(5)]
        answer = h.send_until_answered(ns, observation(80_000 + action, 0, ns, h.now(), GOOD, mask=mask))
        assert (answer.action, answer.is_safe_action) == (action, False), answer
    start = len(h.log(ns))
    steps = itertools.count()
    line = f"refused action mask on /{ns}/observation, safe action: 3 entries, expected 5"
    h.spin_until(lambda: line in h.log(ns)[start:], 20.0, step=lambda: h.send_until_answered(
        ns, observation(80_010, next(steps), ns, h.now(), GOOD, mask=[True] * 3)))
    assert line in h.log(ns)[start:], h.logs()


# ---- bundles, budgets, the watchdog ----------------------------------------------------------------------
def test_bad_bundle_reports_error_and_refuses_to_act(harness: Harness, tmp_path: Path) -> None:
    bundle, _, _ = make_bundle(tmp_path / "bundle", seed=6)
    model = bundle / "agent_0.onnx"
    model.write_bytes(model.read_bytes() + b"\0")  # a tampered model: sha256 no longer matches
    harness.start_student("agent_0", bundle=str(bundle))
    harness.start_student("agent_1", bundle=str(tmp_path / "no_such_bundle"))

    def errors(ns: str) -> list[DiagnosticStatus]:
        return [s for s in harness.statuses(ns) if s.level == DiagnosticStatus.ERROR]

    assert harness.spin_until(lambda: bool(errors("agent_0") and errors("agent_1")), 90.0), harness.logs()
    assert "sha256" in errors("agent_0")[-1].message
    assert values(errors("agent_0")[-1])["state"] == "unconfigured"
    end = time.monotonic() + 3.0
    steps = itertools.count()
    harness.spin_until(lambda: time.monotonic() > end, 10.0,
                       step=lambda: harness.publish("agent_0", observation(1, next(steps), "agent_0", harness.now())))
    assert harness.actions["agent_0"] == []  # refuses to act: no silent fallback, not even a safe action


def test_over_budget_is_a_warning_naming_the_field(harness: Harness, tmp_path: Path) -> None:
    bundle, _, _ = make_bundle(tmp_path / "bundle", seed=7, budget={"name": "tiny", "max_flops": 1})
    harness.start_student("agent_0", bundle=str(bundle))
    assert harness.spin_until(lambda: any("over budget (flops)" in s.message and s.level == DiagnosticStatus.WARN
                                          for s in harness.statuses("agent_0")), 60.0), harness.logs()
    assert harness.spin_until(lambda: bool(harness.usage["agent_0"])), harness.logs()
    assert harness.usage["agent_0"][-1].budget_exceeded == ["flops"]
    assert not harness.usage["agent_0"][-1].budget_met


def test_realtime_watchdog_answers_silence_with_safe_actions(harness: Harness, tmp_path: Path) -> None:
    """No observation at all: the realtime watchdog publishes the safe action, counted as stale, WARN."""
    bundle, _, _ = make_bundle(tmp_path / "bundle", seed=5)
    harness.start_student("agent_1", bundle=str(bundle), mode="realtime", observation_timeout_s=0.3,
                          control_rate_hz=5.0)
    actions = harness.actions["agent_1"]
    assert harness.spin_until(lambda: len(actions) >= 3), harness.logs()
    assert all(a.is_safe_action and a.action == SAFE_ACTION for a in actions)
    assert harness.spin_until(lambda: any(s.level == DiagnosticStatus.WARN and "stale" in s.message
                                          for s in harness.statuses("agent_1"))), harness.logs()
    assert harness.spin_until(lambda: any(u.stale_observations >= 3 for u in harness.usage["agent_1"]))


# ---- two deciders, stopping --------------------------------------------------------------------------------
def test_two_deciders_for_one_agent_both_refuse_until_one_is_gone(harness: Harness, tmp_path: Path) -> None:
    """Two students publishing /agent_2/action: both ERROR naming the topic and stop acting; once one is
    stopped with SIGINT, the other acts again."""
    bundle, _, _ = make_bundle(tmp_path / "bundle", seed=8)
    ns = "agent_2"
    harness.start_student("first", ns=ns, bundle=str(bundle), report_period_s=0.25)
    harness.start_student("second", ns=ns, node_name="student_twin", bundle=str(bundle), report_period_s=0.25)

    def refusing(node: str, since: int = 0) -> bool:
        return any(s.level == DiagnosticStatus.ERROR and f"/{ns}/action" in s.message and "two deciders" in s.message
                   for s in harness.statuses(ns, node, since))

    assert harness.spin_until(lambda: refusing("student") and refusing("student_twin"), 60.0), harness.logs()
    since = len(harness.diagnostics)  # both stay in ERROR and silent while both exist
    silent_from = len(harness.actions[ns])
    steps = itertools.count()
    end = time.monotonic() + 2.0
    harness.spin_until(lambda: time.monotonic() > end, 10.0,
                       step=lambda: harness.publish(ns, observation(1, next(steps), ns, harness.now())))
    assert harness.actions[ns][silent_from:] == [], "a decider acted while another one existed"
    assert refusing("student", since) and refusing("student_twin", since), harness.logs()
    assert "two deciders" in harness.log("first") and "two deciders" in harness.log("second")

    assert harness.stop("second", signal.SIGINT) == 0, harness.logs()
    answer = harness.send_until_answered(ns, observation(2, 0, ns, harness.now()))  # allow ~30 s for discovery
    assert not answer.is_safe_action, answer
    since = len(harness.diagnostics)
    assert harness.spin_until(lambda: bool(harness.statuses(ns, since=since))), harness.logs()
    assert harness.statuses(ns, since=since)[-1].level != DiagnosticStatus.ERROR


@pytest.mark.parametrize("times", [2, None], ids=["twice", "until_exit"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_repeated_stop_signal_exits_cleanly(harness: Harness, tmp_path: Path, sig: signal.Signals,
                                            times: int | None) -> None:
    """A terminal's Ctrl-C and the launcher's forwarded copy 50 ms later (or a signal every 50 ms until the
    process is gone, so one lands in the DDS teardown and in interpreter finalization), while observations
    keep arriving: exit code 0 and no traceback (signals used to land in take_message or destroy_node, and a
    late one killed the process with -2)."""
    bundle, _, _ = make_bundle(tmp_path / "bundle", seed=9)
    harness.start_student("agent_0", bundle=str(bundle))
    assert not harness.send_until_answered("agent_0", observation(1, 0, "agent_0", harness.now())).is_safe_action
    steps = itertools.count(1)
    code = harness.stop("agent_0", sig, times=times, gap_s=0.05, while_waiting=lambda: harness.publish(
        "agent_0", observation(1, next(steps), "agent_0", harness.now())))
    log = harness.log("agent_0")
    assert code == 0, log
    assert "Traceback" not in log, log


# ---- defects found while writing these tests (each failed before its fix in student_node.py) ----------------
def test_changing_warn_throttle_at_runtime_keeps_the_node_alive(harness: Harness, tmp_path: Path) -> None:
    """warn_throttle_s is a writable parameter: setting it must not turn the next warning into a crash."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    bundle, _, _ = make_bundle(tmp_path / "bundle", seed=10)
    harness.start_student("agent_0", bundle=str(bundle))
    assert harness.send_until_answered("agent_0", observation(1, 0, "agent_0", harness.now(), GOOD[:5])).is_safe_action
    client = harness.node.create_client(SetParameters, "/agent_0/student/set_parameters")
    assert client.wait_for_service(timeout_sec=TIMEOUT)
    request = SetParameters.Request(parameters=[Parameter("warn_throttle_s", value=1.0).to_parameter_msg()])
    future = client.call_async(request)
    assert harness.spin_until(future.done) and future.result().results[0].successful
    answer = harness.send_until_answered("agent_0", observation(2, 0, "agent_0", harness.now(), GOOD[:5]))
    assert answer.is_safe_action
    assert "Traceback" not in harness.log("agent_0")


def test_refusing_realtime_deciders_do_not_count_unsent_actions(harness: Harness, tmp_path: Path) -> None:
    """Two realtime deciders in ERROR publish nothing, so ResourceUsage must not count watchdog actions."""
    bundle, _, _ = make_bundle(tmp_path / "bundle", seed=11)
    ns = "agent_0"
    for name, node in (("first", None), ("second", "student_twin")):
        harness.start_student(name, ns=ns, node_name=node, bundle=str(bundle), mode="realtime",
                              observation_timeout_s=0.3, control_rate_hz=5.0, report_period_s=0.25)
    assert harness.spin_until(lambda: any(s.level == DiagnosticStatus.ERROR for s in harness.statuses(ns))), \
        harness.logs()
    harness.settle(ns)
    sent, first_usage = len(harness.actions[ns]), len(harness.usage[ns])
    assert harness.spin_until(lambda: len(harness.usage[ns]) >= first_usage + 8), harness.logs()
    assert harness.actions[ns][sent:] == [], "a decider acted while another one existed"
    usage = [u for u in harness.usage[ns][first_usage:] if u.node_name == f"/{ns}/student"]
    assert usage and usage[-1].actions == usage[0].actions, [u.actions for u in usage]


# ---- students with memory (issue 11) ------------------------------------------------------------------------
MEMORY_SENSING = {"agent_2": {"slices": ["self_vel", "landmarks"], "history": {"mode": "delta",
                                                                                "slices": ["self_pos"]}}}
MEMORY_AGENTS = {"recurrent": "agent_1", "history": "agent_2", "none": "agent_0"}


@pytest.fixture(scope="module")
def memory_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Memory probes (kdmarl_student.testing): agent_1 acts the number of decisions since its last reset mod 5,
    agent_2 moves the way its self_pos last moved (no-op at an episode start); agent_0 a stateless MLP. Every
    missed, extra or skipped reset, and every state advanced by an observation that should not, shows."""
    bundle, _, _ = make_bundle(tmp_path_factory.mktemp("memory") / "bundle", seed=12, sensing=MEMORY_SENSING,
                               recurrent={"agent_1": 4}, memory_probe=True)
    return bundle


def _trajectory(n: int, seed: int) -> np.ndarray:
    """An episode's observations: self_pos starts somewhere and moves 0.2 per step along one axis."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(0.0, 1.0, (n, 18)).astype(np.float32)
    step = np.zeros(2)
    step[seed % 2] = 0.2 if seed % 3 else -0.2
    obs[:, 2:4] = rng.uniform(-3.0, 3.0, 2) + np.arange(n)[:, None] * step
    return obs


def _fresh_actions(bundle: Path, agent: str, observations: np.ndarray) -> list[int]:
    """What a policy that starts from a reset state does on these observations (offline, same ONNX Runtime)."""
    from kdmarl_student.policy import StudentPolicy

    policy = StudentPolicy(bundle, agent)
    return [policy.act(obs) for obs in observations]


def _change_state(h: Harness, ns: str, transition: int) -> None:
    from lifecycle_msgs.srv import ChangeState

    client = h.node.create_client(ChangeState, f"/{ns}/student/change_state")
    assert client.wait_for_service(timeout_sec=TIMEOUT)
    request = ChangeState.Request()
    request.transition.id = transition
    future = client.call_async(request)
    assert h.spin_until(future.done) and future.result().success, h.logs()


@pytest.mark.parametrize("kind", list(MEMORY_AGENTS))
def test_memory_resets_on_new_episode_step_back_and_reactivate(harness: Harness, memory_bundle: Path,
                                                               kind: str) -> None:
    """The node's actions equal a fresh offline policy's after each reset event (new episode, step counter gone
    back, deactivate/activate); refused, out-of-order and republished observations leave the memory alone; each
    reset is one INFO line and counted in /diagnostics; a stateless student logs none of it."""
    from lifecycle_msgs.msg import Transition

    h, agent = harness, MEMORY_AGENTS[kind]
    h.start_student(agent, bundle=str(memory_bundle), report_period_s=0.25)
    runs = [_trajectory(8, seed) for seed in range(4)]

    def play(episode: int, first_step: int, observations: np.ndarray, hostile_at: int | None = None) -> list[int]:
        actions = []
        for i, obs in enumerate(observations):
            step = first_step + i
            if i == hostile_at:  # a refused observation, then a late one, before this step's real observation
                bad = observation(episode, step, agent, h.now(), _with(4, float("nan")))
                assert h.send_until_answered(agent, bad).is_safe_action
                for _ in range(3):
                    h.publish(agent, observation(episode, step - 2, agent, h.now(-5.0), obs))
                step += 100  # the NaN observation took this step: the real one comes as a later step
                first_step += 100
            already = len(h.answers(agent, episode, step))  # a step number may come again in a new sequence
            answer = h.send_until_answered(agent, observation(episode, step, agent, h.now(), obs), already)
            assert not answer.is_safe_action, (step, answer, h.log(agent))
            actions.append(answer.action)
        return actions

    expected = [_fresh_actions(memory_bundle, agent, run) for run in runs]
    if kind != "none":  # the probes show a missed reset: carrying the memory over changes the actions
        from kdmarl_student.policy import StudentPolicy

        carried = StudentPolicy(memory_bundle, agent)
        for run, fresh in zip(runs, expected, strict=True):
            assert [carried.act(obs) for obs in run] != fresh or run is runs[0]
    assert play(1, 0, runs[0]) == expected[0], h.logs()
    assert play(2, 0, runs[1], hostile_at=4) == expected[1], h.logs()  # new episode; NaN + late ones ignored
    assert play(2, 0, runs[2]) == expected[2], h.logs()  # the step counter went back with a newer stamp
    before_reactivate = h.settle(agent)
    _change_state(h, agent, Transition.TRANSITION_DEACTIVATE)
    _change_state(h, agent, Transition.TRANSITION_ACTIVATE)
    assert play(2, 500, runs[3]) == expected[3], h.logs()  # same episode, later steps: only activate reset
    report = h.settle(agent)
    log = h.log(agent)
    if kind == "none":
        assert "memory reset" not in log and count(report, "memory_resets") == 0, log
        assert report["memory"] == "none"
        return
    dim = {"recurrent": 4, "history": 2}[kind]
    prefix = f"{agent}: memory reset ({kind}, {dim} values): "
    assert prefix + "new episode 2" in log, log
    assert prefix + "step counter of episode 2 went back from 107 to 0" in log, log
    assert log.count(prefix + "activated") == 2, log  # at start-up and after the reactivation
    assert log.count(prefix) == 4, log
    assert count(before_reactivate, "memory_resets") == 3, before_reactivate  # activate, episode 2, step back
    assert count(report, "memory_resets") == 1, report  # counters restart at activate
    assert (report["memory"], report["memory_state_dim"]) == (kind, str(dim))


def test_memory_resets_after_a_stale_period(harness: Harness, memory_bundle: Path) -> None:
    """Realtime: once the watchdog found the input stale, the next observation starts from a reset memory.

    The probe's k-th decision after a reset is k mod 5. Counted over the decisions (not the steps): on a loaded
    machine a copy may arrive after observation_timeout_s and get the safe action, which must not count."""
    h, agent = harness, MEMORY_AGENTS["recurrent"]
    h.start_student(agent, bundle=str(memory_bundle), mode="realtime", observation_timeout_s=2.0,
                    control_rate_hz=10.0)

    def decisions(first_step: int, observations: np.ndarray) -> list[int]:
        answers = [h.send_until_answered(agent, observation(3, first_step + t, agent, h.now(), obs))
                   for t, obs in enumerate(observations)]
        return [a.action for a in answers if not a.is_safe_action]

    before = decisions(0, _trajectory(6, 20))
    assert len(before) >= 4 and before == [k % 5 for k in range(1, len(before) + 1)], before
    stale_from = len(h.actions[agent])
    assert h.spin_until(lambda: any(a.is_safe_action for a in h.actions[agent][stale_from:])), h.logs()
    after = decisions(6, _trajectory(6, 21))
    assert len(after) >= 4 and after == [k % 5 for k in range(1, len(after) + 1)], (after, h.log(agent))
    assert f"{agent}: memory reset (recurrent, 4 values): input resumed after a stale period (episode 3, step 6)" \
        in h.log(agent), h.log(agent)


# ---- issue 22: a slow model, a safe action that fits, logs that cannot flood -----------------------------------
LOAD_TIMEOUT = 180.0  # a 16 MB, 1 200-node graph takes ONNX Runtime seconds to load on a loaded machine


def _slow_bundle(tmp: Path) -> Path:
    """agent_0 runs a huge but allowed MLP (about 0.4 s per decision here; budget 1 ms)."""
    from kdmarl_student.testing import write_onnx_slow_mlp

    bundle, _, _ = make_bundle(tmp / "bundle", seed=21, budget={"name": "tiny", "max_latency_ms": 1.0})
    install_model(bundle, 0, write_onnx_slow_mlp(bundle / "agent_0.onnx", 18, 5))
    return bundle


def _level(status: DiagnosticStatus) -> int:
    return status.level[0] if isinstance(status.level, bytes) else int(status.level)


def test_slow_model_gets_safe_actions_at_the_deadline_while_reports_flow_and_sigint_ends_it(
        harness: Harness, tmp_path: Path) -> None:
    """A model far over its budget: every decision is cancelled at decision_deadline_ms and answered with the safe
    action (counted as an overrun); /diagnostics and the realtime watchdog keep publishing while a decision runs;
    SIGINT during a decision ends the process cleanly and fast. (Before issue 22 nothing was published during an
    inference and a signal waited for it to end.)"""
    h, ns = harness, "agent_0"
    # the deadline is well under the model's time: a fast machine (CI once ran it under 0.3 s) still overruns
    h.start_student(ns, bundle=str(_slow_bundle(tmp_path)), mode="realtime", observation_timeout_s=5.0,
                    decision_deadline_ms=150.0, max_overruns=1000, report_period_s=0.05)
    assert h.spin_until(lambda: any(values(s).get("state") == "active" for s in h.statuses(ns)), LOAD_TIMEOUT), \
        h.logs()

    def overruns() -> int:
        reports = h.statuses(ns)
        return count(values(reports[-1]), "deadline_overruns") if reports else 0

    for k in range(2):
        since_diag, sent = len(h.diagnostics), time.monotonic()
        answer = h.send_until_answered(ns, observation(1, k, ns, h.now()))
        took = time.monotonic() - sent
        assert answer.is_safe_action and answer.action == SAFE_ACTION, answer
        assert took < 5.0, took  # the model alone takes ~0.4 s unloaded and is cancelled at 0.15 s
        assert h.spin_until(lambda k=k: overruns() == k + 1), h.logs()
        assert len(h.statuses(ns, since=since_diag)) >= 3, h.logs()  # reports every 0.05 s during the decision
    # The realtime watchdog runs during a decision too: a short timeout makes it answer the input as stale.
    stale_before = count(h.settle(ns), "stale_observations")
    assert _set_parameter(h, ns, "observation_timeout_s", 0.05).successful  # before the 0.15 s deadline
    h.publish(ns, observation(1, 5, ns, h.now()))
    assert h.spin_until(lambda: overruns() == 3), h.logs()
    assert len(h.answers(ns, 1, 5)) >= 2, h.logs()  # the watchdog's stale answer(s) and the cancelled decision's
    assert all(a.is_safe_action for a in h.answers(ns, 1, 5))
    assert count(h.settle(ns), "stale_observations") > stale_before  # (its log line may be throttled: counted)
    assert "decision cancelled after" in h.log(ns)
    assert any(s.level == DiagnosticStatus.WARN and "over the deadline" in s.message for s in h.statuses(ns))
    # Ctrl-C while a decision runs: the process ends within the shutdown deadline, exit code 0, no traceback.
    assert _set_parameter(h, ns, "decision_deadline_ms", 60_000.0).successful  # the decision would run on
    h.publish(ns, observation(1, 10, ns, h.now()))
    time.sleep(0.15)
    started = time.monotonic()
    assert h.stop(ns, signal.SIGINT, times=1) == 0, h.log(ns)
    assert time.monotonic() - started < 5.0, h.log(ns)
    assert "Traceback" not in h.log(ns), h.log(ns)


def test_repeated_overruns_turn_the_node_to_error_and_it_stops_acting(harness: Harness, tmp_path: Path) -> None:
    h, ns = harness, "agent_0"
    h.start_student(ns, bundle=str(_slow_bundle(tmp_path)), decision_deadline_ms=100.0, max_overruns=2,
                    report_period_s=0.25)
    assert h.spin_until(lambda: any(values(s).get("state") == "active" for s in h.statuses(ns)), LOAD_TIMEOUT), \
        h.logs()
    for k in range(2):
        assert h.send_until_answered(ns, observation(1, k, ns, h.now())).is_safe_action
    assert h.spin_until(lambda: any(s.level == DiagnosticStatus.ERROR and "over the 100 ms deadline" in s.message
                                    for s in h.statuses(ns))), h.logs()
    silent_from = len(h.actions[ns])
    end = time.monotonic() + 2.0
    steps = itertools.count(2)
    h.spin_until(lambda: time.monotonic() > end, 10.0,
                 step=lambda: h.publish(ns, observation(1, next(steps), ns, h.now())))
    assert h.actions[ns][silent_from:] == [], "a node in ERROR acted"
    assert "refusing to act: 2 decisions in a row over the 100 ms deadline" in h.log(ns)


def _set_parameter(h: Harness, ns: str, name: str, value: Any) -> Any:
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    client = h.node.create_client(SetParameters, f"/{ns}/student/set_parameters")
    assert client.wait_for_service(timeout_sec=TIMEOUT)
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()]))
    assert h.spin_until(future.done), h.logs()
    return future.result().results[0]


def test_safe_action_outside_the_action_space_is_refused(harness: Harness, tmp_path: Path) -> None:
    """Issue 22: safe_action 7 on a 5-action bundle was accepted at start and at runtime (and then ignored)."""
    bundle, _, _ = make_bundle(tmp_path / "bundle", seed=22)
    harness.start_student("agent_0", bundle=str(bundle), safe_action=7)
    harness.start_student("agent_1", bundle=str(bundle))

    def refused() -> bool:
        return any(s.level == DiagnosticStatus.ERROR and "safe_action" in s.message and "[0, 4]" in s.message
                   for s in harness.statuses("agent_0"))

    assert harness.spin_until(refused), harness.logs()
    ns = "agent_1"
    assert not harness.send_until_answered(ns, observation(1, 0, ns, harness.now())).is_safe_action
    result = _set_parameter(harness, ns, "safe_action", 7)
    assert not result.successful and "[0, 4]" in result.reason, result
    assert _set_parameter(harness, ns, "safe_action", 3).successful
    answer = harness.send_until_answered(ns, observation(2, 0, ns, harness.now(), GOOD[:4]))
    assert answer.is_safe_action and answer.action == 3, answer  # applied from the next safe answer on
    assert harness.settle(ns)["safe_action"] == "3"


def test_smax_safe_answers_respect_the_mask(harness: Harness, tmp_path: Path) -> None:
    """SMAX 3m (8 actions, stop = 4 always available): a configured safe action the mask forbids is replaced by
    stop; a mask that allows neither is counted as a mask fault; an all-false mask is counted as mask."""
    from kdmarl_student.scenarios import scenario_spec

    bundle, _, _ = make_bundle(tmp_path / "smax", scenario="smax:3m", seed=23)
    ns = "ally_0"
    dim = scenario_spec("smax:3m").agents[0].obs_dim
    harness.start_student(ns, bundle=str(bundle), safe_action=0, report_period_s=0.25)
    nan = np.zeros(dim, np.float32)
    nan[0] = np.nan
    only_stop = [a == 4 for a in range(8)]
    answer = harness.send_until_answered(ns, observation(1, 0, ns, harness.now(), nan, mask=only_stop))
    assert answer.is_safe_action and answer.action == 4, answer
    before = harness.settle(ns)
    only_attack = [a == 5 for a in range(8)]
    answer = harness.send_until_answered(ns, observation(2, 0, ns, harness.now(), nan, mask=only_attack))
    assert answer.is_safe_action, answer
    after = harness.settle(ns)
    assert count(after, "reason:mask") == count(before, "reason:mask") + 1, after
    answer = harness.send_until_answered(ns, observation(3, 0, ns, harness.now(), np.zeros(dim), mask=[False] * 8))
    assert answer.is_safe_action and answer.action == 0, answer
    assert count(harness.settle(ns), "reason:mask") == count(after, "reason:mask") + 1
    allowed = [True] * 8
    allowed[0] = False
    answer = harness.send_until_answered(ns, observation(4, 0, ns, harness.now(), np.zeros(dim), mask=allowed))
    assert not answer.is_safe_action and answer.action != 0, answer


def test_a_flood_of_restarted_sequences_is_logged_a_few_times(harness: Harness, tmp_path: Path) -> None:
    """Issue 22: alternating episode counters made 3 881 unthrottled INFO lines in 5 s. Each new sequence is
    still counted (sequence_restarts), but logged at most once per warn_throttle_s."""
    bundle, _, _ = make_bundle(tmp_path / "bundle", seed=24, recurrent={"agent_0": 4})
    h, ns = harness, "agent_0"
    h.start_student(ns, bundle=str(bundle), report_period_s=0.25)
    assert not h.send_until_answered(ns, observation(1, 0, ns, h.now())).is_safe_action
    before = h.settle(ns)
    started = time.monotonic()
    for k in range(60):
        assert not h.send_until_answered(ns, observation(1 - k % 2, k + 1, ns, h.now())).is_safe_action
    elapsed = time.monotonic() - started
    after = h.settle(ns)
    log = h.log(ns)
    assert count(after, "sequence_restarts") - count(before, "sequence_restarts") == 30, after
    assert count(after, "memory_resets") - count(before, "memory_resets") == 59, after  # k = 0 stays in episode 1
    allowed = 2 + elapsed / 5.0
    assert 1 <= log.count("episode counter went back from 1 to 0: new sequence") <= allowed, log
    resets = log.count("memory reset (recurrent, 4 values): episode counter went back") + \
        log.count("memory reset (recurrent, 4 values): new episode 1")  # one kind (episode_start), one throttle
    assert 1 <= resets <= allowed, log
