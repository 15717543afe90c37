"""Read one bundle file as untrusted input: regular files only, size-bounded before reading, never blocking.

Every file of a bundle (``manifest.json``, ``manifest.sig``, the ONNX models) comes from outside the robot,
so reading one must not be a way to stop or exhaust the node. A hostile-input probe (issue 9) found that a
plain ``read_bytes()`` hangs forever on a FIFO, grows without limit on a symlink to ``/dev/zero`` and reads
a 200 MB signature or hashes a 2 GB model before anything is checked. :func:`read_bundle_file` is the one
way the runtime reads a bundle file:

- opened with ``O_NONBLOCK`` (opening a FIFO never waits for a writer) and, for files with a fixed name,
  ``O_NOFOLLOW`` (a symlinked ``manifest.json`` is refused: it could point anywhere, ``/dev/zero`` included);
- ``fstat`` on the *opened* descriptor must say regular file (no FIFO, device or socket), so what is checked
  is what is read, with no window for a swap between a check on the path and the open;
- the size is compared with the caller's bound (and the size the manifest announces) before one byte is
  read, and the read itself stops one byte past that size, so a file growing while it is read is noticed.

The bounds are module constants so a deployment with bigger models changes them in one place.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from kdmarl_student.errors import BundleError

MAX_MANIFEST_BYTES = 1 << 20  # 1 MiB: a 100-agent manifest is about 300 KB
MAX_SIGNATURE_BYTES = 16 << 10  # 16 KiB: a signature document is about 200 bytes
MAX_MODEL_BYTES = 256 << 20  # 256 MiB: far above any on-board student; raise it here for bigger robots

_READ_CHUNK = 1 << 20

__all__ = ["MAX_MANIFEST_BYTES", "MAX_MODEL_BYTES", "MAX_SIGNATURE_BYTES", "read_bundle_file"]


def _file_kind(mode: int) -> str:
    """A word for what a non-regular file is, for the error message."""
    for test, word in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "directory")):
        if test(mode):
            return word
    return "special file"


def _open(path: Path, what: str, follow_symlinks: bool, error: type[BundleError]) -> int:
    """``os.open`` without blocking (and without following a final symlink unless allowed), typed errors."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        return os.open(path, flags)
    except FileNotFoundError as exc:
        raise error(path, "", f"{what}; the file is missing") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise error(path, "", f"{what} as a regular file; it is a symlink (refused: it could point anywhere)") \
                from exc
        raise error(path, "", f"{what} that can be read: {exc}") from exc


def _check_size(path: Path, size: int, *, limit: int, expected_size: int | None, size_field: str,
                what: str, error: type[BundleError]) -> None:
    """Size bounds, checked on ``fstat`` before anything is read."""
    if expected_size is not None and size != expected_size:
        raise error(path, size_field, f"{expected_size} bytes as the manifest says; the file has {size}, so it "
                    "cannot be the file whose sha256 the manifest lists (modified or truncated: refused before "
                    "reading it)")
    if size > limit:
        raise error(path, "", f"{what} of at most {limit} bytes; the file has {size} (refused before reading it)")


def _read_exactly(fd: int, size: int, path: Path, error: type[BundleError]) -> bytes:
    """Read ``size`` bytes, never more than ``size + 1``: a file that grows or shrinks meanwhile is refused."""
    chunks, total = [], 0
    while total <= size:
        block = os.read(fd, min(_READ_CHUNK, size + 1 - total))
        if not block:
            break
        chunks.append(block)
        total += len(block)
    if total != size:
        raise error(path, "", f"a file that does not change while it is read ({size} bytes at open, "
                    f"{'more' if total > size else total} when read)")
    return b"".join(chunks)


def read_bundle_file(
    path: str | Path,
    *,
    what: str,
    limit: int,
    expected_size: int | None = None,
    size_field: str = "",
    follow_symlinks: bool = False,
    error: type[BundleError] = BundleError,
) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or ``error(path, field, expected)``.

    Args:
        path: the file.
        what: what the file should be, in words (``"a manifest"``): the start of every error message.
        limit: the largest accepted size in bytes, checked before reading.
        expected_size: the exact size the manifest announces (``model.bytes``), checked before reading;
            a mismatch names ``size_field``.
        size_field: the manifest field holding ``expected_size``.
        follow_symlinks: ``False`` (default) refuses a symlink as the last path component. Model files
            pass ``True`` with a path that :func:`kdmarl_student.manifest.resolve_bundle_file` already
            resolved inside the bundle.
        error: the ``BundleError`` subclass to raise (``SignatureError`` for ``manifest.sig``).
    """
    path = Path(path)
    fd = _open(path, what, follow_symlinks, error)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(path, "", f"{what} as a regular file; got a {_file_kind(info.st_mode)} (refused: reading "
                        "it could block or never end)")
        _check_size(path, info.st_size, limit=limit, expected_size=expected_size, size_field=size_field, what=what,
                    error=error)
        try:
            return _read_exactly(fd, info.st_size, path, error)
        except OSError as exc:
            raise error(path, "", f"{what} that can be read: {exc}") from exc
        except MemoryError as exc:
            raise error(path, "", f"{what} that fits in this robot's memory ({info.st_size} bytes)") from exc
    finally:
        os.close(fd)
