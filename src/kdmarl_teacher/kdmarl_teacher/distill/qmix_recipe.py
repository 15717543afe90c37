"""Value-decomposition distillation: a frozen QMIX teacher -> budget-sized, critic-free students.

`kdmarl distill --teacher RUN` runs this recipe in the one loop (`distill.loop`) when RUN holds a QMIX teacher.
Students, teams, sensing, hardware budgets, students.pt, evaluation and export are those of the MAPPO recipe
(`distill.mappo_recipe`); what differs is what the students learn from. A student's outputs are read as its
utilities Q_i^S(o_i, .): it acts on their argmax, as the teacher's agents act on argmax_a Q_i(o_i, a), so the
exported ONNX graph and the ROS path are unchanged.

Per iteration of the one loop:
1. **Rollout**: the students act in B batched environments for T steps, sampling softmax(Q_i^S / T_q) (their own
   mistakes are visited); each sees only its sensing profile's slices. The frozen teacher labels every visited
   state: its utilities Q_i^T(o_i, .) on the full observation, and its Q_tot of the joint action the students
   took, from its own mixer on the global state.
2. **Update**, E epochs over minibatches of (t, b) samples (whole BPTT chunks for recurrent students), all
   agents of a sample together, the terms each weighted and switchable (`--no-kl`, `--no-ce`, `--no-util`,
   `--no-mixer`):
   - `kl`: KL(softmax(Q^T/T_q) || softmax(Q^S/T_q)), the teacher's soft preferences over actions;
   - `ce`: cross-entropy of softmax(Q^S/T_q) on the teacher's greedy action;
     both in units of T_q (`q_temperature`): a QMIX teacher's utilities differ between actions by a few
     hundredths (the mixer's V(s) carries the value; measured on simple_spread: median gap between the best two
     actions 0.02), so T_q is set to that scale, without Hinton's T^2 factor (which assumes logits of order 1);
   - `util`: MSE between Q_i^S and Q_i^T over the agent's valid actions (the teacher's masked actions and the
     padding of a smaller action set are not regressed): the utilities themselves, level included, not only
     their ranking (the level is what the mixer term needs);
   - `mixer`: **mixer distillation**. A small student mixer (`qmix.QMixer` with one-layer hypernetworks,
     monotonic like the teacher's; training only, never exported) maps the students' utilities of the taken
     actions and the global state to a Q_tot, regressed on the teacher's Q_tot. Its error flows into the
     utilities too, so they are pushed toward a decomposition the teacher's team value endorses, even where a
     small student cannot copy each Q_i^T.
3. Every `checkpoint_every` iterations: atomic checkpoint.pt (`--resume`, bit-exact) and students.pt.
At the end: greedy teacher / students / random on the same seeds -> distill_report.json (the loop's).

On SMAX the students sample only available actions and the teacher's utilities are masked (`distill.rollout`);
kl and ce compare masked utilities, util regresses the available actions only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdmarl_teacher.algos.mixer import QMixer, mixer_state
from kdmarl_teacher.algos.teacher import Teacher
from kdmarl_teacher.core.losses import argmax_ce_loss, kd_kl_loss
from kdmarl_teacher.distill.config import QMIX_TERMS, DistillConfig
from kdmarl_teacher.distill.recipe import Recipe, optimizer_step
from kdmarl_teacher.distill.rollout import Rollout
from kdmarl_teacher.distill.rollout import rollout as students_rollout
from kdmarl_teacher.distill.team import Student, StudentTeam, agent_mask, sequences, unroll

RECIPE = "value_decomposition"


def utility_loss(teacher_q: torch.Tensor, student_q: torch.Tensor, available: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """MSE between utilities over an agent's valid actions: teacher_q, student_q [M, A_i] -> scalar. The caller
    passes the teacher's first A_i outputs only (the padding of a smaller action set never enters); `available`
    bool [M, A_i] (SMAX) keeps only the entries of actions the environment allowed in that state (the teacher's
    masked ones are -1e8, not utilities)."""
    if available is None:
        return F.mse_loss(student_q, teacher_q)
    return F.mse_loss(student_q[available], teacher_q[available])


def mixer_distill_loss(student_mixer: QMixer, student_q_taken: torch.Tensor, state: torch.Tensor,
                       teacher_q_tot: torch.Tensor) -> torch.Tensor:
    """(Q_tot^S - Q_tot^T)^2: the student mixer on the students' utilities of the taken actions [M, N] and the
    mixer state [M, S'] against the teacher's Q_tot of the same joint action [M] -> scalar."""
    return F.mse_loss(student_mixer(student_q_taken, state), teacher_q_tot)


@dataclass(kw_only=True)
class QmixRollout(Rollout):
    """The students' rollout with the QMIX teacher's labels."""

    t_q: torch.Tensor  # [T, B, N, A_max] teacher utilities (padding and, on SMAX, unavailable actions masked)
    t_q_tot: torch.Tensor  # [T, B] teacher Q_tot of the students' joint action
    mix_state: torch.Tensor  # [T, B, S'] the mixer state (global state + time feature)


class QmixLabeller:
    """The QMIX teacher labels each visited state with its utilities and the Q_tot of the students' joint action;
    students sample softmax(Q^S / T_q)."""

    def __init__(self, teacher: Teacher, temperature: float) -> None:
        self.teacher, self.temperature = teacher, temperature
        self.time_feature = bool(teacher.config.get("mixer_time", False))
        self.max_cycles = int(teacher.spec.max_cycles)

    def new_rollout(self, shared: dict[str, Any], T: int, B: int, N: int, device: torch.device) -> QmixRollout:
        assert self.teacher.mixer is not None
        return QmixRollout(**shared, t_q=torch.zeros(T, B, N, self.teacher.actor.n_actions_max, device=device),
                           t_q_tot=torch.zeros(T, B, device=device),
                           mix_state=torch.zeros(T, B, self.teacher.mixer.state_dim, device=device))

    def policy(self, out: torch.Tensor) -> torch.Tensor:
        return out / self.temperature  # utilities in units of T_q

    def label(self, ro: QmixRollout, t: int, *, t_out: torch.Tensor, t_emb: torch.Tensor, state: torch.Tensor,
              env: Any) -> None:
        assert self.teacher.mixer is not None
        ro.t_q[t] = t_out
        ms = mixer_state(state, env.t if self.time_feature else None, self.max_cycles)  # [B, S']
        ro.mix_state[t] = ms
        taken = ro.t_q[t].gather(-1, ro.actions[t].unsqueeze(-1)).squeeze(-1)  # [B, N]
        ro.t_q_tot[t] = self.teacher.mixer(taken, ms)

    def finish(self, ro: QmixRollout, state: torch.Tensor, env: Any) -> None:
        pass


def rollout(env: Any, teacher: Teacher, team: StudentTeam, gen: torch.Generator, *, seed: int, num_steps: int,
            temperature: float) -> QmixRollout:
    """`distill.rollout.rollout` with the QMIX teacher's labels (students sample softmax(Q^S / temperature))."""
    ro = students_rollout(env, teacher, team, gen, QmixLabeller(teacher, temperature), seed=seed,
                          num_steps=num_steps)
    assert isinstance(ro, QmixRollout)
    return ro


def term_losses(cfg: DistillConfig, team: StudentTeam, student_mixer: QMixer, mb: dict[str, Any],
                terms: dict[str, float]) -> tuple[dict[str, torch.Tensor], float]:
    """Every active term (unweighted; an inactive one is a constant 0) on one minibatch of m sequences of L steps:
    mb = {"x": per agent [m, L, in_i], "h0": per agent [m, H_i], "starts" [m, L], "act" [m*L, N],
    "tq" [m*L, N, A_max], "qtot" [m*L], "ms" [m*L, S'], and on SMAX "mask" bool [m*L, N, A_max]}. With masks the
    kl and ce terms compare masked utilities and util regresses the available actions only. Returns (terms,
    agreement with the teacher's argmax)."""
    device = mb["act"].device
    N = len(team.students)
    parts = {k: torch.zeros((), device=device) for k in QMIX_TERMS}
    mask = mb.get("mask")  # [m*L, N, A_max] (SMAX) or None
    taken, agree = [], 0.0
    for i, (s, a) in enumerate(zip(team.students, team.team.agents, strict=True)):
        _, q_s = unroll(s, mb["x"][i], mb["h0"][i], mb["starts"])  # [m*L, A_i]
        q_t = mb["tq"][:, i, : a.n_actions]  # [m*L, A_i]: the agent's valid actions only (masked on SMAX)
        q_s_masked = agent_mask(q_s, mask, i)
        agree += float((q_s_masked.argmax(-1) == q_t.argmax(-1)).float().mean()) / N
        z_t, z_s = q_t / cfg.q_temperature, q_s_masked / cfg.q_temperature  # utilities in units of T_q
        if "kl" in terms:
            parts["kl"] = parts["kl"] + kd_kl_loss(z_t, z_s, 1.0)
        if "ce" in terms:
            parts["ce"] = parts["ce"] + argmax_ce_loss(z_t, z_s)
        if "util" in terms:
            parts["util"] = parts["util"] + utility_loss(q_t, q_s, None if mask is None else mask[:, i, : a.n_actions])
        taken.append(q_s.gather(-1, mb["act"][:, i, None]).squeeze(-1))  # [m*L]
    if "mixer" in terms:
        parts["mixer"] = mixer_distill_loss(student_mixer, torch.stack(taken, dim=-1), mb["ms"], mb["qtot"])
    return parts, agree


def minibatches(cfg: DistillConfig, team: StudentTeam, ro: QmixRollout) -> Iterator[dict[str, Any]]:
    """One epoch of minibatches (`term_losses`' mb dicts) over the rollout's sequences, in a fresh random order
    (torch's global RNG, as distill.update). Sequences are single (t, b) samples for stateless students and
    BPTT chunks of `chunk_len` steps of one env when the team has a recurrent student."""
    T, B, _ = ro.actions.shape
    device = ro.actions.device
    L = cfg.sequence_length(team.recurrent)
    S = T // L * B
    flat = {k: sequences(v, L).reshape(S * L, *v.shape[2:]) for k, v in
            {"act": ro.actions, "tq": ro.t_q, "qtot": ro.t_q_tot, "ms": ro.mix_state,
             **({} if ro.masks is None else {"mask": ro.masks})}.items()}
    Xs = [sequences(x, L) for x in ro.inputs]
    H0 = [sequences(h, L)[:, 0] for h in ro.states]
    starts = sequences(ro.starts, L)
    for seq_idx in torch.randperm(S, device=device).chunk(cfg.num_minibatches):
        idx = (seq_idx[:, None] * L + torch.arange(L, device=device)).reshape(-1)
        yield {"x": [x[seq_idx] for x in Xs], "h0": [h[seq_idx] for h in H0], "starts": starts[seq_idx],
               **{k: v[idx] for k, v in flat.items()}}


def update(cfg: DistillConfig, team: StudentTeam, student_mixer: QMixer, optimizer: torch.optim.Optimizer,
           ro: QmixRollout, *, terms: dict[str, float], diverged: Callable[[dict[str, float]], Exception]
           ) -> tuple[dict[str, float], float]:
    """`cfg.update_epochs` epochs over minibatches of (t, b) samples with every agent of a sample (the mixer term
    needs the whole team's utilities at one step). Returns per-minibatch means of every term (unweighted), the
    loss and grad norm, and the students' agreement with the teacher's greedy action. Raises `diverged(values)`
    before an optimizer step on a non-finite loss or grad norm."""
    stats: dict[str, float] = {}
    n_mb, agreement = 0, 0.0
    for _ in range(cfg.update_epochs):
        for mb in minibatches(cfg, team, ro):
            parts, agree = term_losses(cfg, team, student_mixer, mb, terms)
            loss = sum(w * parts[t] for t, w in terms.items())
            optimizer_step(optimizer, loss, parts, max_grad_norm=cfg.max_grad_norm, diverged=diverged, stats=stats)
            agreement += agree
            n_mb += 1
    return {k: v / n_mb for k, v in stats.items()}, agreement / n_mb


# ------------------------------------------------------------------------------------------- the recipe
class QmixRecipe(Recipe):
    """Value-decomposition distillation from a QMIX teacher (module docstring); the extra module is the
    training-only student mixer."""

    name = RECIPE
    progress_desc = "distill (qmix)"
    extra_key = "student_mixer"
    eval_mode = "greedy (argmax of utilities) for teacher and students; uniform random baseline"
    flops_note = ("FLOPs = 2 x MACs of the Linear layers and GRU cells at batch 1 (activations, gate "
                  "nonlinearities, LayerNorm, masking not counted); the student mixer is training-only and "
                  "not counted (it is not exported)")

    def __init__(self, cfg: DistillConfig, teacher: Teacher, team: Any, device: torch.device) -> None:
        if teacher.mixer is None:
            raise ValueError("value-decomposition distillation needs a QMIX teacher (teacher.pt with algo: qmix)")
        super().__init__(cfg, teacher, team, device)
        if cfg.resource_aware:
            raise ValueError("distill config key 'resource_aware': the value-decomposition recipe (QMIX teacher) "
                             "has no pruning option; expected resource_aware: false")
        self.terms = cfg.terms(QMIX_TERMS)

    def build_students(self) -> list[Student]:
        return [a.rung.build(a.input_dim, a.n_actions).to(self.device) for a in self.team_config.agents]

    def build_extra(self) -> nn.Module:
        assert self.teacher.mixer is not None
        return QMixer(self.teacher.mixer.state_dim, self.teacher.spec.n_agents, embed=self.cfg.student_mixer_embed,
                      hypernet_hidden=0).to(self.device)

    def header(self, teacher_flops: int, teacher_params: int) -> str:
        return (f"KD-MARL distill (value decomposition, QMIX teacher): team {self.team_config.name} "
                f"({self.team_config.source_file}); teacher agent network {teacher_flops} FLOPs, "
                f"{teacher_params} params")

    def students_extra(self) -> dict[str, Any]:
        return {"recipe": RECIPE}

    def report_extra(self) -> dict[str, Any]:
        return {"recipe": RECIPE, "resource_aware": False}

    def rollout(self, env: Any, gen: torch.Generator, seed: int) -> QmixRollout:
        assert self.team is not None
        return rollout(env, self.teacher, self.team, gen, seed=seed, num_steps=self.cfg.num_steps,
                       temperature=self.cfg.q_temperature)

    def update(self, ro: Rollout, diverged: Callable[[dict[str, float]], Exception]) -> tuple[dict[str, float], float]:
        assert isinstance(ro, QmixRollout) and self.team is not None and self.optimizer is not None
        assert isinstance(self.extra, QMixer)
        return update(self.cfg, self.team, self.extra, self.optimizer, ro, terms=self.terms, diverged=diverged)
