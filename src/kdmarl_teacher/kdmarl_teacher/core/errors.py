"""Typed errors of the offline tools, which `kdmarl` (cli.py) turns into one line on stderr and exit code 2.

Why typed: a truncated checkpoint, a YAML typo, a full disk or a diverged run are the user's to fix, not bugs,
so they must say which file (and line) is at fault and what was expected, without a traceback. Raising one of
these where the fault is detected, and printing them in one place (the CLI entry), keeps that promise without
a try/except around every call. Torch-free on purpose: cli.py and config.py import it.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class InputFileError(ValueError):
    """A file kdmarl reads is truncated, corrupt or malformed (a ``ValueError``, as the other bad-input errors).

    Attributes:
        path: the file at fault.
        line: 1-based line of the fault (YAML files), or ``None``.
        expected: what a valid file would have, in words.
    """

    def __init__(self, path: str | Path, expected: str, line: int | None = None) -> None:
        self.path, self.line, self.expected = str(path), line, expected
        super().__init__(f"{self.path}{f':{line}' if line is not None else ''}: {expected}")


class OutputFileError(OSError):
    """Writing ``filename`` failed (disk full, file-size limit, permissions): the OS error, naming the file."""

    def __str__(self) -> str:
        code = errno.errorcode.get(self.errno or 0, "?")
        return f"cannot write {self.filename}: {self.strerror} ({code})"


class NonFiniteError(RuntimeError):
    """A loss, gradient or weight became NaN/Inf (training diverged), or a file to export holds such weights."""


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Re-raise an ``OSError`` of the block as :class:`OutputFileError` naming ``path``: a failed ``write()``
    reports no file name of its own."""
    try:
        yield
    except OutputFileError:
        raise
    except OSError as err:
        raise OutputFileError(err.errno, err.strerror, str(path)) from err
