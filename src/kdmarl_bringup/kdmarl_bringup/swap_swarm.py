"""A lockstep swarm switched from release 1 to release 2 while it runs, over DDS (issue 23): the fast test and
``bench/bench_fleet_update.py --swarm``.

Everything is a real process or a real server: the workstation's TUF repository served over HTTP on 127.0.0.1
(:func:`kdmarl_student.fleet_serve.serving`), one ``updater_node`` per robot (robot 0 the lead: it updates from the
workstation and serves its mirror; the others follow the lead), one ``student_node`` per robot running from its
release store (``release_state_dir``), the ``sim_bridge`` stepping mpe2 simple_spread in lockstep, and the
operator's ``announce`` (prepare, wait for every student to have the release loaded, cut-over). :class:`SwapProbe`
is the outside observer: episode summaries (returns, misses, per-agent releases, mixed flag), the first policy
action of each release per robot (wall time), and the updaters' ``/diagnostics`` (bytes of the check that staged
each release). ``offline``: that follower's updater is stopped before the publish, and ``announce`` is told to wait
for the others only (``--robots n-1``): its student cannot load release 2 and never confirms the first cut-over,
so every student aborts it and the team stays on release 1 through it; the updater is started again once the
abort is seen, the robot loads release 2 and confirms late, and ``announce``'s next cut-over moves the whole team.

``processes`` is the tests' ``conftest.Processes`` (``start``, ``log``, ``stop``, ``procs``).
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from kdmarl_student.fleet_repo import init_repository, publish_bundle
from kdmarl_student.fleet_serve import serving
from kdmarl_student.release_store import ReleaseStore
from kdmarl_student.ros_support import ACTION_QOS, EPISODE_QOS, REPORT_QOS
from kdmarl_student.signing import generate_keypair, load_private_key, sign_bundle
from rclpy.executors import SingleThreadedExecutor

from kdmarl_bringup.testing import make_bundle
from kdmarl_msgs.msg import AgentAction, EpisodeSummary

TEAM = "simple_spread"  # kdmarl publish's default team: the scenario name
LOCKSTEP_DEADLINE_MS = 2000.0


@dataclass(frozen=True)
class Releases:
    pub: Path
    r1: Path
    r2: Path
    repo: Path
    keys: Path


def make_releases(root: Path, n: int, *, hidden_2: int = 16) -> Releases:
    """Two signed n-agent bundles (other weights; release 2's hidden width ``hidden_2``) and a TUF repository (2-of-3
    targets keys) holding release 1."""
    generate_keypair(root / "bundle.key", root / "bundle.pub")
    bundles = []
    for seed in (1, 2):
        bundle = make_bundle(root / f"r{seed}", seed=seed, N=n, hidden=16 if seed == 1 else hidden_2)
        (bundle / "teacher_actor.onnx").unlink()  # robots never need it
        sign_bundle(bundle, load_private_key(root / "bundle.key"))
        bundles.append(bundle)
    repo, keys = root / "repo", root / "keys"
    init_repository(repo, keys, targets_keys=3, targets_threshold=2)
    publish_bundle(repo, keys, bundles[0], public_key=root / "bundle.pub")
    return Releases(root / "bundle.pub", bundles[0], bundles[1], repo, keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SwapProbe:
    """The observer (see the module docstring)."""

    def __init__(self, node: Any, n: int) -> None:
        self.node, self.agents = node, [f"agent_{i}" for i in range(n)]
        self.summaries: dict[int, EpisodeSummary] = {}
        self.first_action: dict[str, dict[int, float]] = {a: {} for a in self.agents}  # release -> wall time
        self.safe_answers: dict[str, int] = dict.fromkeys(self.agents, 0)
        self.staged_bytes: dict[str, dict[int, int]] = {}  # updater -> release -> bytes of the check that staged it
        self.status: dict[str, tuple[int, dict[str, str]]] = {}  # diagnostics name -> (level, latest values)
        node.create_subscription(EpisodeSummary, "/kdmarl/episode",
                                 lambda m: self.summaries.__setitem__(int(m.episode), m), EPISODE_QOS)
        for a in self.agents:
            node.create_subscription(AgentAction, f"/{a}/action", lambda m, a=a: self._on_action(a, m), ACTION_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, REPORT_QOS)
        self.executor = SingleThreadedExecutor(context=node.context)
        self.executor.add_node(node)

    def _on_action(self, agent: str, msg: AgentAction) -> None:
        if msg.is_safe_action:
            self.safe_answers[agent] += 1
        else:
            self.first_action[agent].setdefault(int(msg.release), time.time())

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.status[status.name] = (int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
                                        else int(status.level), {kv.key: kv.value for kv in status.values})
            if status.name.endswith(": updater"):
                values = {kv.key: kv.value for kv in status.values}
                staged, size = values.get("staged_release", ""), values.get("last_check_bytes", "")
                if staged.isdigit() and size.isdigit() and values.get("last_check") == "staged":
                    self.staged_bytes.setdefault(status.hardware_id, {}).setdefault(int(staged), int(size))

    def spin(self, until: Any, timeout: float, processes: Any = None, alive: tuple[str, ...] = ()) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until():
                return True
            self.executor.spin_once(timeout_sec=0.05)
            for name in alive:
                if processes.procs[name].poll() is not None:
                    raise RuntimeError(f"process {name} exited:\n{processes.log(name)[-3000:]}")
        return bool(until())

    def newest_episode(self) -> int:
        return max(self.summaries, default=-1)


def start_updater(processes: Any, rel: Releases, work: Path, i: int, *, url: str, lead_port: int,
                  **params: Any) -> None:
    """Robot ``i``'s updater_node (robot 0 the lead, mirroring; the others follow it); ``params``: e.g. a budget."""
    lead = i == 0
    processes.start(f"updater_{i}", "kdmarl_student.updater_node", ros_args=["-r", f"__ns:=/agent_{i}"], params={
        "state_dir": str(work / f"robot_{i}"), "team": TEAM, "trusted_root": str(rel.repo / "metadata" / "1.root.json"),
        "bundle_public_key": str(rel.pub), "report_period_s": 0.25, "poll_period_s": 0.0 if lead else 0.5,
        "repository_url": url if lead else f"http://127.0.0.1:{lead_port}", "mirror": lead,
        "serve_port": lead_port if lead else 0, "serve_host": "127.0.0.1", **params})


