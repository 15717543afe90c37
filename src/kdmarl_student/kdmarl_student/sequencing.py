"""What a student node decides without ROS: the order of observations, memory resets, counters, log throttling.

The node (:mod:`kdmarl_student.student_node`) feeds every observation's (episode, step, stamp) through a
:class:`Sequencer` and answers what it says; these rules are plain Python so they can be read and tested apart
from rclpy:

- **Order.** Against the last observation answered, a new one is ``"new"`` (a later step, or another episode),
  ``"duplicate"`` (the same step and stamp: a republish, answered from the cache) or ``"out_of_order"`` (an older
  step of the current episode, dropped). A different episode counter (either way: a simulator restarts at 0), a
  step counter that goes back with a newer stamp, or further back than :data:`REORDER_WINDOW` steps, starts a new
  sequence (a restarted source) and is reported as such.
- **Memory resets.** A new sequence resets a stateful student's memory for the manifest's ``memory.reset_on``
  events: ``episode_start`` (a new episode counter), ``step_backwards`` (the step counter went back), ``stale``
  (the first observation after the realtime watchdog found the input stale); ``activate`` is the node's own.
- **Stamps** (realtime only): older than ``observation_timeout_s`` is stale, more than ``max_clock_skew_s`` in the
  future is refused (:func:`stamp_problem`).
- **Counters** (:class:`Counters`): every refusal and event is counted under a name, the totals go to
  ``/diagnostics`` and ``ResourceUsage``; the report names what changed since the last one.
- **Throttled logging** (:class:`Throttle`): every line that a message can cause is logged at most once per
  ``warn_throttle_s`` per kind, INFO included, with the number held back; the counters carry the totals.

Imports only the standard library.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

# How far back a step counter may jump within one episode and still be a late (reordered) message rather
# than a restarted source, when stamps cannot tell (unstamped observations).
REORDER_WINDOW = 10

COUNTERS = ("actions", "safe_actions", "invalid_observations", "stale_observations", "duplicate_observations",
            "non_finite_outputs", "inference_errors", "memory_resets", "sequence_restarts", "deadline_overruns",
            "fleet_stop_answers", "behind_release_answers")


@dataclass(frozen=True)
class Decision:
    """The last observation answered: it orders the next one and answers its republish."""

    episode: int
    step: int
    stamp_ns: int
    action: int
    safe: bool


class Sequencer:
    """Order of observations and the memory-reset events they cause (see the module docstring)."""

    def __init__(self) -> None:
        self.last: Decision | None = None
        self.input_went_stale = False  # realtime watchdog fired since the last accepted observation

    def classify(self, episode: int, step: int, stamp_ns: int) -> tuple[str, str]:
        """(``"new"`` | ``"duplicate"`` | ``"out_of_order"``, a note when a counter went back: a new sequence)."""
        last = self.last
        if last is None or episode != last.episode or step > last.step:
            if last is not None and episode < last.episode:
                return "new", f"episode counter went back from {last.episode} to {episode}: new sequence " \
                              "(simulator restarted?)"
            return "new", ""
        if step == last.step and stamp_ns == last.stamp_ns:
            return "duplicate", ""
        if stamp_ns > last.stamp_ns or last.step - step > REORDER_WINDOW:
            return "new", f"step counter of episode {episode} went back from {last.step} to {step} with a newer " \
                          "stamp: new sequence (source restarted?)"
        return "out_of_order", ""

    def reset_event(self, episode: int, step: int) -> tuple[str, str] | None:
        """For an observation classified ``"new"``: the memory-reset event it is, with the words for the log, or
        None (the first observation since activate, which reset already, or a plain next step)."""
        last, stale = self.last, self.input_went_stale
        self.input_went_stale = False
        if last is None:
            return None
        if episode != last.episode:
            return "episode_start", (f"new episode {episode}" if episode > last.episode else
                                     f"episode counter went back from {last.episode} to {episode}")
        if step <= last.step:
            return "step_backwards", f"step counter of episode {episode} went back from {last.step} to {step}"
        if stale:
            return "stale", f"input resumed after a stale period (episode {episode}, step {step})"
        return None

    def record(self, episode: int, step: int, stamp_ns: int, action: int, safe: bool) -> None:
        self.last = Decision(episode, step, stamp_ns, action, safe)


def stamp_problem(stamp_ns: int, now_ns: int, timeout_s: float, max_skew_s: float) -> tuple[str, str] | None:
    """(counter, detail) when a stamp is older than ``timeout_s`` (``"stale"``) or more than ``max_skew_s`` in the
    future (``"stamp"``) on the node's clock; None when fine or when the clock has not started (``now_ns <= 0``:
    ``use_sim_time`` before the first ``/clock``)."""
    if now_ns <= 0:
        return None
    age_s = (now_ns - stamp_ns) / 1e9
    if age_s > timeout_s:
        return "stale", f"observation stamped {age_s:.3g} s ago (observation_timeout_s)"
    if -age_s > max_skew_s:
        return "stamp", f"observation stamped {-age_s:.3g} s in the future (max_clock_skew_s)"
    return None


class Counters:
    """The node's counters (:data:`COUNTERS`) and invalid-observation reasons; thread-safe increments (the
    decision thread and the node's supervisor thread both count)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.reasons: dict[str, int] = {}
        self._at_report = dict(self.counts)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def invalid(self, reason: str) -> None:
        with self._lock:
            self.counts["invalid_observations"] += 1
            self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def __getitem__(self, name: str) -> int:
        return self.counts[name]

    def reasons_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.reasons.items()))

    def since_report(self) -> dict[str, int]:
        """What each counter gained since the last call (the report period's news)."""
        with self._lock:
            now = dict(self.counts)
        new = {k: now[k] - self._at_report.get(k, 0) for k in now}
        self._at_report = now
        return new


class Throttle:
    """Log one line of a kind at most once per ``period()`` seconds, saying how many were held back since.

    Throttled here per kind rather than by rclpy: rclpy throttles per call site (so one kind would hide every
    other) and refuses a throttle duration that changes between calls, which made a ``ros2 param set
    warn_throttle_s`` crash the node at its next warning. ``clock`` is a steady clock in seconds.
    """

    def __init__(self, period: Callable[[], float], clock: Callable[[], float]) -> None:
        self._period = period
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float | None, int]] = {}  # kind -> (time logged, held back since)

    def admit(self, kind: str, text: str) -> str | None:
        """The line to log now (with the held-back count), or None when this kind was logged too recently."""
        now = self._clock()
        with self._lock:
            last, held = self._seen.get(kind, (None, 0))
            if last is not None and now - last < self._period():
                self._seen[kind] = (last, held + 1)
                return None
            self._seen[kind] = (now, 0)
        return text + (f" (+{held} more since the last such line)" if held else "")


__all__ = ["COUNTERS", "REORDER_WINDOW", "Counters", "Decision", "Sequencer", "Throttle", "stamp_problem"]
