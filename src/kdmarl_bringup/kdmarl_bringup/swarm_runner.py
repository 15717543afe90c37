"""``kdmarl-swarm``: start a swarm as processes, for machines without the ``ros2`` CLI and launch_ros.

It starts exactly the node specs ``swarm.launch.py`` starts (both come from
:func:`kdmarl_bringup.swarm_spec.build`), each as ``python -m <module> --ros-args ...`` with the same params
file plus a generated per-node overrides file, in its own process group, logging to ``<log_dir>/logs``.

- With ``--episodes N`` (mpe backend) it waits for the bridge to finish N episodes, shuts everything down,
  and prints the monitor's summary and the over-ROS returns next to the offline ``evaluate_bundle`` returns
  on the same seeds (exit 1 if a node failed, or with ``--expect-equal`` if they differ).
- Otherwise it runs until SIGINT/SIGTERM, which it forwards: the bridge stops first, then students,
  adapters and robots (adapters send a zero Twist), the monitor last so it records everything; a node
  that ignores SIGINT for ``--grace`` seconds gets SIGTERM, then SIGKILL.
- The bridge's exit ends the run whenever it happens; it is judged like the launch file judges it
  (``swarm_spec.bridge_problem``): fewer episodes than asked, a non-zero exit, or any exit with
  ``--episodes 0`` is a failure (exit 1), with the bridge's last error line. A node that dies is reported
  when it dies. Every node is tied to the runner (``kdmarl_student.lifetime.die_with_parent``), so even
  ``kill -9`` of the runner leaves no node behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from kdmarl_student.lifetime import die_with_parent

from kdmarl_bringup.discovery import swarm_discovery_env
from kdmarl_bringup.swarm_spec import (
    LAUNCH_ARGUMENTS,
    NodeSpec,
    SwarmArgs,
    bridge_problem,
    build,
    read_manifest,
)

STOP_ORDER = ("bridge", "student", "updater", "adapter", "robot", "monitor")


def node_command(spec: NodeSpec, params_file: str, overrides_file: Path, python: str = sys.executable) -> list[str]:
    """The command line that starts one node spec as a process (what launch_ros does for a Node action)."""
    cmd = [python, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        cmd += ["-r", f"__ns:=/{spec.namespace}"]
    return [*cmd, "--params-file", params_file, "--params-file", str(overrides_file)]


def write_overrides(spec: NodeSpec, directory: Path) -> Path:
    """The launch file's per-node ``parameters=[{...}]`` as a params YAML keyed by the node's full name."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (spec.fqn.strip("/").replace("/", "__") + ".yaml")
    path.write_text(yaml.safe_dump({spec.fqn: {"ros__parameters": spec.parameters}}, sort_keys=True))
    return path


class Swarm:
    """The running processes of one swarm."""

    def __init__(self, args: SwarmArgs, specs: list[NodeSpec], params_file: str, log_dir: Path) -> None:
        self.args, self.specs, self.params_file, self.log_dir = args, specs, params_file, log_dir
        self.procs: list[tuple[NodeSpec, subprocess.Popen]] = []
        self.stopping = False
        self.reported_dead: set[int] = set()

    def start(self) -> None:
        logs = self.log_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.update(swarm_discovery_env(env))  # LOCALHOST past 32 processes (kdmarl_bringup.discovery)
        for spec in self.specs:
            cmd = node_command(spec, self.params_file, write_overrides(spec, self.log_dir / "params"))
            log = self.log_path(spec).open("w")
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=die_with_parent)  # noqa: PLW1509  the runner has one thread
            self.procs.append((spec, proc))
            print(f"started {spec.fqn} (pid {proc.pid})", flush=True)

    def bridge(self) -> subprocess.Popen | None:
        return next((p for s, p in self.procs if s.role == "bridge"), None)

    def log_path(self, spec: NodeSpec) -> Path:
        return self.log_dir / "logs" / (spec.fqn.strip("/").replace("/", "__") + ".log")

    def wait(self, timeout: float) -> bool:
        """Until the bridge exits, a signal, or the timeout; False on timeout or a failed bridge."""
        bridge = self.bridge()
        deadline = None if timeout <= 0 else time.monotonic() + timeout
        while not self.stopping:
            self.report_deaths()
            if bridge is not None and bridge.poll() is not None:
                spec = next(s for s, p in self.procs if p is bridge)
                problem = bridge_problem(bridge.returncode, self.args.episodes, spec.parameters["results_file"])
                if problem:
                    print(f"kdmarl-swarm: {problem}{last_error(self.log_path(spec))}", file=sys.stderr)
                return not problem
            if deadline is not None and time.monotonic() > deadline:
                print(f"timeout after {timeout} s", file=sys.stderr)
                return False
            time.sleep(0.2)
        return True

    def report_deaths(self) -> None:
        """Say so, once, when a node other than the bridge exits while the swarm should be running."""
        for spec, proc in self.procs:
            if spec.role != "bridge" and proc.poll() is not None and proc.pid not in self.reported_dead:
                self.reported_dead.add(proc.pid)
                print(f"kdmarl-swarm: {spec.fqn} exited with {proc.returncode} while running"
                      f"{last_error(self.log_path(spec))}", file=sys.stderr, flush=True)

    def drain(self, timeout: float) -> None:
        """Give the monitor time to have heard every student's ResourceUsage (it reports at 1 Hz and finds
        topics by discovery), so a short run still ends with a complete summary."""
        csv_path = self.log_dir / "resource_usage.csv"
        wanted = {f"{s.fqn.rsplit('/', 1)[0]}/resource_usage" for s, p in self.procs
                  if s.role == "student" and p.poll() is None}
        if not any(s.role == "monitor" for s, _ in self.procs):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping:
            seen = set()
            if csv_path.is_file():
                seen = {line.split(",")[1] for line in csv_path.read_text().splitlines()[1:] if "," in line}
            if wanted <= seen:
                return
            time.sleep(0.2)

    def stop(self, grace: float) -> None:
        for role in STOP_ORDER:
            stop_process_groups([p for s, p in self.procs if s.role == role], grace)

    def failures(self) -> list[str]:
        """Nodes that exited with a non-zero code (a node stopped by the runner exits 0)."""
        return [f"{s.fqn} exited with {p.returncode}" for s, p in self.procs if p.returncode not in (0, None)]


