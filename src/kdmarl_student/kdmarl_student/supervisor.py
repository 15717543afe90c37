"""A node's own thread for what must never wait behind a decision: the inference deadline, the realtime
watchdog, health reports and stop signals (issue 22).

A compute bomb once held a node's only thread for 12 s: no actions, no ``/diagnostics``, no watchdog safe
actions, and SIGINT ignored for 15 s, because Python runs signal handlers only in the main thread between
bytecodes and the main thread sat inside ONNX Runtime. So a student node runs its periodic jobs here, in a
second thread, on the steady clock:

- every job is a ``(period, function)`` pair; periods are read again after each run, so a parameter change
  takes effect at the next tick;
- the thread sleeps in ``select`` on the process's signal wakeup pipe (:func:`kdmarl_student.lifetime.signal_wakeup`):
  the C-level signal handler writes there from whichever thread the kernel interrupts, so a Ctrl-C wakes this
  thread at once even while the main thread is inside ONNX Runtime; ``on_signal`` then requests the stop and
  cancels the decision in flight;
- a job that raises is reported through ``on_error`` and the thread goes on; a job may return a number of
  seconds to run again that soon instead of after its period (a report that waits for the decision in progress,
  so its Python work does not take the GIL from a decision between its ONNX call and its answer).

ONNX Runtime releases the GIL while it computes, so these jobs run during an inference. Imports only the
standard library.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable

Job = Callable[[], "float | None"]  # returns None, or seconds after which to run again instead of the period


class Supervisor:
    """Periodic jobs in a daemon thread (see the module docstring); :meth:`stop` joins it."""

    def __init__(self, name: str, *, wake_fd: int | None = None, on_signal: Callable[[int], None] | None = None,
                 on_error: Callable[[str, BaseException], None] | None = None) -> None:
        self._name = name
        self._jobs: list[tuple[str, Callable[[], float], Job]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_fd = wake_fd
        self._on_signal = on_signal
        self._on_error = on_error

    def every(self, name: str, period: Callable[[], float], job: Job) -> None:
        """Run ``job`` every ``period()`` seconds (the first run one period after :meth:`start`)."""
        self._jobs.append((name, period, job))

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        start = time.perf_counter()
        due = [start + max(period(), 1e-4) for _, period, _ in self._jobs]
        while not self._stop.is_set():
            now = time.perf_counter()
            for i, (name, period, job) in enumerate(self._jobs):
                if now >= due[i]:
                    retry = None
                    try:
                        retry = job()
                    except Exception as err:  # a failing job must not end the thread that keeps the node alive
                        if self._on_error is not None:
                            self._on_error(name, err)
                    if retry is not None:  # the job asked to run again soon (e.g. not while a decision runs)
                        due[i] = time.perf_counter() + float(retry)
                    else:
                        due[i] = max(due[i] + max(period(), 1e-4), time.perf_counter())
            self._wait(max(0.0, min(due, default=now + 0.1) - time.perf_counter()))

    def _wait(self, seconds: float) -> None:
        if self._wake_fd is None:
            self._stop.wait(seconds)
            return
        try:
            ready, _, _ = select.select([self._wake_fd], [], [], seconds)
        except (OSError, ValueError):  # the pipe was closed: fall back to a plain wait
            self._wake_fd = None
            return
        if not ready:
            return
        try:
            data = os.read(self._wake_fd, 64)
        except BlockingIOError:  # another reader drained it first
            return
        except OSError:
            self._wake_fd = None
            return
        if self._on_signal is not None:
            for signum in data:
                self._on_signal(signum)


__all__ = ["Supervisor"]
