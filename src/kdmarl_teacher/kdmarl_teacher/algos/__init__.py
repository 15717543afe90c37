"""Teacher algorithms: what trains a frozen teacher (`kdmarl train`) and the one owner of teacher.pt.

- `mappo`: MAPPO (CTDE actor-critic), `qmix` (+ `qmix_replay`, `mixer`): QMIX (value decomposition);
- `teacher`: teacher.pt, written and read here only (`teacher_payload`, `load_teacher`), for both algorithms;
- `config`: their run configurations; `train_cli`: the `kdmarl train` command.

`ALGORITHMS` is the registry behind `kdmarl train --algo`: name -> config class, loader and training function
(imported when used, so `kdmarl train --help` stays light).
May import: `envs`, `core`, `kdmarl_student`'s pure functions. Never `distill` or anything above it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdmarl_teacher.algos.config import QmixConfig, TeacherConfig, load_config, load_qmix_config


@dataclass(frozen=True)
class Algorithm:
    """One teacher algorithm of `kdmarl train`: its config class and loader, and the module whose `train(cfg,
    out_dir, resume=, progress=) -> Path` writes teacher.pt."""

    name: str
    config_class: type
    load_config: Callable[[str | Path | None, list[str] | None], Any]
    module: str

    def train(self) -> Callable[..., Path]:
        return importlib.import_module(self.module).train


ALGORITHMS: dict[str, Algorithm] = {
    "mappo": Algorithm("mappo", TeacherConfig, load_config, "kdmarl_teacher.algos.mappo"),
    "qmix": Algorithm("qmix", QmixConfig, load_qmix_config, "kdmarl_teacher.algos.qmix"),
}
