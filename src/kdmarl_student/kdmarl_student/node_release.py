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
  students load but do not switch), see :mod:`kdmarl_student.announce`; a cut-over for a release already loaded
  sets the slot's cut-over episode at once (executor thread, as the decisions).
- the report job (the node's supervisor thread, never the executor): when the announced release is the store's
  ``staged`` one and the slot has not loaded it, it is staged into the slot (loaded and checked now; a failure
  goes to ``/diagnostics`` as ``stage_error`` and is not retried for that release); queued pointer changes are
  written (:meth:`ReleaseSlot.sync_store`); the slot's status joins ``/diagnostics`` (``staged_release``: what
  ``announce`` waits for; WARN after a revert).
- the decision: :meth:`ReleaseSlot.act` (the swap happens at step 0 of the cut-over episode, inside that decision,
  with a reset memory; no disk, no load). From the cut-over episode on, a robot whose running release is not the
  announced one (not staged in time, or reverted) answers with the safe action (``behind_release_answers``) and
  publishes no policy action, so a team episode never mixes releases; it switches at the first episode start
  after it has staged the release (it catches up without a new announcement).

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


NOT_YET = 2**32  # the slot's cut-over episode for a release loaded on a prepare announcement


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

    def _open_release_slot(self, agent: str, load: Any) -> StudentPolicy:
        """Configure from ``<release_state_dir>/releases``: the slot's running policy (raises on any failure)."""
        # Imported here: a node without releases never loads the updater's modules.
        from kdmarl_msgs.msg import Release  # noqa: PLC0415
        from kdmarl_student.release_slot import ReleaseSlot  # noqa: PLC0415
        from kdmarl_student.release_store import ReleaseStore  # noqa: PLC0415
        from kdmarl_student.updater_node import RELEASE_QOS, RELEASE_TOPIC  # noqa: PLC0415

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
        self._slot, self._release_number = slot, int(slot.release or 0)
        if self._release_sub is None:
            self._release_sub = self.create_subscription(Release, RELEASE_TOPIC, self._on_release, RELEASE_QOS)
        return slot.policy

    def _on_release(self, msg: Release) -> None:
        if msg.team != self._release_team:
            return
        self._announced = msg
        slot = self._slot
        if slot is not None and msg.cutover_episode > 0 and slot.status()["staged_release"] == msg.release:
            slot.cutover_episode = int(msg.cutover_episode)  # loaded on the prepare: switch at the cut-over
        what = "prepare (no cut-over)" if msg.cutover_episode == 0 else f"cut-over at episode {msg.cutover_episode}"
        self.get_logger().info(f"release {msg.release} of team {msg.team} announced: {what}")

    def _act(self, policy: StudentPolicy, observation: Any, msg: AgentObservation, mask: Any) -> int:
        """The decision, through the release slot when there is one (may swap or revert inside)."""
        slot = self._slot
        if slot is None:
            return int(policy.act(observation, mask=mask))
        action = int(slot.act(observation, episode=int(msg.episode), step=int(msg.step), mask=mask))
        self._policy = slot.policy
        self._release_number = int(slot.release or 0)
        return action

    def _behind_release(self, episode: int) -> bool:
        """True when the team runs the announced release from this episode on and this robot does not."""
        msg, slot = self._announced, self._slot
        return (slot is not None and msg is not None and msg.cutover_episode > 0 and episode >= msg.cutover_episode
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
            cutover = int(msg.cutover_episode) or NOT_YET  # a prepare: load now, switch at the announced cut-over
            try:
                slot.stage(int(msg.release), store.root / str(msg.release), cutover)
                self.get_logger().info(f"release {msg.release} loaded, switching at episode "
                                       f"{msg.cutover_episode or '(not announced yet)'}")
            except Exception as err:  # BundleError and friends: keep the running release, say why
                self._refused_releases.add(int(msg.release))
                self._stage_error = f"release {msg.release}: {type(err).__name__}: {err}"
                self.get_logger().error(f"staged release refused, keeping release {slot.release}: {self._stage_error}")
        slot.sync_store()
        return {**slot.status(), "release_team": self._release_team,
                "announced_release": None if msg is None else int(msg.release),
                "announced_cutover_episode": None if msg is None else int(msg.cutover_episode),
                "stage_error": self._stage_error}


__all__ = ["ReleaseHandling"]
