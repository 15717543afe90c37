"""Fixtures shared by several test modules of kdmarl_teacher."""

from __future__ import annotations

from pathlib import Path

import pytest
from kdmarl_teacher.algos.config import default_config_path, load_config
from kdmarl_teacher.algos.mappo import train


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MAPPO teacher on simple_spread (one per test module that asks for it: about half a minute)."""
    out = tmp_path_factory.mktemp("teacher")
    cfg = load_config(default_config_path("simple_spread"), [
        "num_envs=128", "total_steps=96000", "lr=0.003", "actor_hidden=[64,64]", "critic_hidden=[64,64]",
        "torch_threads=1", "checkpoint_every=1000"])
    return train(cfg, out, progress=False)
