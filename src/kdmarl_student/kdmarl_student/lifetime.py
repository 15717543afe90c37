"""How long a node process lives: until SIGINT/SIGTERM, and never longer than the process that started it.

Two rules every kdmarl node follows (DESIGN.md section 7, issue 9's measured shutdown defects):

- **Signals only set a flag.** A terminal's Ctrl-C reaches the whole process group, and ``ros2 launch``
  forwards its own SIGINT a moment later, so a node sees two or more signals. A handler that raises
  ``KeyboardInterrupt`` stays armed while the node destroys its entities and the second signal lands inside
  ``destroy_node`` or inside rclpy's ``take_message`` (observed as tracebacks on 3 of 3 Ctrl-C runs). Here the
  handler records the request and returns; loops poll :func:`shutdown_requested` between short waits.
- **A node dies with its parent.** ``ros2 launch`` answers SIGTERM by cancelling itself without stopping its
  children, and ``kill -9`` of a runner cannot forward anything: orphaned students would keep acting with
  nobody supervising them. ``PR_SET_PDEATHSIG`` (Linux) asks the kernel to send SIGTERM to the node when
  its parent exits, which the node then handles like any other stop request (a robot adapter sends its
  zero ``Twist``). :func:`die_with_parent` is also the ``preexec_fn`` of the ``kdmarl-swarm`` runner, so the
  tie holds from the first instruction of the child.

- **Teardown has a deadline.** Fast DDS can spin forever while it destroys a participant (waiting on an
  in-flight discovery callback, eProsima/Fast-DDS#6513; seen here in one of about forty node stops). After
  the node's own shutdown work is done, :func:`bound_teardown` gives the DDS teardown a few seconds, then
  ends the process (exit status 1, with the stuck stack on stderr) rather than leave it behind.

Imports only the standard library: the runner (no rclpy) uses it too.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import sys
import threading
from typing import Any

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
TEARDOWN_TIMEOUT_S = 5.0
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_requested = threading.Event()
_signals: list[str] = []
_wakeup: list[int] = []  # the read end of the signal wakeup pipe, once made


def _on_signal(signum: int, frame: Any) -> None:
    _signals.append(signal.Signals(signum).name)
    _requested.set()


def install_stop_handlers() -> None:
    """SIGINT and SIGTERM (any number, in any order) request a stop; nothing is raised."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def note_signal(signum: int) -> None:
    """Record a stop signal seen by another thread (:func:`signal_wakeup`): the stop is requested at once, not when
    the main thread next runs Python (it may be inside ONNX Runtime). Signals other than SIGINT/SIGTERM are ignored."""
    if signum in (signal.SIGINT, signal.SIGTERM):
        _on_signal(signum, None)


def signal_wakeup() -> int | None:
    """A file descriptor that becomes readable (one byte per signal number) whenever a signal arrives, from any
    thread: ``signal.set_wakeup_fd`` on a non-blocking pipe. Call from the main thread after
    :func:`install_stop_handlers`; returns the read end (once per process; None where unsupported)."""
    if _wakeup:
        return _wakeup[0]
    if threading.current_thread() is not threading.main_thread():
        return None
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    _wakeup.append(read)
    return read


def shutdown_requested() -> bool:
    """True once a stop signal arrived."""
    return _requested.is_set()


def received_signals() -> tuple[str, ...]:
    """Names of the stop signals received so far, for the shutdown log line."""
    return tuple(_signals)


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Have the kernel send ``sig`` to this process when its parent exits; False where unsupported.

    Usable as a ``subprocess.Popen(preexec_fn=...)`` (libc is loaded at import, so the child only makes one
    system call) and at the start of a node. If the parent exits between reading its pid and the tie (the
    one race the kernel cannot close for us), the signal is sent right away.
    """
    if _LIBC is None:
        return False
    parent = os.getppid()
    if _LIBC.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # orphaned before the tie existed
        os.kill(os.getpid(), sig)
    return True


def bound_teardown(seconds: float = TEARDOWN_TIMEOUT_S) -> None:
    """Enter teardown: further stop signals are ignored, and the process ends if teardown takes over ``seconds``.

    Ignoring matters at the very end: Python's finalization resets handlers it installed to SIG_DFL, so a
    second Ctrl-C arriving while Fast DDS joins its threads would kill the process with -2 (seen under
    ``ros2 launch``, which forwards the terminal's SIGINT a moment after the terminal itself). SIG_IGN
    survives finalization. ``faulthandler``'s watchdog is a C thread: it fires even while the main thread is
    stuck inside the DDS library holding the GIL, where no Python-level timer could run.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    faulthandler.dump_traceback_later(seconds, exit=True)


__all__ = ["TEARDOWN_TIMEOUT_S", "bound_teardown", "die_with_parent", "install_stop_handlers", "note_signal",
           "received_signals", "shutdown_requested", "signal_wakeup"]
