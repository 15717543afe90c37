"""``updater_node``: one per robot, next to its student: keeps the robot's releases up to date with TUF (issue 23).

Topics::

    /kdmarl/release   kdmarl_msgs/Release               in   (transient local) a team release and its cut-over
    /diagnostics      diagnostic_msgs/DiagnosticArray  out  ~1 Hz: current / staged / previous release, the last
                                                            check, the last refusal (ERROR), a freeze (WARN)

On an announcement for its team (and every ``poll_period_s`` if > 0) the node runs
:meth:`kdmarl_student.fleet_update.FleetUpdater.check` in a worker thread (never on the executor: a download
must not delay diagnostics), so the release is verified and staged under ``state_dir/releases``. The student
node switches to it at the announced cut-over (:class:`kdmarl_student.release_slot.ReleaseSlot`). A lead
(``mirror: true``) keeps a byte-exact mirror and, with ``serve_port`` > 0, serves it to its followers.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from kdmarl_msgs.msg import Release
from kdmarl_student.fleet_update import FleetUpdater, UpdateResult
from kdmarl_student.ros_support import REPORT_QOS, descriptor, diagnostic_status, init_ros, spin_node, steady_clock

RELEASE_TOPIC = "/kdmarl/release"
CONFIRM_TOPIC = "/kdmarl/release_confirm"  # students' confirmations and aborts of a cut-over (node_release)
RELEASE_QOS = QoSProfile(  # the last announcement reaches robots that start or reconnect late
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

# Reading the confirmations: one unkeyed topic, so the reader's history is shared by every writer; deep enough for
# a whole team's latched answers arriving at once (a writer keeps only its latest: RELEASE_QOS).
CONFIRM_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=256, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


class UpdaterNode(Node):
    """Announcements and polling in, verified releases staged on disk, health out."""

    def __init__(self, node_name: str = "updater", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        agent = str(self._param("agent")) or self.get_namespace().rstrip("/").rsplit("/", 1)[-1]
        budget = {k: float(self._param(k)) for k in ("max_flops", "max_params", "max_memory_bytes")
                  if float(self._param(k)) > 0}
        self.updater = FleetUpdater(
            self._param("state_dir"), self._param("repository_url"), self._param("team"), agent,
            trusted_root=self._param("trusted_root"), bundle_public_key=self._param("bundle_public_key"),
            device_budget=budget, mirror=bool(self._param("mirror")) or int(self._param("serve_port")) > 0,
            max_check_seconds=float(self._param("max_check_seconds")))
        self.agent = agent
        self._server = None
        if int(self._param("serve_port")) > 0:
            self._serve(str(self._param("serve_host")), int(self._param("serve_port")))
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._again = False
        self.last: UpdateResult | None = None
        self.announced: Release | None = None
        self._steady = steady_clock()
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", REPORT_QOS)
        self.create_subscription(Release, RELEASE_TOPIC, self._on_release, RELEASE_QOS)
        self.create_timer(float(self._param("report_period_s")), self._report, clock=self._steady)
        poll = float(self._param("poll_period_s"))
        if poll > 0:
            self.create_timer(poll, self._schedule, clock=self._steady)
        self._schedule()  # one check at start-up

    def _declare_parameters(self) -> None:
        ro = {"read_only": True}
        for name, default, text in (
            ("state_dir", "", "Update state directory (tuf/, releases/, mirror/); the student's bundle is "
             "state_dir/releases/current."),
            ("repository_url", "", "Base URL of the TUF repository (workstation) or of the lead's mirror."),
            ("team", "", "Team name the releases are published under (kdmarl publish --team)."),
            ("agent", "", "This robot's agent; empty = the last component of the namespace."),
            ("trusted_root", "", "The repository's 1.root.json, installed with the robot."),
            ("bundle_public_key", "", "ed25519 public key (PEM) every bundle must be signed with."),
            ("serve_host", "0.0.0.0", "Lead: address its mirror is served on."),
        ):
            self.declare_parameter(name, default, descriptor(text, **ro))
        self.declare_parameter("mirror", False, descriptor("Lead: keep a byte-exact mirror for followers.", **ro))
        self.declare_parameter("serve_port", 0, descriptor("Lead: serve the mirror on this port (0: do not serve).",
                                                           int_range=(0, 65535), **ro))
        self.declare_parameter("poll_period_s", 0.0, descriptor(
            "Check the repository this often besides announcements (0: announcements only).",
            float_range=(0.0, 86400.0), **ro))
        for name in ("max_flops", "max_params", "max_memory_bytes"):
            self.declare_parameter(name, 0.0, descriptor(f"This device's {name} (0: unbounded); a release over it "
                                                         "is refused.", float_range=(0.0, 1e18), **ro))
        self.declare_parameter("max_check_seconds", 300.0, descriptor(
            "A check (all its downloads) taking longer is refused: slow retrieval.", float_range=(1.0, 86400.0), **ro))
        self.declare_parameter("report_period_s", 1.0, descriptor("Period of /diagnostics (steady clock).",
                                                                  float_range=(0.05, 60.0), **ro))
        for name in ("state_dir", "repository_url", "team", "trusted_root", "bundle_public_key"):
            if not str(self._param(name)):
                raise ValueError(f"updater_node: parameter '{name}' is required")

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _serve(self, host: str, port: int) -> None:
        from kdmarl_student.fleet_serve import make_server  # noqa: PLC0415

        assert self.updater.mirror_dir is not None
        (self.updater.mirror_dir / "metadata").mkdir(parents=True, exist_ok=True)
        self._server = make_server(self.updater.mirror_dir, host, port)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.get_logger().info(f"serving the mirror at http://{host}:{self._server.server_address[1]}")

    # ------------------------------------------------------------------------------------- updates
    def _on_release(self, msg: Release) -> None:
        if msg.team != self.updater.team:
            return
        self.announced = msg
        self.get_logger().info(f"release {msg.release} of {msg.team} announced, cut-over at episode "
                               f"{msg.cutover_episode}")
        self._schedule()

    def _schedule(self) -> None:
        with self._lock:
            if self._worker is not None and self._worker.is_alive():
                self._again = True  # one more check after this one: the announcement may be newer than it
                return
            self._worker = threading.Thread(target=self._run, daemon=True)
            self._worker.start()

    def _run(self) -> None:
        while True:
            result = self.updater.check()
            self.last = result
            if result.status == "staged":
                self.get_logger().info(f"release {result.release} staged ({result.bytes_received} bytes)")
            elif result.status == "frozen":
                self.get_logger().warning(result.reason)
            elif result.status == "refused":
                self.get_logger().error(f"release refused: {result.reason}")
            with self._lock:
                if not self._again:
                    return
                self._again = False

    # ------------------------------------------------------------------------------------- health
    def _report(self) -> None:
        state = self.updater.state()
        pointers = state.get("pointers", {})
        refusal = state.get("last_refusal") or {}
        last = self.last
        values = {
            "team": self.updater.team, "current_release": pointers.get("current"),
            "staged_release": pointers.get("staged"), "previous_release": pointers.get("previous"),
            "announced_release": None if self.announced is None else self.announced.release,
            "cutover_episode": None if self.announced is None else self.announced.cutover_episode,
            "last_check": None if last is None else last.status,
            "last_check_bytes": None if last is None else last.bytes_received,
            "last_refusal": refusal.get("reason", ""), "repository_url": self.updater.url,
        }
        level, message = DiagnosticStatus.OK, f"release {pointers.get('current')}"
        if last is not None and last.status == "frozen":
            level, message = DiagnosticStatus.WARN, f"frozen: {last.reason}"
        elif last is not None and last.status == "refused":
            level, message = DiagnosticStatus.ERROR, f"refused: {last.reason}"
        elif pointers.get("staged") is not None:
            message += f", release {pointers.get('staged')} staged"
        status = diagnostic_status(level, f"{self.get_fully_qualified_name()}: updater", message, self.agent, values)
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._worker is not None:
            self._worker.join(timeout=5.0)


def main(argv: list[str] | None = None) -> None:
    init_ros(sys.argv if argv is None else argv)
    node = UpdaterNode()
    spin_node(node, on_shutdown=node.shutdown)


if __name__ == "__main__":
    main()

__all__ = ["RELEASE_QOS", "RELEASE_TOPIC", "UpdaterNode", "main"]
