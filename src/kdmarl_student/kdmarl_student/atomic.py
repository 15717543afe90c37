"""Atomic file writes: the one way kdmarl writes anything a reader may open while it is being written
(checkpoints, students, signatures, benchmark results). Bundles, being directories, are staged and
renamed by ``kdmarl_teacher.export`` instead."""

from __future__ import annotations

import os
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
