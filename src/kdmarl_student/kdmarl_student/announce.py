"""``announce``: the operator's side of a fleet update (issue 23): a release becomes the team's only once every robot
has it staged, so the team switches on one episode and a team episode never mixes releases.

    ros2 run kdmarl_student announce --team simple_spread --release 2 --robots 16

After ``kdmarl publish`` (workstation), ``announce``

1. publishes a *prepare* ``kdmarl_msgs/Release`` (``cutover_episode`` 0) on ``/kdmarl/release``: every robot's
   ``updater_node`` fetches, verifies and stages the release (the lead first, it mirrors it for its followers; the
   followers retry on their ``poll_period_s``); students do not switch on a prepare;
2. waits until ``--robots`` student nodes of the team report on ``/diagnostics`` that they have it loaded
   (``staged_release``: their updater staged it and the node loaded and checked it) or run it;
3. publishes the cut-over (the *commit*): ``cutover_episode`` = the newest ``/kdmarl/episode`` summary's episode +
   ``--margin`` (or ``--cutover-episode``), latched (a robot that starts or reconnects later gets it);
4. waits for the students' answers on ``/kdmarl/release_confirm`` (:mod:`kdmarl_student.node_release`): every
   student with the release loaded confirms; each arms the swap at the decision episode (cut-over - 1) only with
   every agent's confirmation, else it aborts. Once all ``--robots`` have confirmed and the decision episode is over
   with no abort, the team switches at the cut-over, and ``announce`` holds the commit until Ctrl-C or ``--hold-s``.
   After an abort (a robot missed the commit, or cannot load the release) the team stays on its release and
   ``announce`` waits until every robot has the release loaded again, then commits a new cut-over.

If the robots have not all loaded and confirmed the release within ``--wait-s`` it exits 1: the team stays on its
release (a team never switches without every robot). A robot that comes back later catches up through the next
``announce``.
"""

from __future__ import annotations

import argparse
import sys
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from kdmarl_msgs.msg import EpisodeSummary, Release, ReleaseConfirm
from kdmarl_student.ros_support import EPISODE_QOS, REPORT_QOS, hold_for_late_joiners, init_ros, spin_while
from kdmarl_student.updater_node import CONFIRM_QOS, CONFIRM_TOPIC, RELEASE_QOS, RELEASE_TOPIC


