"""The configuration of `kdmarl distill` (both recipes): `DistillConfig`, its loss terms, allowed ranges and
loading (defaults <- YAML <- `--set`); the shared machinery is `core.config`'s."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from kdmarl_teacher.core.config import Range, RunConfig, check_device, check_ranges, coerce, load_yaml, parse_set

# ------------------------------------------------------------------------------ the distill config
TERMS = ("pg", "kl", "ce", "relation", "role")
QMIX_TERMS = ("kl", "ce", "util", "mixer")  # the value-decomposition recipe's terms (distill/qmix_recipe.py)
ALL_TERMS = (*TERMS, "util", "mixer")  # every term with a use_/w_ pair (and a --no-TERM flag)


@dataclass
class DistillConfig(RunConfig):
    """Hyper-parameters of `kdmarl distill` (YAML: config/distill.yaml; `--set key=value` overrides). Allowed
    ranges: `DISTILL_RANGES` below the class; values outside them are refused at load."""

    resume_may_change: ClassVar[tuple[str, ...]] = ("device", "time_limit_minutes", "total_steps")  # may extend

    team: str = "spread3_full"  # config/teams/NAME.yaml or a path
    seed: int = 1
    device: str = "cpu"
    torch_threads: int = 1
    num_envs: int = 128  # B
    num_steps: int = 25  # T per iteration (= max_cycles: one whole episode per env, reset with a fresh seed)
    total_steps: int = 1_500_000  # joint env steps of student rollouts
    time_limit_minutes: float = 0.0  # > 0: stop after this wall time too
    lr: float = 3e-3
    anneal_lr: bool = True
    update_epochs: int = 4
    num_minibatches: int = 4
    max_grad_norm: float = 1.0
    # --- loss terms: weight and switch -------------------------------------------------------------------
    use_pg: bool = True
    w_pg: float = 0.1
    use_kl: bool = True
    w_kl: float = 1.0
    use_ce: bool = True
    w_ce: float = 0.1
    use_relation: bool = True
    w_relation: float = 0.5
    use_role: bool = True
    w_role: float = 0.1
    temperature: float = 2.0  # softening of the KL term (scaled by T²)
    # --- value-decomposition recipe (a QMIX teacher; distill/qmix_recipe.py): terms kl, ce, util, mixer -------------
    use_util: bool = True  # regression of the student's utilities on the teacher's Q_i (valid actions only)
    w_util: float = 0.1
    use_mixer: bool = True  # mixer distillation: a training-only student mixer reproduces the teacher's Q_tot
    w_mixer: float = 0.1
    q_temperature: float = 0.02  # T_q: QMIX utilities are compared in units of T_q (softmax(Q_i / T_q) for KL,
    #                              CE and the students' sampling; Q / T_q for the regression): about the teacher's
    #                              gap between its best two actions (0.02 on simple_spread)
    student_mixer_embed: int = 8  # width of the student mixer (training only, dropped at export)
    clip_coef: float = 0.2
    gamma: float = 0.99
    gae_lambda: float = 0.95
    norm_adv: bool = True
    ent_coef: float = 0.0
    n_roles: int = 4  # k of the k-means on teacher embeddings
    rel_dim: int = 32  # common width of the students' relation projections
    # --- students with memory (issue 11) -------------------------------------------------------------------
    memory: str = ""  # "" = each agent's team-config choice; none / history / recurrent forces one kind on all
    chunk_len: int = 0  # truncated BPTT length of recurrent students; 0 = num_steps (whole rollouts)
    # --- resource-aware option (group lasso + prune + fine-tune) ---------------------------------------------
    resource_aware: bool = False
    ra_width_mult: float = 2.0
    ra_lambda: float = 1e-3
    ra_prune_at: float = 0.6  # fraction of total_steps
    # --- evaluation and bookkeeping ----------------------------------------------------------------------
    eval_episodes: int = 200
    eval_seed: int = 1000  # mpe2 seeds eval_seed ... eval_seed + eval_episodes - 1 (DESIGN.md §5)
    checkpoint_every: int = 20
    log_every: int = 1

    def validate(self, origins: dict[str, str] | None = None) -> None:
        """Types and ranges (`DISTILL_RANGES`), naming the key and, via `origins`, the file or `--set`."""
        check_ranges(dataclasses.asdict(self), DISTILL_RANGES, origins or {}, "distill config key")
        check_device(self.device, (origins or {}).get("device"))
        if self.num_envs * self.num_steps % self.num_minibatches:
            raise ValueError("distill config key 'num_minibatches' must divide num_envs * num_steps")
        if self.memory not in ("", "none", "history", "recurrent"):
            raise ValueError(f"distill config key 'memory' = {self.memory!r}: expected '' (the team's choice), "
                             "'none', 'history' or 'recurrent'")
        if self.chunk_len and self.num_steps % self.chunk_len:
            raise ValueError(f"distill config key 'chunk_len' ({self.chunk_len}) must divide num_steps "
                             f"({self.num_steps}), or be 0 (= num_steps)")

    def sequence_length(self, recurrent: bool) -> int:
        """Steps per training sequence: 1 for stateless students (independent samples), else the BPTT chunk."""
        return (self.chunk_len or self.num_steps) if recurrent else 1



    def terms(self, names: tuple[str, ...] = TERMS) -> dict[str, float]:
        """Active terms and weights (of the MAPPO recipe, or `QMIX_TERMS` for the value-decomposition one)."""
        return {t: float(getattr(self, f"w_{t}")) for t in names if getattr(self, f"use_{t}")}


# Allowed ranges, checked at load (as RANGES for the teacher): outside them a run diverges
# (lr > 1), means nothing (gamma, lambda > 1; a negative loss weight maximises its loss) or exhausts memory.
DISTILL_RANGES: dict[str, Range] = {
    "seed": Range(0, 2**32 - 1),
    "torch_threads": Range(1, 1024),
    "num_envs": Range(1, 65_536),
    "num_steps": Range(1, 100_000),
    "total_steps": Range(1),
    "time_limit_minutes": Range(0),
    "lr": Range(0, 1, low_open=True),
    "update_epochs": Range(1, 1000),
    "num_minibatches": Range(1),  # and it must divide num_envs * num_steps
    "chunk_len": Range(0, 100_000),  # and it must divide num_steps
    "max_grad_norm": Range(0, low_open=True),
    **{f"w_{t}": Range(0, 100) for t in ALL_TERMS},  # loss weights; switch a term off with use_<term>: false
    "temperature": Range(0, 100, low_open=True),
    "q_temperature": Range(0, 100, low_open=True),
    "student_mixer_embed": Range(1, 4096),
    "clip_coef": Range(0, 1, low_open=True),
    "gamma": Range(0, 1),
    "gae_lambda": Range(0, 1),
    "ent_coef": Range(0, 1),
    "n_roles": Range(1, 64),
    "rel_dim": Range(1, 4096),
    "ra_width_mult": Range(1, 16),
    "ra_lambda": Range(0, 1),
    "ra_prune_at": Range(0, 1, high_open=True),  # at 1 the prune point is never reached
    "eval_episodes": Range(1, 100_000),
    "eval_seed": Range(0, 2**32 - 1),
    "checkpoint_every": Range(1),
    "log_every": Range(1),
}


def load_distill_config(path: str | Path | None, overrides: list[str] | None = None) -> DistillConfig:
    """Defaults <- YAML <- `--set key=value` (YAML-parsed values); unknown keys, wrong types and values out of
    range raise ValueError naming the source (the file or `--set`) and the key."""
    cfg = DistillConfig()
    defaults = dataclasses.asdict(cfg)
    origins: dict[str, str] = {}

    def apply(values: Any, source: str) -> None:
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a mapping of distill config keys, got {type(values).__name__}")
        for key, value in values.items():
            if key not in defaults:
                raise ValueError(f"{source}: unknown distill config key {key!r}")
            setattr(cfg, key, coerce(key, value, defaults[key], source, what="distill config key"))
            origins[key] = source

    if path is not None:
        apply(load_yaml(path) or {}, str(path))
    apply(parse_set(overrides), "--set")
    cfg.validate(origins)
    return cfg