def start_swarm(processes: Any, probe: SwapProbe, rel: Releases, work: Path, n: int, *, url: str, lead_port: int,
                timeout: float, updater_params: dict[int, dict[str, Any]] | None = None) -> tuple[str, ...]:
    """Updaters (release 1 staged), students, the lockstep bridge; two episodes done. The processes to keep alive."""
    for i in range(n):
        start_updater(processes, rel, work, i, url=url, lead_port=lead_port, **(updater_params or {}).get(i, {}))
    assert probe.spin(lambda: all(ReleaseStore(work / f"robot_{i}" / "releases").pointer("staged") == 1
                                  for i in range(n)), timeout), processes.logs()
    for i in range(n):
        processes.start(f"student_{i}", "kdmarl_student.student_node", ros_args=["-r", f"__ns:=/agent_{i}"],
                        params={"release_state_dir": str(work / f"robot_{i}"), "public_key": str(rel.pub),
                                "require_signature": True, "report_period_s": 0.25,
                                # lockstep: a decision preempted on a loaded machine waits instead of being cancelled
                                # at the default 100 ms and answered safe (seen at 108 ms: that episode is then no
                                # longer the offline evaluation the tests compare with)
                                "decision_deadline_ms": LOCKSTEP_DEADLINE_MS})
    processes.start("bridge", "kdmarl_bringup.sim_bridge", params={
        "bundle": str(rel.r1), "episodes": 0, "seed": 1000, "action_timeout_s": 60.0,
        "wait_for_students_s": timeout,
        "results_file": str(work / "bridge.json"), "episode_subscribers": 1})
    alive = ("bridge", *(f"student_{i}" for i in range(n)))
    assert probe.spin(lambda: len(probe.summaries) >= 2, timeout, processes, alive), processes.logs()
    return alive