class Announcer:
    """Watches the updaters' /diagnostics and the bridge's episodes; publishes the announcements."""

    def __init__(self, node: Node, team: str) -> None:
        self.node, self.team = node, team
        self.staged: dict[str, tuple[str, str]] = {}  # student status name -> (staged, running) release
        self.episode: int | None = None
        self.answers: dict[str, tuple[int, int, bool]] = {}  # agent -> latest (release, cut-over, abort)
        self.pub = node.create_publisher(Release, RELEASE_TOPIC, RELEASE_QOS)
        node.create_subscription(ReleaseConfirm, CONFIRM_TOPIC, self._on_answer, CONFIRM_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, REPORT_QOS)
        node.create_subscription(EpisodeSummary, "/kdmarl/episode", self._on_episode, EPISODE_QOS)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if not status.name.startswith("kdmarl_student: "):
                continue
            values = {kv.key: kv.value for kv in status.values}
            if values.get("release_team") == self.team:  # a student running from a release store (node_release)
                self.staged[status.name] = (values.get("staged_release", ""), values.get("release", ""))

    def _on_episode(self, msg: EpisodeSummary) -> None:
        self.episode = max(int(msg.episode), self.episode if self.episode is not None else -1)

    def _on_answer(self, msg: ReleaseConfirm) -> None:
        if msg.team == self.team:
            self.answers[msg.agent] = (int(msg.release), int(msg.cutover_episode), bool(msg.abort))

    def outcome(self, release: int, cutover: int, robots: int) -> str:
        """"abort" (someone aborted), "go" (all confirmed and the decision episode is over), or "" (not yet)."""
        mine = {agent: a for agent, a in self.answers.items() if a[:2] == (release, cutover)}
        if any(abort for _, _, abort in mine.values()):
            return "abort"
        decided = self.episode is None or self.episode >= cutover - 1  # summaries come at an episode's end
        return "go" if len(mine) >= robots and decided else ""

    def ready(self, release: int) -> list[str]:
        """The students that have ``release`` loaded or running."""
        return sorted(name for name, pair in self.staged.items() if str(release) in pair)

    def publish(self, release: int, supersedes: int, cutover_episode: int) -> Release:
        msg = Release(team=self.team, release=release, supersedes=supersedes, cutover_episode=cutover_episode)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(msg)
        return msg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="announce", description=__doc__.split("\n\n")[0])
    parser.add_argument("--team", required=True, help="Team (kdmarl publish --team; default there: the scenario).")
    parser.add_argument("--release", type=int, required=True, help="The release to switch the team to.")
    parser.add_argument("--supersedes", type=int, default=0, help="The release it replaces (0: not said).")
    parser.add_argument("--robots", type=int, required=True, help="Students that must report the release loaded.")
    parser.add_argument("--wait-s", type=float, default=300.0,
                        help="How long to wait for every robot to load and confirm (cut-overs retried meanwhile).")
    parser.add_argument("--margin", type=int, default=2,
                        help="Cut-over episode = the newest /kdmarl/episode episode + this.")
    parser.add_argument("--cutover-episode", type=int, default=0, help="Cut-over episode (0: from --margin).")
    parser.add_argument("--hold-s", type=float, default=0.0, help="Keep the announcement up this long (0: Ctrl-C).")
    args, ros_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    init_ros([sys.argv[0], *ros_args])
    node = rclpy.create_node("announce")
    announcer = Announcer(node, args.team)
    started = time.monotonic()
    try:
        spin_while(node, lambda: True, 1.0)  # discovery: the updaters' reports and the latched summaries
        announcer.publish(args.release, args.supersedes, 0)
        print(f"prepare: release {args.release} of {args.team} announced (no cut-over yet)", flush=True)
        spin_while(node, lambda: len(announcer.ready(args.release)) < args.robots, args.wait_s)
        ready = announcer.ready(args.release)
        print(f"{len(ready)} of {args.robots} robots have release {args.release} staged after "
              f"{time.monotonic() - started:.2f} s", flush=True)
        deadline = started + args.wait_s
        attempt, cutover = 0, 0
        while len(ready) >= args.robots:
            attempt += 1
            newest = announcer.episode if announcer.episode is not None else 0
            # A retry never re-announces a tried episode: the students' answers to it stand (an abort stays an
            # abort), and without episode summaries (newest 0) it would be the same episode again and again.
            cutover = max(args.cutover_episode if attempt == 1 and args.cutover_episode else newest + args.margin,
                          cutover + args.margin if cutover else 1)
            announcer.publish(args.release, args.supersedes, cutover)
            print(f"commit: release {args.release} of {args.team} at episode {cutover} (attempt {attempt}), waiting "
                  f"for {args.robots} confirmations", flush=True)
            spin_while(node, lambda c=cutover: not announcer.outcome(args.release, c, args.robots),
                       max(deadline - time.monotonic(), 0.0))
            outcome = announcer.outcome(args.release, cutover, args.robots)
            if outcome == "go":
                hold_for_late_joiners(node, args.hold_s, f"cut-over: release {args.release} of {args.team} from "
                                      f"episode {cutover}, confirmed by {args.robots} robots")
                return 0
            silent = sorted(a for a, ans in announcer.answers.items() if ans[:2] != (args.release, cutover))
            aborted = sorted(a for a, ans in announcer.answers.items() if ans == (args.release, cutover, True))
            print(f"cut-over at episode {cutover} {'aborted by ' + ', '.join(aborted) if aborted else 'not confirmed'}"
                  f"{' (not confirmed by ' + ', '.join(silent) + ')' if silent else ''}: the team keeps its release",
                  flush=True)
            spin_while(node, lambda: len(announcer.ready(args.release)) < args.robots,
                       max(deadline - time.monotonic(), 0.0))
            ready = announcer.ready(args.release)
            if time.monotonic() >= deadline:
                break
        missing = sorted(set(announcer.staged) - set(ready))
        print(f"no cut-over within --wait-s {args.wait_s:g} s: {len(ready)} of {args.robots} robots have release "
              f"{args.release} loaded (not: {', '.join(missing) or 'students not reporting'}); the team keeps its "
              "release", flush=True)
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