def last_error(log: Path) -> str:
    """``": <last ERROR line>"`` of a node's log, or ``""``: the reason, next to the exit code."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line]
    except OSError:
        return ""
    return f": {lines[-1].strip()}" if lines else ""


def _signal(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop_process_groups(procs: list[subprocess.Popen], grace: float, term_wait: float = 2.0) -> None:
    """Stop processes started with ``start_new_session=True`` the way a ROS node wants to be stopped:
    SIGINT to every group at once (so they shut down in parallel), then per process SIGTERM after ``grace``
    seconds and SIGKILL after ``term_wait`` more. Used by the runner, the ROS tests and the benchmarks."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        _signal(proc, signal.SIGINT)
    for proc in running:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGTERM)
            try:
                proc.wait(term_wait)
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.wait()


def report(args: SwarmArgs, log_dir: Path, compare_offline: bool) -> bool | None:
    """Print the monitor summary and over-ROS vs offline returns; True/False = returns equal, None = n/a."""
    summary_path, results_path = log_dir / "summary.json", log_dir / "bridge_results.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        print("\nmonitor summary")
        print(f"  {'node':<28} {'p50 ms':>8} {'p99 ms':>8} {'CPU %':>7} {'RSS MB':>7} {'FLOPs':>9} {'budget':>14} "
              f"{'actions':>8} {'safe':>5} {'invalid':>7} {'stale':>5} {'health':>6}")
        for topic, n in summary["nodes"].items():
            over = n.get("budget_exceeded") or []
            budget = "met" if n["budget_met"] else "OVER " + ",".join(over) if over else "OVER"
            print(f"  {topic:<28} {n['latency_p50_ms']:8.3f} {n['latency_p99_ms']:8.3f} {n['cpu_percent_mean']:7.1f} "
                  f"{n['rss_mb_max']:7.1f} {n['flops_per_decision']:9d} {budget:>14} "
                  f"{n['actions']:8d} {n['safe_actions']:5d} {n['invalid_observations']:7d} "
                  f"{n['stale_observations']:5d} {n.get('health', ''):>6}")
        for name, diag in summary["diagnostics"].items():
            print(f"  {diag['last']:<5} {name}: {diag['message']}")
    if not results_path.is_file():
        return None
    results = json.loads(results_path.read_text())
    episodes = results["episodes"]
    print(f"\nover ROS: {len(episodes)} episodes, {results['missed_actions']} missed actions, obs->action p50 "
          f"{results['obs_to_action_ms']['p50']} ms, p99 {results['obs_to_action_ms']['p99']} ms")
    offline: list[float] | None = None
    if compare_offline and episodes and args.mode == "lockstep":
        from kdmarl_student.bundle_eval import evaluate_bundle  # noqa: PLC0415  only when comparing

        offline = evaluate_bundle(args.bundle, [e["seed"] for e in episodes]).returns.tolist()
    print(f"  {'seed':>6} {'team return (ROS)':>20} {'offline':>20} {'equal':>6} {'misses':>6}")
    for i, e in enumerate(episodes):
        off = "" if offline is None else f"{offline[i]:20.12f}"
        eq = "" if offline is None else ("yes" if offline[i] == e["team_return"] else "NO")
        print(f"  {e['seed']:>6} {e['team_return']:20.12f} {off:>20} {eq:>6} {sum(e['missed_actions']):>6}")
    if episodes:
        mean = sum(e["team_return"] for e in episodes) / len(episodes)
        line = f"  mean team return over ROS {mean:.6f}"
        if offline is not None:
            line += f", offline {sum(offline) / len(offline):.6f}"
        print(line)
    if offline is None:
        return None
    return all(o == e["team_return"] for o, e in zip(offline, episodes, strict=True))


