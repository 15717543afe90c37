"""The student node's hot swap between fleet releases (issue 23 item 3), a mixin of the student node.

With the parameter ``release_state_dir`` set (the ``state_dir`` of the robot's ``updater_node``), the node runs from
the robot's :class:`~kdmarl_student.release_store.ReleaseStore` (``<release_state_dir>/releases``) instead of the
``bundle`` parameter:

- *configure*: if ``current`` is not set but a release is staged (first boot), it is promoted; the
  :class:`~kdmarl_student.release_slot.ReleaseSlot` starts on ``current`` (every check of a bundle load), and
  reverts when a new release's p99 decision latency exceeds the budget's ``max_latency_ms``.
- ``/kdmarl/release`` (``kdmarl_msgs/Release``, :data:`kdmarl_student.updater_node.RELEASE_QOS`, latched): the latest
  announcement for the node's team (``release_team``; empty = the running bundle's scenario name, the default of
  ``kdmarl publish --team``) is kept. ``cutover_episode`` 0 is a *prepare* announcement (updaters fetch and stage,
  students load but do not switch), see :mod:`kdmarl_student.announce`.
- the confirmed cut-over (``/kdmarl/release_confirm``, ``kdmarl_msgs/ReleaseConfirm``): a student with the announced
  release loaded confirms ``(release, cutover_episode)``. At its first decision of episode ``cutover_episode - 1``
  (the decision episode) it arms the swap only if it holds the confirmation of every agent of the team; otherwise
  it publishes an abort and keeps its release. An abort received before the cut-over disarms a robot that had
  armed. So one robot that never confirms (it missed the announcement, or cannot load the release) keeps the whole
  team on its release; ``announce`` then announces a new cut-over once every robot has it loaded. A robot whose
  first decision is already past the decision episode (it joined late) follows the team: it switches only if every
  other agent confirmed and none aborted.
- the report job (the node's supervisor thread, never the executor): when the announced release is the store's
  ``staged`` one and the slot has not loaded it, it is staged into the slot (loaded and checked now; a failure
  goes to ``/diagnostics`` as ``stage_error`` and is not retried for that release); queued pointer changes are
  written (:meth:`ReleaseSlot.sync_store`); the slot's status joins ``/diagnostics`` (``staged_release``: what
  ``announce`` waits for; WARN after a revert).
- the decision: :meth:`ReleaseSlot.act` (the swap happens at step 0 of the cut-over episode, inside that decision,
  with a reset memory; no disk, no load). From a cut-over the team went through, a robot whose running release is
  not the announced one (it reverted, or joined late) answers with the safe action (``behind_release_answers``)
  and publishes no policy action, so a team episode never mixes releases; it switches at the first episode start
  after it has the release loaded.

Every ``AgentAction`` carries ``release`` (the running release; 0 without a release store), which the sim bridge
uses to count mixed-release episodes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kdmarl_msgs.msg import AgentObservation, Release
    from kdmarl_student.policy import StudentPolicy
    from kdmarl_student.release_slot import ReleaseSlot


NOT_YET = 2**32  # the slot's cut-over episode for a release loaded but not (or no longer) armed


class ReleaseHandling:
    """The student node's release slot and announcements (a mixin; see the module docstring)."""

    def _init_releases(self) -> None:
        self._slot: ReleaseSlot | None = None
        self._release_team = ""
        self._announced: Release | None = None
        self._release_sub = None
        self._stage_error = ""
        self._refused_releases: set[int] = set()
        self._release_number = 0  # the running release, in every AgentAction (0: no release store)
        self._confirm_pub = None
        self._team_agents: tuple[str, ...] = ()
        self._confirms: dict[str, tuple[int, int, bool]] = {}  # agent -> its latest (release, cut-over, abort)
        self._confirmed: tuple[int, int] | None = None  # the (release, cut-over) this robot confirmed
        self._decisions: dict[tuple[int, int], str] = {}  # (release, cut-over) -> "go" | "abort"

    def _open_release_slot(self, agent: str, load: Any) -> StudentPolicy:
        """Configure from ``<release_state_dir>/releases``: the slot's running policy (raises on any failure)."""
        # Imported here: a node without releases never loads the updater's modules.
        from kdmarl_msgs.msg import Release, ReleaseConfirm  # noqa: PLC0415
        from kdmarl_student.release_slot import ReleaseSlot  # noqa: PLC0415
        from kdmarl_student.release_store import ReleaseStore  # noqa: PLC0415
        from kdmarl_student.updater_node import (  # noqa: PLC0415
            CONFIRM_QOS,
            CONFIRM_TOPIC,
            RELEASE_QOS,
            RELEASE_TOPIC,
        )

        root = Path(str(self._param("release_state_dir"))) / "releases"
        store = ReleaseStore(root)
        waited = time.monotonic() + float(self._param("release_wait_s"))  # the updater's first check, at launch
        while store.pointer("current") is None and store.pointer("staged") is None and time.monotonic() < waited:
            time.sleep(0.1)
        if store.pointer("current") is None:
            if store.pointer("staged") is None:
                raise FileNotFoundError(f"parameter release_state_dir: {root} has no current and no staged release "
                                        "(the robot's updater_node has not staged one yet)")
            store.promote()  # first boot: the updater staged the team's release, nobody runs one yet
        slot = ReleaseSlot(agent, loader=lambda path: load(str(path)), store=store)
        slot.start_from_store()
        latency = (slot.policy.spec.budget or {}).get("max_latency_ms")
        slot.max_latency_ms = float(latency) if latency else None
        self._release_team = str(self._param("release_team")) or str(slot.policy.manifest.scenario["name"])
        self._team_agents = tuple(slot.policy.manifest.agent_names)
        self._slot, self._release_number = slot, int(slot.release or 0)
        if self._release_sub is None:
            self._confirm_pub = self.create_publisher(ReleaseConfirm, CONFIRM_TOPIC, RELEASE_QOS)
            self.create_subscription(ReleaseConfirm, CONFIRM_TOPIC, self._on_confirm, CONFIRM_QOS)
            self._release_sub = self.create_subscription(Release, RELEASE_TOPIC, self._on_release, RELEASE_QOS)
        return slot.policy

    def _on_release(self, msg: Release) -> None:
        if msg.team != self._release_team:
            return
        self._announced = msg
        slot = self._slot
        if slot is not None and msg.cutover_episode > 0 and slot.status()["staged_release"] == msg.release:
            self._confirm(int(msg.release), int(msg.cutover_episode))  # loaded on the prepare: confirm at once
        what = "prepare (no cut-over)" if msg.cutover_episode == 0 else f"cut-over at episode {msg.cutover_episode}"
        self.get_logger().info(f"release {msg.release} of team {msg.team} announced: {what}")

    # ------------------------------------------------------------------------------- confirmed cut-over
    def _confirm(self, release: int, cutover: int, *, abort: bool = False) -> None:
        """Publish this robot's confirmation (or abort) of ``(release, cutover)``, once each."""
        if not abort and self._confirmed == (release, cutover):
            return
        from kdmarl_msgs.msg import ReleaseConfirm  # noqa: PLC0415

        msg = ReleaseConfirm(team=self._release_team, agent=self._agent, release=release, cutover_episode=cutover,
                             abort=abort)
        msg.header.stamp = self.get_clock().now().to_msg()
        if not abort:
            self._confirmed = (release, cutover)
        self._confirms[self._agent] = (release, cutover, abort)
        assert self._confirm_pub is not None
        self._confirm_pub.publish(msg)
        self.get_logger().info(f"{'aborted' if abort else 'confirmed'} the cut-over to release {release} at "
                               f"episode {cutover}")

    def _on_confirm(self, msg: Any) -> None:
        """A team member's confirmation or abort; an abort before the cut-over disarms this robot."""
        if msg.team != self._release_team or msg.agent not in self._team_agents:
            return
        key = (int(msg.release), int(msg.cutover_episode))
        self._confirms[msg.agent] = (*key, bool(msg.abort))
        if not msg.abort or msg.agent == self._agent:
            return
        slot = self._slot
        if self._decisions.get(key) == "go" and slot is not None and slot.status()["staged_release"] == key[0]:
            slot.cutover_episode = NOT_YET
            self.get_logger().warning(f"{msg.agent} aborted the cut-over to release {key[0]} at episode {key[1]}: "
                                      "keeping the running release")
        elif self._decisions.get(key) == "go" and slot is not None and slot.release == key[0]:
            self.get_logger().error(f"{msg.agent} aborted the cut-over to release {key[0]} at episode {key[1]} "
                                    "after this robot switched: that episode may mix releases")
        self._decisions[key] = "abort"

    def _all_confirmed(self, key: tuple[int, int], *, others_only: bool = False) -> bool:
        return all(self._confirms.get(agent) == (*key, False) for agent in self._team_agents
                   if not (others_only and agent == self._agent))

    def _decide_cutover(self, episode: int) -> None:
        """Executor thread, before the decision: arm or abort the announced cut-over at its decision episode."""
        msg, slot = self._announced, self._slot
        if msg is None or slot is None or msg.cutover_episode == 0 or slot.release == msg.release:
            return
        key = (int(msg.release), int(msg.cutover_episode))
        if key in self._decisions or episode < key[1] - 1:
            return
        loaded = slot.status()["staged_release"] == key[0]
        if episode == key[1] - 1 and loaded and self._all_confirmed(key):
            self._decisions[key] = "go"
            slot.cutover_episode = key[1]
        elif episode >= key[1] and self._all_confirmed(key, others_only=True):
            self._decisions[key] = "go"  # joined after the decision episode: the team went, follow it
            if loaded:
                slot.cutover_episode = key[1]  # the next episode start; safe action until then (behind)
        else:
            self._decisions[key] = "abort"
            missing = [a for a in self._team_agents if self._confirms.get(a) != (*key, False)]
            self.get_logger().warning(f"cut-over to release {key[0]} at episode {key[1]}: no confirmation from "
                                      f"{', '.join(missing)} by episode {episode}; aborting, keeping release "
                                      f"{slot.release}")
            self._confirm(*key, abort=True)

    def _act(self, policy: StudentPolicy, observation: Any, msg: AgentObservation, mask: Any) -> int:
        """The decision, through the release slot when there is one (may swap or revert inside)."""
        slot = self._slot
        if slot is None:
            return int(policy.act(observation, mask=mask))
        self._decide_cutover(int(msg.episode))
        action = int(slot.act(observation, episode=int(msg.episode), step=int(msg.step), mask=mask))
        self._policy = slot.policy
        self._release_number = int(slot.release or 0)
        return action

    def _behind_release(self, episode: int) -> bool:
        """True when the team went to the announced release by this episode and this robot does not run it."""
        msg, slot = self._announced, self._slot
        return (slot is not None and msg is not None and msg.cutover_episode > 0 and episode >= msg.cutover_episode
                and self._decisions.get((int(msg.release), int(msg.cutover_episode))) == "go"
                and slot.release != msg.release)

    def _release_tick(self) -> dict[str, Any]:
        """Supervisor thread: stage an announced release, write pointer changes; the values for /diagnostics."""
        slot, msg = self._slot, self._announced
        if slot is None:
            return {}
        store = slot.store
        assert store is not None
        if msg is not None and msg.release != slot.release and slot.status()["staged_release"] != msg.release \
                and msg.release not in self._refused_releases and store.pointer("staged") == msg.release:
            try:  # armed only by the confirmed cut-over (_decide_cutover)
                slot.stage(int(msg.release), store.root / str(msg.release), NOT_YET)
                self.get_logger().info(f"release {msg.release} loaded; cut-over "
                                       f"{msg.cutover_episode or '(not announced yet)'}")
                if msg.cutover_episode > 0:
                    self._confirm(int(msg.release), int(msg.cutover_episode))
            except Exception as err:  # BundleError and friends: keep the running release, say why
                self._refused_releases.add(int(msg.release))
                self._stage_error = f"release {msg.release}: {type(err).__name__}: {err}"
                self.get_logger().error(f"staged release refused, keeping release {slot.release}: {self._stage_error}")
        slot.sync_store()
        return {**slot.status(), "release_team": self._release_team,
                "announced_release": None if msg is None else int(msg.release),
                "announced_cutover_episode": None if msg is None else int(msg.cutover_episode),
                "cutover_decision": None if msg is None else
                self._decisions.get((int(msg.release), int(msg.cutover_episode))),
                "confirmations": None if msg is None else
                sum(v == (int(msg.release), int(msg.cutover_episode), False) for v in dict(self._confirms).values()),
                "stage_error": self._stage_error}


__all__ = ["ReleaseHandling"]
