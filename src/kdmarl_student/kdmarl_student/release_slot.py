"""Hot swap of a robot's policy between releases, ROS-free (issue 23): what the student node and the sim bridge call.

A :class:`ReleaseSlot` holds the running :class:`~kdmarl_student.policy.StudentPolicy` of one agent and at most one
staged one. The staged policy is loaded *before* the cut-over (manifest, signature, sha256, ONNX I/O, a dummy
inference: everything that can fail fails while the old policy keeps acting). The swap happens inside
:meth:`ReleaseSlot.act` at the first decision (step 0) of the first episode at or after the announced cut-over
episode, so the decision of that step is already taken by the new policy (no missed decision) from a reset
memory, and an episode is never split between two releases on this robot.

Health after the swap: a decision whose logits or state are NaN/Inf (:class:`~kdmarl_student.errors.
PolicyOutputError`) makes the slot revert to the last good release at once and answer *that same observation*
with the last good policy (memory reset: its old state belongs to another episode); a p99 decision latency above
``max_latency_ms`` after ``latency_window`` decisions on the new release reverts at the next decision. A revert is
written to the :class:`~kdmarl_student.fleet_update.ReleaseStore` (``current`` back to ``previous``; the bad release
is never staged again) and shown by :meth:`status` (what ``/diagnostics`` reports).

Nothing in :meth:`ReleaseSlot.act` touches the disk: the pointer changes of a swap or a revert are queued and
written by :meth:`ReleaseSlot.sync_store`, which the node calls after it has published the action (or from its
report timer), so a cut-over never puts fsyncs into a decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdmarl_student.errors import PolicyOutputError
from kdmarl_student.policy import StudentPolicy
from kdmarl_student.release_store import ReleaseStore

LOGGER = logging.getLogger("kdmarl_student.release_slot")

__all__ = ["ReleaseSlot", "SlotEvent"]


@dataclass(frozen=True)
class SlotEvent:
    """A swap or a revert, as diagnostics report it."""

    kind: str  # "swap" | "revert" | "stage_refused"
    release: int | None
    episode: int
    step: int
    reason: str = ""
    time: float = 0.0


@dataclass
class _Loaded:
    release: int
    policy: StudentPolicy
    decisions: int = 0


class ReleaseSlot:
    """The running release of one agent, a staged one, and the last good one.

    Args:
        agent: this robot's agent name.
        loader: ``(bundle_dir) -> StudentPolicy`` (default: ``StudentPolicy(dir, agent, public_key=public_key)``).
        public_key: the bundle public key for the default loader.
        store: the robot's :class:`ReleaseStore` (pointers promoted/reverted with the policies), or None.
        max_latency_ms: revert when the new release's p99 decision latency exceeds this (None: no check).
        latency_window: decisions on a new release before its latency is judged.
    """

    def __init__(self, agent: str, *, loader: Callable[[Path], StudentPolicy] | None = None, public_key: Any = None,
                 store: ReleaseStore | None = None, max_latency_ms: float | None = None,
                 latency_window: int = 200) -> None:
        self.agent = agent
        self._loader = loader or (lambda path: StudentPolicy(path, agent, public_key=public_key))
        self.store = store
        self.max_latency_ms = max_latency_ms
        self.latency_window = latency_window
        self._current: _Loaded | None = None
        self._last_good: _Loaded | None = None
        self._staged: _Loaded | None = None
        self.cutover_episode: int | None = None
        self.events: list[SlotEvent] = []
        self._episode = -1
        self._step = -1
        self._pending_latency_revert = ""
        self._store_ops: list[tuple[str, int, str]] = []  # ("promote" | "revert", release, reason), for sync_store

    # --------------------------------------------------------------------------------------- loading
    def start(self, release: int, bundle_dir: str | Path) -> None:
        """The release running from the start (the node's bundle, e.g. ``releases/current``)."""
        self._current = _Loaded(release, self._loader(Path(bundle_dir)))

    def start_from_store(self) -> int:
        """Start on the store's ``current`` release; returns it."""
        if self.store is None or self.store.pointer("current") is None:
            raise FileNotFoundError("no release store or no current release to start from")
        release = self.store.pointer("current")
        assert release is not None
        self.start(release, self.store.root / str(release))
        return release

    def stage(self, release: int, bundle_dir: str | Path, cutover_episode: int) -> None:
        """Load ``release`` now (all checks and a dummy inference) to take over at ``cutover_episode``.

        A bundle that fails to load raises (``BundleError``) and leaves the slot as it was.
        """
        try:
            policy = self._loader(Path(bundle_dir))
        except Exception as exc:
            self.events.append(SlotEvent("stage_refused", release, self._episode, self._step, str(exc), time.time()))
            raise
        self._staged = _Loaded(release, policy)
        self.cutover_episode = int(cutover_episode)

    # --------------------------------------------------------------------------------------- acting
    @property
    def release(self) -> int | None:
        return None if self._current is None else self._current.release

    @property
    def policy(self) -> StudentPolicy:
        if self._current is None:
            raise RuntimeError(f"{self.agent}: no release started (ReleaseSlot.start)")
        return self._current.policy

    def act(self, observation: Any, *, episode: int, step: int, mask: Any = None) -> int:
        """The action of this decision; swaps at the cut-over and reverts on a failed health check (see module).

        ``ObservationError`` (the input's fault) propagates as from ``StudentPolicy.act``; so does a
        ``PolicyOutputError`` when there is no last good release to fall back to.
        """
        self._episode, self._step = int(episode), int(step)
        if self._pending_latency_revert:
            self._revert(self._pending_latency_revert)
        if self._staged is not None and self.cutover_episode is not None and step == 0 \
                and episode >= self.cutover_episode:
            self._swap()
        current = self._current
        if current is None:
            raise RuntimeError(f"{self.agent}: no release started (ReleaseSlot.start)")
        try:
            action = current.policy.act(observation, mask=mask)
        except PolicyOutputError as exc:
            if self._last_good is None:
                raise
            self._revert(f"release {current.release}: {exc}")
            return self.policy.act(observation, mask=mask)
        current.decisions += 1
        # Judged once per latency_window decisions, not at every decision: a p99 over the window is a sort and an
        # allocation, too much for the decision path (the node calls act() for every observation).
        if self._last_good is not None and self.max_latency_ms is not None and \
                current.decisions % self.latency_window == 0:
            p99 = current.policy.latency.summary()["p99_ms"]
            if p99 is not None and p99 > self.max_latency_ms:
                self._pending_latency_revert = (f"release {current.release}: p99 decision latency {p99:.4f} ms over "
                                                f"max_latency_ms {self.max_latency_ms} after {current.decisions} "
                                                "decisions")
        return action

    def _swap(self) -> None:
        assert self._staged is not None
        self._last_good, self._current, self._staged = self._current, self._staged, None
        self._current.policy.reset()
        self._current.policy.latency.reset()
        self.cutover_episode = None
        self._store_ops.append(("promote", self._current.release, ""))
        self.events.append(SlotEvent("swap", self._current.release, self._episode, self._step, "", time.time()))
        LOGGER.info("%s: release %s from episode %d", self.agent, self._current.release, self._episode)

    def _revert(self, reason: str) -> None:
        self._pending_latency_revert = ""
        if self._last_good is None:
            return
        bad = self._current
        self._current, self._last_good = self._last_good, None
        self._current.policy.reset()
        if bad is not None:
            self._store_ops.append(("revert", bad.release, reason))
        self.events.append(SlotEvent("revert", self._current.release, self._episode, self._step, reason, time.time()))
        LOGGER.error("%s: reverted to release %s: %s", self.agent, self._current.release, reason)

    def sync_store(self) -> None:
        """Write the queued swaps and reverts to the release store (``current``/``previous``/``staged``), in order.

        Call it after the decision's action went out; a no-op without a store or with nothing queued.
        """
        ops, self._store_ops = self._store_ops, []
        if self.store is None:
            return
        for op, release, reason in ops:
            if op == "promote" and self.store.pointer("staged") == release:
                self.store.promote()
            elif op == "revert" and self.store.pointer("current") == release:
                self.store.revert(reason)

    # --------------------------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """Key/values for ``/diagnostics``: current, staged and last good releases, the cut-over, the last event."""
        last = self.events[-1] if self.events else None
        reverts = [e for e in self.events if e.kind == "revert"]
        return {
            "release": self.release,
            "staged_release": None if self._staged is None else self._staged.release,
            "cutover_episode": self.cutover_episode,
            "last_good_release": None if self._last_good is None else self._last_good.release,
            "last_event": None if last is None else f"{last.kind} {last.release} at episode {last.episode} "
                                                    f"step {last.step}{': ' + last.reason if last.reason else ''}",
            "last_revert": reverts[-1].reason if reverts else "",
        }
