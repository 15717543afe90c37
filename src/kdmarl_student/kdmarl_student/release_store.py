"""The robot's release store (issue 23): ``releases/<n>/`` directories and the ``current`` / ``previous`` /
``staged`` pointers, changed atomically and under an inter-process lock.

Two processes change it: the updater (:mod:`kdmarl_student.fleet_update`) stages verified releases into it, and the
student's :class:`~kdmarl_student.release_slot.ReleaseSlot` promotes and reverts. A refusal or a crash never leaves
a half-written release behind: staging happens in hidden ``.staging-*`` directories that only a rename publishes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kdmarl_student.atomic import atomic_file

POINTERS = ("current", "previous", "staged")
LOCK_FILE = "lock"
STATUS_FILE = "status.json"

__all__ = ["POINTERS", "ReleaseStore", "UpdateRefused"]


class UpdateRefused(Exception):  # noqa: N818  (a refusal, not a bug)
    """A release that must not be staged; ``str()`` says which file or field and why."""


# --------------------------------------------------------------------------------------------- on disk
class ReleaseStore:
    """``ROOT/<release>/`` directories and the pointers ``current``, ``previous``, ``staged`` (relative symlinks,
    each replaced atomically with ``os.replace``). Hidden ``.staging-*`` directories are never pointed to and are
    removed by :meth:`clean`. ``status.json`` (written atomically) keeps what diagnostics report.

    The updater (one process) and the student's :class:`~kdmarl_student.release_slot.ReleaseSlot` (another) both
    change the store: every change runs under :meth:`locked` (``flock`` on ``ROOT/lock``, reentrant within a
    process), held only for renames, pointer swaps and status writes, never during a download."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread_lock = threading.RLock()
        self._lock_depth = 0
        self._lock_fd: int | None = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive access to the store across processes (and threads); reentrant."""
        with self._thread_lock:
            if self._lock_depth == 0:
                fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._lock_fd = fd
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_fd is not None:
                    os.close(self._lock_fd)  # releases the flock
                    self._lock_fd = None

    # pointers
    def pointer(self, name: str) -> int | None:
        link = self.root / name
        if not link.is_symlink():
            return None
        target = os.readlink(link)
        return int(target) if target.isdigit() and (self.root / target).is_dir() else None

    def path(self, name: str) -> Path | None:
        version = self.pointer(name)
        return None if version is None else self.root / str(version)

    def set_pointer(self, name: str, version: int | None) -> None:
        if name not in POINTERS:
            raise ValueError(f"pointer must be one of {POINTERS}; got {name!r}")
        link = self.root / name
        with self.locked():
            if version is None:
                link.unlink(missing_ok=True)
            else:
                if not (self.root / str(version)).is_dir():
                    raise FileNotFoundError(f"{self.root / str(version)}: no such release to point {name} at")
                tmp = self.root / f".{name}.{os.getpid()}.tmp"
                tmp.unlink(missing_ok=True)
                os.symlink(str(version), tmp)
                os.replace(tmp, link)
            self._fsync_dir()

    def _fsync_dir(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def promote(self) -> int:
        """At the cut-over: ``previous`` <- ``current``, ``current`` <- ``staged``, no ``staged``."""
        with self.locked():
            staged = self.pointer("staged")
            if staged is None:
                raise FileNotFoundError(f"{self.root}: nothing staged to promote")
            current = self.pointer("current")
            if current is not None and current != staged:
                self.set_pointer("previous", current)
            self.set_pointer("current", staged)
            self.set_pointer("staged", None)
            return staged

    def revert(self, reason: str) -> int | None:
        """Back to the last good release: ``current`` <- ``previous``; the bad release is remembered (never
        staged again) and the reason recorded."""
        with self.locked():
            bad, previous = self.pointer("current"), self.pointer("previous")

            def record(status: dict[str, Any]) -> None:
                status["reverted"] = sorted({*status.get("reverted", []), *([bad] if bad is not None else [])})
                status["last_refusal"] = {"release": bad, "reason": f"reverted: {reason}", "time": time.time(),
                                          "status": "reverted"}
            self.update_status(record)
            if previous is not None:
                self.set_pointer("current", previous)
                self.set_pointer("previous", None)
            return previous

    # staging
    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A hidden directory for one download; removed unless :meth:`commit` renamed it."""
        directory = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            yield directory
        finally:
            if directory.exists():
                shutil.rmtree(directory, ignore_errors=True)

    def commit(self, staging: Path, version: int) -> Path:
        """fsync every file, rename the staging dir to ``<version>`` and point ``staged`` at it."""
        for path in staging.iterdir():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        final = self.root / str(version)
        with self.locked():
            if final.exists():  # left by an earlier attempt that never got a pointer (or a reverted release)
                if version in {self.pointer(p) for p in POINTERS}:
                    raise FileExistsError(f"{final}: release {version} is already staged or running")
                shutil.rmtree(final)
            os.rename(staging, final)
            self._fsync_dir()
            self.set_pointer("staged", version)
        return final

    def clean(self) -> None:
        """Remove staging leftovers and release dirs no pointer names."""
        with self.locked():
            keep = {str(v) for p in POINTERS if (v := self.pointer(p)) is not None}
            for path in self.root.iterdir():
                if path.name.startswith(".staging-") or (path.name.isdigit() and path.name not in keep
                                                         and path.is_dir()):
                    shutil.rmtree(path, ignore_errors=True)

    def listing(self) -> dict[str, Any]:
        """What is on disk: pointers and release dirs (hidden entries included), for tests and diagnostics."""
        return {"pointers": {p: self.pointer(p) for p in POINTERS},
                "entries": sorted(p.name for p in self.root.iterdir()
                                  if p.name not in (*POINTERS, STATUS_FILE, LOCK_FILE))}

    # status
    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / STATUS_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def update_status(self, edit: Callable[[dict[str, Any]], None]) -> None:
        """Read, edit and write ``status.json`` atomically, under the store lock."""
        with self.locked():
            status = self.status()
            edit(status)
            with atomic_file(self.root / STATUS_FILE) as handle:
                handle.write((json.dumps(status, indent=2, sort_keys=True) + "\n").encode())
