"""Resource monitor: every student's ResourceUsage, /diagnostics and the episode summaries, live and on disk.

It finds ``ResourceUsage`` topics by type (``kdmarl_msgs/msg/ResourceUsage``, any namespace) every
``discovery_period_s``, so it needs no list of robots and sees students that start late. While running it
shows a live table (rich) of each node's latency, CPU, RSS, FLOPs against budget, counters and misses
(``live: true``, or ``auto`` when stdout is a terminal; the swarm launch file and runner set ``false``, since a
redrawn table floods a launch log) and otherwise logs one status line every ``status_period_s``; it appends
CSV rows either way. A node that stops reporting for ``stale_after_s`` turns STALE (its last figures are
kept but no longer shown as current health), and is logged once. At shutdown it prints a summary,
writes ``summary.json`` and a PNG of per-node latency and CPU over time. With ``record_mcap`` it records
everything it receives to ``run.mcap`` (ros2msg schemas, CDR payloads: what rosbag2's MCAP storage writes),
which Foxglove and ``ros2 bag`` open.

With ``bundle`` set it also watches the envelope (issue 25, :mod:`kdmarl_bringup.envelope_watch`): once a
second it compares each student's observation delay, decision latency and dropped observations, and the
agents missing, with the conditions the bundle's envelope was measured under, and publishes its verdict on
``/diagnostics`` as ``kdmarl_monitor: envelope`` (WARN naming the condition and the figure).

It is not on the control path: the swarm runs the same without it.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from kdmarl_student.ros_support import (
    EPISODE_QOS,
    REPORT_QOS,
    descriptor,
    diagnostic_status,
    init_ros,
    spin_node,
    steady_clock,
)
from rclpy.node import Node
from rclpy.serialization import serialize_message

from kdmarl_bringup.envelope_watch import WARN, EnvelopeWatch, live_from_values
from kdmarl_msgs.msg import EpisodeSummary, ResourceUsage

USAGE_TYPE = "kdmarl_msgs/msg/ResourceUsage"
LEVELS = {DiagnosticStatus.OK: "OK", DiagnosticStatus.WARN: "WARN", DiagnosticStatus.ERROR: "ERROR",
          DiagnosticStatus.STALE: "STALE"}
USAGE_FIELDS = ("latency_p50_ms", "latency_p99_ms", "latency_max_ms", "cpu_percent", "rss_bytes",
                "flops_per_decision", "params", "budget_name", "budget_flops", "budget_met", "budget_exceeded",
                "actions", "safe_actions", "invalid_observations", "stale_observations", "non_finite_outputs")
_BUILTIN = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
            "int64", "uint64", "string", "wstring"}


def ros2msg_definition(type_name: str) -> str:
    """Full ros2msg text of ``pkg/msg/Name`` with every dependency appended (the MCAP ros2msg schema format)."""
    from ament_index_python.packages import get_package_share_directory  # noqa: PLC0415  only for MCAP

    def read(pkg: str, name: str) -> str:
        return (Path(get_package_share_directory(pkg)) / "msg" / f"{name}.msg").read_text()

    pkg, _, name = type_name.split("/")
    main = read(pkg, name)
    seen: list[tuple[str, str]] = []
    queue = [(pkg, main)]
    while queue:
        current_pkg, text = queue.pop(0)
        for raw in text.splitlines():
            tokens = raw.split("#", 1)[0].split()
            if len(tokens) < 2:
                continue
            field_type = re.sub(r"<=\d+$", "", re.sub(r"\[.*\]$", "", tokens[0]))
            if field_type in _BUILTIN:  # constants are always of builtin types
                continue
            if "/" in field_type:
                key = (field_type.split("/")[0], field_type.split("/")[-1])
            elif field_type == "Header":
                key = ("std_msgs", "Header")
            else:
                key = (current_pkg, field_type)
            if key not in seen:
                seen.append(key)
                queue.append((key[0], read(*key)))
    parts = [main]
    for dep_pkg, dep_name in seen:
        parts.append("=" * 80 + f"\nMSG: {dep_pkg}/{dep_name}\n" + read(dep_pkg, dep_name))
    return "\n".join(parts)


def budget_verdict(msg: ResourceUsage) -> str:
    """`` OVER latency`` (naming each exceeded field) or ``""``: FLOPs that fit must not read as OVER."""
    if msg.budget_met:
        return ""
    return " OVER " + ",".join(msg.budget_exceeded) if msg.budget_exceeded else " OVER"


def _csv(value: Any) -> Any:
    """CSV cell of a message field: sequences (budget_exceeded) as ``a;b``."""
    return ";".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value


class McapRecorder:
    """Raw MCAP writer: one ros2msg schema and cdr channel per topic, payloads from rclpy's serializer."""

    def __init__(self, path: Path) -> None:
        from mcap.writer import Writer  # noqa: PLC0415  optional dependency (mcap-ros2-support)

        self._file = path.open("wb")
        self._writer = Writer(self._file)
        self._writer.start(profile="ros2", library="kdmarl monitor")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}

    def write(self, topic: str, type_name: str, msg: Any) -> None:
        if type_name not in self._schemas:
            self._schemas[type_name] = self._writer.register_schema(
                name=type_name, encoding="ros2msg", data=ros2msg_definition(type_name).encode())
        if topic not in self._channels:
            self._channels[topic] = self._writer.register_channel(
                topic=topic, message_encoding="cdr", schema_id=self._schemas[type_name])
        now = time.time_ns()
        self._writer.add_message(self._channels[topic], log_time=now, data=serialize_message(msg),
                                 publish_time=now)

    def close(self) -> None:
        self._writer.finish()
        self._file.close()


