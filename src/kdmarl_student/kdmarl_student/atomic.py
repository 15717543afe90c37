"""Atomic file writes: the one way kdmarl writes anything a reader may open while it is being written
(checkpoints, students, signatures, benchmark results); and of a bundle, a directory: written into a hidden
staging sibling, then renamed into place by :func:`publish_directory` (``kdmarl export``, ``kdmarl compose``,
``kdmarl envelope --write``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary file next to ``path``; on success fsync it and ``os.replace`` it over ``path``.

    A reader sees the old file or the new one, never half of one; on any exception (including
    KeyboardInterrupt) the temporary file is removed and the old file is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_directory(stage: Path, out_dir: Path) -> None:
    """fsync the files of a finished staging directory and rename it into place; an old bundle is moved aside
    first, then removed."""
    for item in stage.iterdir():
        if item.is_file():
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        old.rmdir()
        os.replace(out_dir, old)
        os.replace(stage, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, out_dir)
    with contextlib.suppress(OSError):  # make the rename durable where the filesystem allows it
        fd = os.open(out_dir.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
