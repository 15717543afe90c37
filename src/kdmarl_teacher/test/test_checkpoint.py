"""Atomic checkpoint writes and checkpoint validation."""

from pathlib import Path

import pytest
import torch
from kdmarl_teacher.algos.teacher import build_teacher
from kdmarl_teacher.core.run_files import atomic_save


class _Unpicklable:
    def __reduce__(self) -> tuple:
        raise RuntimeError("boom")


def test_atomic_save_replaces_and_keeps_old_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    atomic_save({"x": torch.ones(3)}, path)
    atomic_save({"x": torch.zeros(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.zeros(3))
    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"x": _Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.zeros(3))  # previous file intact
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind


def test_build_teacher_rejects_foreign_files() -> None:
    with pytest.raises(ValueError, match="not a kdmarl teacher"):
        build_teacher({"format": "something"})
    with pytest.raises(ValueError, match="version"):
        build_teacher({"format": "kdmarl_teacher", "version": 99})