class Monitor(Node):
    """Collects, shows and records the swarm's health and resources."""

    def __init__(self) -> None:
        super().__init__("monitor")
        self.declare_parameter("log_dir", "log/swarm", descriptor(
            "Directory for resource_usage.csv, episodes.csv, summary.json, resources.png, run.mcap.",
            read_only=True))
        self.declare_parameter("live", "auto", descriptor(
            "Live rich table: auto (when stdout is a terminal), true, false.", read_only=True))
        self.declare_parameter("record_mcap", False, descriptor("Record everything received to run.mcap.",
                                                                read_only=True))
        self.declare_parameter("discovery_period_s", 1.0, descriptor(
            "How often to look for new ResourceUsage topics.", read_only=True, float_range=(0.1, 60.0)))
        self.declare_parameter("stale_after_s", 3.0, descriptor(
            "A node (ResourceUsage topic or /diagnostics status) silent for this long is STALE.",
            float_range=(0.1, 3600.0)))
        self.declare_parameter("status_period_s", 10.0, descriptor(
            "Without the live table: log one status line this often (0 = never).", float_range=(0.0, 3600.0)))
        self._init_envelope_watch()
        self.log_dir = Path(str(self.get_parameter("log_dir").value))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self.usage: dict[str, list[tuple[float, ResourceUsage]]] = {}
        self._steady = steady_clock()
        self.heard: dict[str, float] = {}  # topic or diagnostic name -> steady seconds of the last message
        self.stale: set[str] = set()
        self.episodes: list[EpisodeSummary] = []
        self.diagnostics: dict[str, DiagnosticStatus] = {}
        self.diag_counts: dict[str, dict[str, int]] = {}
        self.usage_subs: dict[str, Any] = {}
        self.recorder = McapRecorder(self.log_dir / "run.mcap") if self.get_parameter("record_mcap").value else None
        self._usage_csv = (self.log_dir / "resource_usage.csv").open("w", newline="")
        self._usage_writer = csv.writer(self._usage_csv)
        self._usage_writer.writerow(["time_s", "topic", "agent", "node", *USAGE_FIELDS])
        self._episode_csv = (self.log_dir / "episodes.csv").open("w", newline="")
        self._episode_writer = csv.writer(self._episode_csv)
        self._episode_writer.writerow(["time_s", "episode", "seed", "steps", "team_return", "agent_returns",
                                       "missed_actions", "metrics"])
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, REPORT_QOS)
        self.create_subscription(EpisodeSummary, "/kdmarl/episode", self._on_episode, EPISODE_QOS)
        self.create_timer(float(self.get_parameter("discovery_period_s").value), self._discover,
                          clock=steady_clock())
        self.create_timer(1.0, self._check_stale, clock=self._steady)
        live = str(self.get_parameter("live").value).lower()
        self.live = None
        status_period = float(self.get_parameter("status_period_s").value)
        if live == "true" or (live == "auto" and sys.stdout.isatty()):
            from rich.live import Live  # noqa: PLC0415  only for terminals

            self.live = Live(self.table(), refresh_per_second=2, transient=False)
            self.live.start()
            self.create_timer(0.5, lambda: self.live.update(self.table()), clock=steady_clock())
        elif status_period > 0:
            self.create_timer(status_period, self._log_status, clock=steady_clock())

    # ---- envelope watch (issue 25): a bounded piece, all of it here and in envelope_watch.py -------------
    ENVELOPE_STATUS = "kdmarl_monitor: envelope"

    def _init_envelope_watch(self) -> None:
        self.declare_parameter("bundle", "", descriptor(
            "Bundle whose envelope the live swarm is compared with ('' = no envelope watch).", read_only=True))
        self.declare_parameter("envelope_min_retention", 0.8, descriptor(
            "WARN when the envelope predicts less retention than this at the live conditions.",
            float_range=(0.0, 1.0)))
        self.declare_parameter("envelope_grace_s", 5.0, descriptor(
            "Agents not heard this long after start count as missing.", float_range=(0.0, 3600.0)))
        self.envelope_watch: EnvelopeWatch | None = None
        self.envelope_verdict: tuple[int, str] | None = None
        bundle = str(self.get_parameter("bundle").value)
        if not bundle:
            return
        from kdmarl_student.manifest import load_manifest  # noqa: PLC0415  only with a bundle

        manifest = load_manifest(bundle)
        self.envelope_watch = EnvelopeWatch(manifest.data, bundle,
                                            float(self.get_parameter("envelope_min_retention").value))
        if not self.envelope_watch.active:
            self.get_logger().warning(f"{bundle}: no envelope in its manifest: the live conditions are not compared")
        self._envelope_pub = self.create_publisher(DiagnosticArray, "/diagnostics", REPORT_QOS)
        self._envelope_started = time.monotonic()
        self.create_timer(1.0, self._check_envelope, clock=steady_clock())

    def _check_envelope(self) -> None:
        watch = self.envelope_watch
        assert watch is not None
        live = {}
        grace = time.monotonic() - self._envelope_started < float(self.get_parameter("envelope_grace_s").value)
        for name, status in self.diagnostics.items():
            if name == self.ENVELOPE_STATUS or status.hardware_id not in watch.agents:
                continue
            values = {kv.key: kv.value for kv in status.values}
            live[status.hardware_id] = live_from_values(values, present=name not in self.stale)
        if self.episodes:  # lockstep: the bridge's missed actions per step are observations that did not arrive
            last = self.episodes[-1]
            for agent, missed in zip(watch.agents, last.missed_actions, strict=False):
                if agent in live and last.steps:
                    live[agent].drop_rate = max(live[agent].drop_rate or 0.0, float(missed) / float(last.steps))
        if grace:  # not heard yet is not missing yet
            for agent in watch.agents:
                live.setdefault(agent, live_from_values({}))
        level, message, values = watch.check(live)
        if self.envelope_verdict is None or self.envelope_verdict[0] != level:
            if level == WARN:  # two call sites: rclpy refuses one call site logging at two severities
                self.get_logger().warning(f"envelope: {message}")
            else:
                self.get_logger().info(f"envelope: {message}")
        self.envelope_verdict = (level, message)
        status = diagnostic_status(DiagnosticStatus.WARN if level == WARN else DiagnosticStatus.OK,
                                   self.ENVELOPE_STATUS, message, "monitor", values)
        self._envelope_pub.publish(DiagnosticArray(status=[status]))

    # ---- input -------------------------------------------------------------------------------------
    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if USAGE_TYPE in types and topic not in self.usage_subs:
                self.usage_subs[topic] = self.create_subscription(
                    ResourceUsage, topic, lambda m, t=topic: self._on_usage(t, m), REPORT_QOS)

    def _now(self) -> float:
        return self._steady.now().nanoseconds / 1e9

    def _heard(self, key: str) -> None:
        self.heard[key] = self._now()
        if key in self.stale:
            self.stale.discard(key)
            self.get_logger().info(f"{key}: reporting again")

    def _check_stale(self) -> None:
        """Mark every topic or diagnostic that went silent for ``stale_after_s`` STALE (logged once)."""
        limit, now = float(self.get_parameter("stale_after_s").value), self._now()
        for key, last in self.heard.items():
            if key not in self.stale and now - last > limit:
                self.stale.add(key)
                self.get_logger().warning(f"{key}: silent for {now - last:.1f} s, STALE (node dead or hung?)")

    def health(self, topic: str) -> str:
        """OK / WARN / ERROR from the node's last diagnostic, STALE when it (or its reports) went silent."""
        node = self.usage[topic][-1][1].node_name if self.usage.get(topic) else topic.rsplit("/", 1)[0]
        name = next((n for n in self.diagnostics if n.endswith(node)), None)
        if topic in self.stale or (name is not None and name in self.stale):
            return "STALE"
        return "" if name is None else LEVELS.get(self.diagnostics[name].level, "?")

    def release(self, topic: str) -> str:
        """The fleet release the student runs (``release`` of its /diagnostics, node_release; "" without one)."""
        node = self.usage[topic][-1][1].node_name if self.usage.get(topic) else topic.rsplit("/", 1)[0]
        name = next((n for n in self.diagnostics if n.endswith(node)), None)
        values = {} if name is None else {kv.key: kv.value for kv in self.diagnostics[name].values}
        return "" if values.get("release") in (None, "None") else values["release"]

    def _log_status(self) -> None:
        counts: dict[str, int] = {}
        for topic in self.usage:
            level = self.health(topic) or "?"
            counts[level] = counts.get(level, 0) + 1
        health = ", ".join(f"{n} {level}" for level, n in sorted(counts.items())) or "none heard yet"
        line = f"{len(self.usage)} students ({health}); {len(self.episodes)} episodes"
        if self.episodes:
            last = self.episodes[-1]
            line += f", last team return {last.team_return:.3f}, missed {int(sum(last.missed_actions))}"
        self.get_logger().info(line)

    def _on_usage(self, topic: str, msg: ResourceUsage) -> None:
        t = time.time() - self.started
        self._heard(topic)
        self.usage.setdefault(topic, []).append((t, msg))
        self._usage_writer.writerow([f"{t:.3f}", topic, msg.agent, msg.node_name,
                                     *(_csv(getattr(msg, f)) for f in USAGE_FIELDS)])
        self._usage_csv.flush()
        if self.recorder is not None:
            self.recorder.write(topic, USAGE_TYPE, msg)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self._heard(status.name)
            self.diagnostics[status.name] = status
            counts = self.diag_counts.setdefault(status.name, {})
            level = LEVELS.get(status.level, str(status.level))
            counts[level] = counts.get(level, 0) + 1
        if self.recorder is not None:
            self.recorder.write("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", msg)

    def _on_episode(self, msg: EpisodeSummary) -> None:
        self.episodes.append(msg)
        metrics = dict(zip(msg.metric_names, msg.metric_values, strict=False))
        self._episode_writer.writerow([f"{time.time() - self.started:.3f}", msg.episode, msg.seed, msg.steps,
                                       repr(msg.team_return), json.dumps(list(msg.agent_returns)),
                                       json.dumps(list(msg.missed_actions)), json.dumps(metrics)])
        self._episode_csv.flush()
        if self.recorder is not None:
            self.recorder.write("/kdmarl/episode", "kdmarl_msgs/msg/EpisodeSummary", msg)

    # ---- output ------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        nodes = {}
        for topic, series in sorted(self.usage.items()):
            last = series[-1][1]
            cpu = [m.cpu_percent for _, m in series]
            nodes[topic] = {
                "agent": last.agent, "node": last.node_name, "reports": len(series),
                "latency_p50_ms": last.latency_p50_ms, "latency_p99_ms": last.latency_p99_ms,
                "cpu_percent_mean": float(np.mean(cpu)), "rss_mb_max": max(m.rss_bytes for _, m in series) / 2**20,
                "flops_per_decision": last.flops_per_decision, "budget": last.budget_name,
                "budget_flops": last.budget_flops, "budget_met": last.budget_met,
                "budget_exceeded": list(last.budget_exceeded), "actions": last.actions,
                "safe_actions": last.safe_actions, "invalid_observations": last.invalid_observations,
                "stale_observations": last.stale_observations, "non_finite_outputs": last.non_finite_outputs,
                "health": self.health(topic), "release": self.release(topic),
                "last_report_age_s": self._now() - self.heard[topic] if topic in self.heard else None,
            }
        returns = [e.team_return for e in self.episodes]
        return {
            "duration_s": time.time() - self.started,
            "nodes": nodes,
            "episodes": {
                "count": len(self.episodes),
                "mean_team_return": float(np.mean(returns)) if returns else None,
                "team_returns": returns,
                "seeds": [e.seed for e in self.episodes],
                "missed_actions": int(sum(sum(e.missed_actions) for e in self.episodes)),
                "mixed_release_episodes": sum(bool(e.mixed_releases) for e in self.episodes),
            },
            "diagnostics": {name: {"last": "STALE" if name in self.stale else LEVELS.get(s.level, str(s.level)),
                                   "message": s.message, "counts": self.diag_counts.get(name, {})}
                            for name, s in sorted(self.diagnostics.items())},
        }

    def table(self) -> Any:
        from rich.table import Table  # noqa: PLC0415

        table = Table(title=f"kdmarl swarm — {len(self.episodes)} episodes")
        for col in ("node", "p50 ms", "p99 ms", "CPU %", "RSS MB", "FLOPs / budget", "actions", "safe",
                    "invalid", "stale", "release", "health"):
            table.add_column(col, justify="right" if col != "node" else "left")
        for topic, series in sorted(self.usage.items()):
            m = series[-1][1]
            budget = f"{m.flops_per_decision} / {m.budget_flops or '-'}" + budget_verdict(m)
            table.add_row(topic.rsplit("/", 1)[0] or "/", f"{m.latency_p50_ms:.3f}", f"{m.latency_p99_ms:.3f}",
                          f"{m.cpu_percent:.1f}", f"{m.rss_bytes / 2**20:.1f}", budget, str(m.actions),
                          str(m.safe_actions), str(m.invalid_observations), str(m.stale_observations),
                          self.release(topic) or "-", self.health(topic))
        if self.episodes:
            last = self.episodes[-1]
            table.caption = (f"last episode {last.episode} (seed {last.seed}): team return {last.team_return:.3f}, "
                             f"missed {sum(last.missed_actions)}")
        return table

    def plot(self, path: Path) -> None:
        import matplotlib  # noqa: PLC0415  only at shutdown

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        fig, (ax_lat, ax_cpu) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        for topic, series in sorted(self.usage.items()):
            t = [s for s, _ in series]
            ax_lat.plot(t, [m.latency_p50_ms for _, m in series], label=f"{topic} p50")
            ax_lat.plot(t, [m.latency_p99_ms for _, m in series], linestyle="--", label=f"{topic} p99")
            ax_cpu.plot(t, [m.cpu_percent for _, m in series], label=topic)
        ax_lat.set_ylabel("inference latency (ms)")
        ax_cpu.set_ylabel("CPU (% of one core)")
        ax_cpu.set_xlabel("time since monitor start (s)")
        for ax in (ax_lat, ax_cpu):
            ax.grid(alpha=0.3)
            if self.usage:
                ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def finish(self) -> None:
        """Summary to stdout and summary.json, PNG, close CSV and MCAP."""
        if self.live is not None:
            self.live.stop()
        summary = self.summary()
        (self.log_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        try:
            self.plot(self.log_dir / "resources.png")
        except Exception as err:  # a plotting problem must not lose the summary
            self.get_logger().warning(f"could not draw resources.png: {err}")
        from rich.console import Console  # noqa: PLC0415

        # 120 columns when not a terminal (a launch log, a pipe): rich's 80-column default truncates every cell.
        (Console() if sys.stdout.isatty() else Console(width=120)).print(self.table())
        eps = summary["episodes"]
        if eps["count"]:
            print(f"episodes: {eps['count']}, mean team return {eps['mean_team_return']:.4f}, "
                  f"missed actions {eps['missed_actions']}")
        for name, diag in summary["diagnostics"].items():
            print(f"{diag['last']:5s} {name}: {diag['message']}")
        print(f"monitor wrote {self.log_dir}/summary.json, resources.png, resource_usage.csv, episodes.csv")
        self._usage_csv.close()
        self._episode_csv.close()
        if self.recorder is not None:
            self.recorder.close()


def main(argv: list[str] | None = None) -> None:
    init_ros(sys.argv if argv is None else argv)
    node = Monitor()
    spin_node(node, on_shutdown=node.finish)


if __name__ == "__main__":
    main()