def report_finished(args: SwarmArgs, log_dir: Path, ns: argparse.Namespace) -> int:
    """``--report-only``: the summary and offline comparison of a run that something else started."""
    problem = bridge_problem(0, args.episodes, log_dir / "bridge_results.json") if args.episodes else ""
    if problem:
        print(f"kdmarl-swarm: {problem}", file=sys.stderr)
        return 1
    equal = report(args, log_dir, compare_offline=not ns.no_compare_offline)
    if ns.expect_equal and equal is not True:
        print("kdmarl-swarm: over-ROS returns differ from the offline returns", file=sys.stderr)
        return 1
    return 0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kdmarl-swarm", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for name, (default, help_text) in LAUNCH_ARGUMENTS.items():
        flag = "--" + name.replace("_", "-")
        if name in ("monitor", "record_mcap"):
            parser.add_argument(flag, default=default, choices=["true", "false"], help=help_text)
        else:
            parser.add_argument(flag, default=default, required=name == "bundle", help=help_text)
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for every node.")
    parser.add_argument("--timeout", type=float, default=0.0, help="Give up after this many seconds (0 = never).")
    parser.add_argument("--grace", type=float, default=10.0, help="Seconds a node gets to exit after SIGINT.")
    parser.add_argument("--drain", type=float, default=10.0,
                        help="At the end, wait up to this long for the monitor to hear every student.")
    parser.add_argument("--no-compare-offline", action="store_true",
                        help="Do not run evaluate_bundle on the same seeds for comparison.")
    parser.add_argument("--expect-equal", action="store_true",
                        help="Exit 1 unless over-ROS returns equal the offline ones exactly.")
    parser.add_argument("--report-only", action="store_true",
                        help="Start nothing: report the finished run in --log-dir (e.g. one run with ros2 launch).")
    return parser.parse_args(argv)


def scenario_name(bundle: str | Path) -> str:
    """The bundle's scenario (``simple_spread``, ``smax:3m``, ...), for the start line."""
    return str(read_manifest(bundle).get("scenario", {}).get("name", "?"))


def main(argv: list[str] | None = None) -> int:
    ns = parse(argv)
    values: dict[str, Any] = {name: getattr(ns, name) for name in LAUNCH_ARGUMENTS}
    try:
        args, specs, params_file = build(values)
    except ValueError as err:
        print(f"kdmarl-swarm: {err}", file=sys.stderr)
        return 2
    if ns.domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(ns.domain_id)
    log_dir = Path(args.log_dir).resolve()
    if ns.report_only:
        return report_finished(args, log_dir, ns)
    swarm = Swarm(args, specs, params_file, log_dir)

    def on_signal(signum: int, frame: Any) -> None:
        swarm.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # backend "mpe" is the simulation bridge, whatever the bundle's scenario (an MPE task, a SMAX or GRF battle)
    backend = f"mpe (simulation bridge: {scenario_name(args.bundle)})" if args.backend == "mpe" else args.backend
    print(f"kdmarl-swarm: backend {backend}, mode {args.mode}, {len(specs)} nodes, logs in {log_dir}/logs",
          flush=True)
    swarm.start()
    ok = swarm.wait(ns.timeout)
    swarm.drain(ns.drain)
    swarm.stop(ns.grace)
    failures = swarm.failures()
    for failure in failures:
        print(f"kdmarl-swarm: {failure} (see {log_dir}/logs)", file=sys.stderr)
    equal = report(args, log_dir, compare_offline=not ns.no_compare_offline)
    if ns.expect_equal and equal is not True:
        print("kdmarl-swarm: over-ROS returns differ from the offline returns", file=sys.stderr)
        return 1
    return 0 if ok and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
