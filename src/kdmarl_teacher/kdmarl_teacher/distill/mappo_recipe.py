"""The KD-MARL recipe: a frozen MAPPO teacher into budget-sized, critic-free students (`distill.loop` runs it).

Per iteration of the one loop:
1. **Rollout**: the *students* act in B batched environments for T steps (their own mistakes are visited); each
   student sees only its sensing profile's slices of its observation. The frozen teacher labels every visited
   state: logits and last-hidden embedding per agent (full observation), value per agent (global state).
2. **Teacher-guided advantages**: GAE on the students' rewards with the teacher critic's values. No student critic.
3. **Update** for E epochs over minibatches of (t, b) samples — all agents of a sample together, because the
   structural-relation term compares agents of the same timestep. Terms (each weighted, each switchable):
   clipped PG, T²-KL(teacher‖student), CE on teacher argmax, N×N relation, role alignment (see ``losses.py``).
4. Every ``checkpoint_every`` iterations: atomic ``checkpoint.pt`` (``--resume``) and ``students.pt``.
At the end: greedy evaluation of teacher, students and uniform random on the same mpe2 seeds, retention
(DESIGN.md §5), FLOPs reduction per agent -> ``distill_report.json``.

Environments with per-step action masks (SMAX: ``env.available_actions()``, issue 12): the students sample from
masked logits (never an unavailable action), the teacher's labels are its masked logits, and every loss term
(PG, KL, CE, entropy) uses the masked logits of the state the action was taken in; the report gains win rates.
MPE has no masks and takes no mask path at all (bit-identical).

Resource-aware option (``resource_aware: true``): each student starts ``ra_width_mult``× wider than its ladder
rung; a group-lasso penalty on hidden units (incoming + outgoing weights), weighted by each unit's FLOPs cost,
pushes units to zero; at ``ra_prune_at`` of the budget the weakest units are pruned until the student fits its
hardware budget, and the rest of the budget fine-tunes the pruned student.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdmarl_teacher.algos.teacher import Teacher
from kdmarl_teacher.core.losses import (
    argmax_ce_loss,
    clipped_pg_loss,
    entropy,
    gae,
    kd_kl_loss,
    relation_loss,
    relation_matrix,
    role_loss,
)
from kdmarl_teacher.core.networks import actor_inputs_all, apply_action_mask, sample_actions
from kdmarl_teacher.core.training_run import SEED_STRIDE
from kdmarl_teacher.distill.config import TERMS, DistillConfig
from kdmarl_teacher.distill.pruning import group_lasso_penalty, prune_to_budget
from kdmarl_teacher.distill.recipe import Recipe, optimizer_step
from kdmarl_teacher.distill.roles import AuxHeads, assign_roles, fit_roles
from kdmarl_teacher.distill.rollout import Rollout
from kdmarl_teacher.distill.rollout import rollout as students_rollout
from kdmarl_teacher.distill.students import build_student
from kdmarl_teacher.distill.team import Student, StudentTeam, agent_mask, sequences, unroll


# ------------------------------------------------------------------------------------- rollout and update
@dataclass(kw_only=True)
class MappoRollout(Rollout):
    """The students' rollout with the MAPPO teacher's labels."""

    t_logits: torch.Tensor  # [T, B, N, A_max] teacher logits (full observation; masked on SMAX)
    t_emb: torch.Tensor  # [T, B, N, E] teacher last-hidden embedding
    values: torch.Tensor  # [T, B, N] teacher critic (denormalized) of the state at t
    next_value: torch.Tensor  # [B, N] of the state after the last step


class MappoLabeller:
    """The MAPPO teacher labels each visited state: logits, embedding, and its critic's value (for GAE)."""

    def __init__(self, teacher: Teacher) -> None:
        self.teacher = teacher

    def new_rollout(self, shared: dict[str, Any], T: int, B: int, N: int, device: torch.device) -> MappoRollout:
        actor = self.teacher.actor
        return MappoRollout(**shared, t_logits=torch.zeros(T, B, N, actor.n_actions_max, device=device),
                            t_emb=torch.zeros(T, B, N, actor.embed_dim, device=device),
                            values=torch.zeros(T, B, N, device=device), next_value=torch.zeros(B, N, device=device))

    def policy(self, out: torch.Tensor) -> torch.Tensor:
        return out  # a student's outputs are its logits

    def label(self, ro: MappoRollout, t: int, *, t_out: torch.Tensor, t_emb: torch.Tensor, state: torch.Tensor,
              env: Any) -> None:
        ro.t_logits[t], ro.t_emb[t] = t_out, t_emb
        ro.values[t] = self.teacher.value(state, env.t)  # time-aware critics need the step count

    def finish(self, ro: MappoRollout, state: torch.Tensor, env: Any) -> None:
        ro.next_value = self.teacher.value(state, env.t)