def episode_rows(probe: SwapProbe) -> list[dict[str, Any]]:
    """The bridge's episode summaries so far, in order, as plain values."""
    return [{"episode": int(s.episode), "seed": int(s.seed), "agent_returns": list(s.agent_returns),
             "missed_actions": list(s.missed_actions), "releases": list(s.releases),
             "mixed_releases": bool(s.mixed_releases)} for s in (probe.summaries[e] for e in sorted(probe.summaries))]


def run_swap(processes: Any, node: Any, rel: Releases, work: Path, n: int, *, offline: int | None = None,
             margin: int = 20, after: int = 3, timeout: float = 300.0,
             acting: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Run the swarm on release 1, publish and announce release 2, run ``after`` episodes on it; the figures.

    ``acting``: the robots that must be seen acting on release 2 (default all; a test of a revert leaves one out).
    """
    probe = SwapProbe(node, n)
    lead_port = free_port()
    acting_agents = [probe.agents[i] for i in (range(n) if acting is None else acting)]
    with serving(rel.repo) as url:
        alive = start_swarm(processes, probe, rel, work, n, url=url, lead_port=lead_port, timeout=timeout)
        if offline is not None:
            processes.stop(f"updater_{offline}")  # the follower is out of reach: it cannot stage release 2
        published = time.time()
        publish_bundle(rel.repo, rel.keys, rel.r2, public_key=rel.pub)
        online = n - (offline is not None)
        processes.start("announce", "kdmarl_student.announce", "--team", TEAM, "--release", "2", "--supersedes", "1",
                        "--robots", str(online), "--margin", str(margin), "--wait-s", str(timeout))
        aborted_cutover = None
        if offline is not None:  # nobody switches at a cut-over one robot never confirmed
            assert probe.spin(lambda: "aborted by" in processes.log("announce"), timeout, processes, alive), \
                processes.logs()
            aborted_cutover = int(re.search(r"cut-over at episode (\d+) aborted", processes.log("announce")).group(1))
            assert probe.spin(lambda: probe.newest_episode() >= aborted_cutover, timeout, processes, alive), \
                processes.logs()
            start_updater(processes, rel, work, offline, url=url, lead_port=lead_port)  # back: it confirms late
        assert probe.spin(lambda: "cut-over:" in processes.log("announce"), timeout, processes, alive), \
            processes.logs()
        cutover = int(re.search(r"cut-over: .* from episode (\d+)", processes.log("announce")).group(1))
        assert probe.spin(lambda: all(2 in probe.first_action[a] for a in acting_agents)
                          and probe.newest_episode() >= cutover + after, timeout, processes, alive), processes.logs()
        all_acting = max(probe.first_action[a][2] for a in acting_agents)
        processes.stop("bridge")
        processes.stop("announce")
    return {
        "robots": n, "cutover_episode": cutover, "offline_robot": offline, "aborted_cutover_episode": aborted_cutover,
        "publish_to_all_acting_s": all_acting - published,
        "first_release_2_action_s": {a: t[2] - published for a, t in probe.first_action.items() if 2 in t},
        "episodes": episode_rows(probe),
        "status": probe.status,
        "safe_answers": dict(probe.safe_answers),
        "staged_bytes": probe.staged_bytes,
        "stores": {i: {p: ReleaseStore(work / f"robot_{i}" / "releases").pointer(p)
                       for p in ("current", "previous", "staged")} for i in range(n)},
    }


__all__ = ["Releases", "SwapProbe", "episode_rows", "make_releases", "run_swap", "start_swarm", "start_updater"]
