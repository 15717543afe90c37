"""What a distillation recipe supplies to the one loop (`distill.loop`): its students and trainable extras, its
rollout labels, its update, and its own lines of the checkpoint and the report. The loop owns the rest (run
directory, resume, RNG streams, logging, checkpoints, divergence stop, evaluation, the shared report)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from kdmarl_teacher.algos.teacher import Teacher
from kdmarl_teacher.distill.config import DistillConfig
from kdmarl_teacher.distill.profiles import TeamConfig
from kdmarl_teacher.distill.rollout import Rollout
from kdmarl_teacher.distill.team import Student, StudentTeam


class Recipe:
    """A recipe's state: the students, its extra trainable module (`extra`: role/relation heads, a student
    mixer), their one optimizer and the team. Subclasses fill in the hooks below."""

    name: str = ""  # distill_report.json "recipe" (empty: the original KD-MARL recipe writes none)
    progress_desc: str = "distill"
    extra_key: str = "extra"  # the name of `extra` in checkpoint.pt and in a divergence message
    eval_mode: str = ""
    flops_note: str = ""

    def __init__(self, cfg: DistillConfig, teacher: Teacher, team: TeamConfig, device: torch.device) -> None:
        self.cfg, self.teacher, self.team_config, self.device = cfg, teacher, team, device
        self.terms: dict[str, float] = {}
        self.students: list[Student] = []
        self.extra: nn.Module = nn.Module()
        self.optimizer: torch.optim.Optimizer | None = None
        self.team: StudentTeam | None = None

    # ---- building (in this order: it is the order of the global RNG draws of network initialization) -----------
    def build(self) -> None:
        self.students = self.build_students()
        self.extra = self.build_extra()
        self.reset_optimizer()

    def build_students(self) -> list[Student]:
        raise NotImplementedError

    def build_extra(self) -> nn.Module:
        raise NotImplementedError

    def header(self, teacher_flops: int, teacher_params: int) -> str:
        raise NotImplementedError

    def reset_optimizer(self) -> None:
        """One Adam over every student and the extra module (after building, resuming a pruned run, pruning)."""
        self.optimizer = torch.optim.Adam([*(p for s in self.students for p in s.parameters()),
                                           *self.extra.parameters()], lr=self.cfg.lr, eps=1e-5)
        self.team = StudentTeam(self.team_config, self.students)

    def modules(self) -> dict[str, nn.Module]:
        """What a divergence message names: every student and the extra module."""
        return {**{f"student_{a.name}": s for a, s in zip(self.team_config.agents, self.students, strict=True)},
                self.extra_key: self.extra}

    # ---- resume and checkpoints ------------------------------------------------------------------------------------
    def load_state(self, ck: dict[str, Any]) -> None:
        """Restore students, the extra module and the optimizer from checkpoint.pt."""
        for s, sd in zip(self.students, ck["students"], strict=True):
            s.load_state_dict(sd)
        self.extra.load_state_dict(ck[self.extra_key])
        assert self.optimizer is not None
        self.optimizer.load_state_dict(ck["optimizer"])

    def checkpoint_state(self) -> dict[str, Any]:
        """The recipe's part of checkpoint.pt."""
        assert self.optimizer is not None
        return {"students": [s.state_dict() for s in self.students], "archs": [s.arch() for s in self.students],
                self.extra_key: self.extra.state_dict(), "optimizer": self.optimizer.state_dict()}

    def students_extra(self) -> dict[str, Any]:
        """The recipe's entries of students.pt."""
        return {}

    def report_extra(self) -> dict[str, Any]:
        """The recipe's entries of distill_report.json."""
        return {}

    # ---- the iteration ---------------------------------------------------------------------------------------------
    def prepare(self, env: Any, gen: torch.Generator) -> None:
        """Once before the first iteration (after a resume)."""

    def before_iteration(self, iteration: int, n_iters: int) -> bool:
        """At the start of an iteration; True when the students were replaced (the loop re-watches them)."""
        return False

    def rollout(self, env: Any, gen: torch.Generator, seed: int) -> Rollout:
        raise NotImplementedError

    def update(self, ro: Rollout, diverged: Any) -> tuple[dict[str, float], float]:
        """Returns the per-minibatch means of the loss terms, loss and grad norm, and the agreement with the
        teacher's greedy action; raises `diverged(values)` before a non-finite optimizer step."""
        raise NotImplementedError


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, parts: dict[str, torch.Tensor], *,
                   max_grad_norm: float, diverged: Callable[[dict[str, float]], Exception],
                   stats: dict[str, float]) -> None:
    """One gradient step of a recipe's update: backward, clip the global grad norm, stop with `diverged(values)`
    on a non-finite loss term or grad norm BEFORE the step spreads it into the weights, step, and add every
    term, the loss and the grad norm to `stats` (the caller averages over its minibatches)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], max_grad_norm)
    values = {f"loss/{k}": float(v.detach()) for k, v in {**parts, "loss": loss}.items()}
    values["grad_norm"] = float(grad_norm)
    if not all(map(math.isfinite, values.values())):
        raise diverged(values)
    optimizer.step()
    for k, v in {**parts, "loss": loss, "grad_norm": grad_norm}.items():
        stats[k] = stats.get(k, 0.0) + float(v.detach())