def rollout(env: Any, teacher: Teacher, team: StudentTeam, gen: torch.Generator, h0: torch.Tensor, *, seed: int,
            num_steps: int) -> MappoRollout:
    """`distill.rollout.rollout` with the MAPPO teacher's labels (its GRU state starts at `h0`)."""
    ro = students_rollout(env, teacher, team, gen, MappoLabeller(teacher), seed=seed, num_steps=num_steps, h0=h0)
    assert isinstance(ro, MappoRollout)
    return ro


def update(cfg: DistillConfig, team: StudentTeam, aux: AuxHeads, optimizer: torch.optim.Optimizer, ro: MappoRollout, *,
           adv: torch.Tensor, roles: torch.Tensor, terms: dict[str, float], lasso: bool,
           diverged: Callable[[dict[str, float]], Exception]) -> tuple[dict[str, float], float]:
    """`cfg.update_epochs` epochs over minibatches of (t, b) samples, all agents of a sample together (the
    relation term compares agents of the same timestep). With a recurrent student in the team, the samples
    come in whole sequences of `cfg.chunk_len` steps of one env (truncated BPTT from the state the rollout
    stored at the chunk's start); stateless students see the same samples either way. Returns the
    per-minibatch means of every loss term (unweighted), the total loss and the grad norm, and the students'
    agreement with the teacher's argmax. Raises `diverged(values)` before an optimizer step on a non-finite
    loss or grad norm."""
    students, agents = team.students, team.team.agents
    T, B, N = ro.actions.shape
    device = ro.actions.device
    L = cfg.sequence_length(team.recurrent)  # 1: independent (t, b) samples; else BPTT chunks of L steps
    S = T // L * B  # sequences
    seq = {"adv": sequences(adv, L), "logp": sequences(ro.logp, L), "act": sequences(ro.actions, L),
           "tl": sequences(ro.t_logits, L), "tz": sequences(ro.t_emb, L), "roles": sequences(roles, L)}
    if ro.masks is not None:
        seq["mask"] = sequences(ro.masks, L)
    flat = {k: v.reshape(S * L, *v.shape[2:]) for k, v in seq.items()}  # sample (sequence s, step l) = s * L + l
    Xs = [sequences(x, L) for x in ro.inputs]  # [S, L, in_i]
    H0 = [sequences(h, L)[:, 0] for h in ro.states]  # [S, H_i]: the state at each chunk's first step
    starts = sequences(ro.starts, L)  # [S, L]
    stats: dict[str, float] = {}
    n_mb, agreement = 0, 0.0
    for _ in range(cfg.update_epochs):
        perm = torch.randperm(S, device=device)
        for seq_idx in perm.chunk(cfg.num_minibatches):
            idx = (seq_idx[:, None] * L + torch.arange(L, device=device)).reshape(-1)  # samples of these sequences
            parts: dict[str, torch.Tensor] = {k: torch.zeros((), device=device) for k in (*TERMS, "ent")}
            projected = []
            agree = 0.0
            for i, (s, a) in enumerate(zip(students, agents, strict=True)):
                z, logits = unroll(s, Xs[i][seq_idx], H0[i][seq_idx], starts[seq_idx])  # [m, E_i], [m, A_i]
                if "mask" in flat:  # every term on the masked logits (the teacher's in tl are masked already)
                    logits = agent_mask(logits, flat["mask"][idx], i)
                tl = flat["tl"][idx, i, : a.n_actions]  # [m, A_i]: the teacher's valid actions only
                agree += float((logits.argmax(-1) == tl.argmax(-1)).float().mean()) / N
                if "pg" in terms:
                    new_logp = F.log_softmax(logits, -1).gather(-1, flat["act"][idx, i, None]).squeeze(-1)
                    a_adv = flat["adv"][idx, i]
                    if cfg.norm_adv:
                        a_adv = (a_adv - a_adv.mean()) / (a_adv.std() + 1e-8)
                    pg = clipped_pg_loss(new_logp, flat["logp"][idx, i], a_adv, cfg.clip_coef)
                    parts["pg"] = parts["pg"] + pg
                if "kl" in terms:
                    parts["kl"] = parts["kl"] + kd_kl_loss(tl, logits, cfg.temperature)
                if "ce" in terms:
                    parts["ce"] = parts["ce"] + argmax_ce_loss(tl, logits)
                if "role" in terms:
                    parts["role"] = parts["role"] + role_loss(aux.role[i](z), flat["roles"][idx, i])
                if "relation" in terms:
                    projected.append(aux.relation[i](z))
                parts["ent"] = parts["ent"] + entropy(logits)
            if "relation" in terms and N > 1:
                parts["relation"] = relation_loss(relation_matrix(flat["tz"][idx]), relation_matrix(projected))
            loss = sum(w * parts[t] for t, w in terms.items()) - cfg.ent_coef * parts["ent"]
            if lasso:
                parts["lasso"] = sum(group_lasso_penalty(s) for s in students)
                loss = loss + cfg.ra_lambda * parts["lasso"]
            optimizer_step(optimizer, loss, parts, max_grad_norm=cfg.max_grad_norm, diverged=diverged, stats=stats)
            agreement += agree
            n_mb += 1
    return {k: v / n_mb for k, v in stats.items()}, agreement / n_mb



# ------------------------------------------------------------------------------------------- the recipe
class MappoRecipe(Recipe):
    """KD-MARL from a MAPPO teacher (module docstring); the extra module is the role and relation heads."""

    progress_desc = "distill"
    extra_key = "aux"
    eval_mode = "greedy (argmax) for teacher and students; uniform random baseline"
    flops_note = ("FLOPs = 2 x MACs of the Linear layers and GRU cells at batch 1 (activations, gate "
                  "nonlinearities, LayerNorm, masking not counted); memory includes carried state")

    def __init__(self, cfg: DistillConfig, teacher: Any, team: Any, device: torch.device) -> None:
        super().__init__(cfg, teacher, team, device)
        if cfg.resource_aware and any(a.rung.gru_hidden for a in team.agents):
            raise ValueError(f"distill config key 'resource_aware': pruning supports MLP students only; team "
                             f"{team.name} has recurrent students "
                             f"({[a.name for a in team.agents if a.rung.gru_hidden]})")
        self.terms = cfg.terms()
        self.centroids: torch.Tensor | None = None  # roles: k-means centroids of teacher embeddings
        self.pruned = False
        self.h0 = teacher.actor.initial_state(cfg.num_envs * teacher.spec.n_agents)  # the teacher's GRU state

    def build_students(self) -> list[Student]:
        width_mult = self.cfg.ra_width_mult if self.cfg.resource_aware else 1.0
        return [a.rung.build(a.input_dim, a.n_actions, width_mult).to(self.device) for a in self.team_config.agents]

    def build_extra(self) -> nn.Module:
        return AuxHeads([s.embed_dim for s in self.students], self.cfg.n_roles, self.cfg.rel_dim).to(self.device)

    def header(self, teacher_flops: int, teacher_params: int) -> str:
        return (f"KD-MARL distill: team {self.team_config.name} ({self.team_config.source_file}); teacher actor "
                f"{teacher_flops} FLOPs, {teacher_params} params")

    def load_state(self, ck: dict[str, Any]) -> None:
        if ck.get("pruned"):  # the checkpoint holds pruned students: rebuild their shapes first
            self.students = [build_student(a).to(self.device) for a in ck["archs"]]
            self.extra = self.build_extra()
            self.reset_optimizer()
        super().load_state(ck)
        self.centroids, self.pruned = ck["centroids"].to(self.device), ck.get("pruned", False)

    def checkpoint_state(self) -> dict[str, Any]:
        assert self.centroids is not None
        return {**super().checkpoint_state(), "centroids": self.centroids.cpu(), "pruned": self.pruned}

    def students_extra(self) -> dict[str, Any]:
        assert self.centroids is not None
        return {"role_centroids": self.centroids.cpu()}

    def report_extra(self) -> dict[str, Any]:
        return {"resource_aware": self.cfg.resource_aware}

    def prepare(self, env: Any, gen: torch.Generator) -> None:
        """Roles: k-means on teacher embeddings of states the teacher itself visits (not on a resume)."""
        if self.centroids is not None:
            return
        B, T, N = self.cfg.num_envs, self.cfg.num_steps, self.teacher.spec.n_agents
        obs, _ = env.reset(seed=self.cfg.seed * SEED_STRIDE - 1)
        embs, h = [], self.h0
        with torch.no_grad():
            for _ in range(T):
                logits, z, h = self.teacher.actor.step(actor_inputs_all(obs).reshape(B * N, -1), h)
                embs.append(z)
                mask = env.available_actions()
                mask = None if mask is None else mask.reshape(B * N, -1)
                obs, _, _, dones, _ = env.step(sample_actions(apply_action_mask(logits, mask), gen).reshape(B, N))
                h = h * (~dones).repeat_interleave(N).unsqueeze(1).to(h.dtype)
        self.centroids = fit_roles(torch.cat(embs), self.cfg.n_roles, seed=self.cfg.seed)

    def before_iteration(self, iteration: int, n_iters: int) -> bool:
        """Resource-aware option: at `ra_prune_at` of the budget, prune every student to its hardware budget."""
        prune_iter = int(self.cfg.ra_prune_at * n_iters) if self.cfg.resource_aware else -1
        if iteration != prune_iter or self.pruned:
            return False
        self.students = [prune_to_budget(s, a.hardware).to(self.device)
                         for s, a in zip(self.students, self.team_config.agents, strict=True)]
        self.extra = self.build_extra()
        self.reset_optimizer()
        self.pruned = True
        print("resource-aware: pruned to " + ", ".join(f"{list(s.hidden)}" for s in self.students))
        return True

    def rollout(self, env: Any, gen: torch.Generator, seed: int) -> MappoRollout:
        assert self.team is not None
        return rollout(env, self.teacher, self.team, gen, self.h0, seed=seed, num_steps=self.cfg.num_steps)

    def update(self, ro: Rollout, diverged: Callable[[dict[str, float]], Exception]) -> tuple[dict[str, float], float]:
        assert isinstance(ro, MappoRollout) and self.team is not None and self.optimizer is not None
        assert self.centroids is not None and isinstance(self.extra, AuxHeads)
        cfg = self.cfg
        adv, _ = gae(ro.rewards, ro.values, ro.next_value, ro.dones, gamma=cfg.gamma, lam=cfg.gae_lambda)  # [T, B, N]
        roles = assign_roles(ro.t_emb, self.centroids)  # [T, B, N]
        return update(cfg, self.team, self.extra, self.optimizer, ro, adv=adv, roles=roles, terms=self.terms,
                      lasso=cfg.resource_aware and not self.pruned, diverged=diverged)
