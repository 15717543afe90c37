"""`kdmarl distill`: KD-MARL — distill a frozen MAPPO teacher into budget-sized, critic-free students.

One readable loop (CleanRL style). Per iteration:
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

import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from kdmarl_student.atomic import atomic_file
from kdmarl_student.bundle_eval import retention as team_retention

from kdmarl_teacher import envs
from kdmarl_teacher.algos.teacher import Teacher
from kdmarl_teacher.core.config import save_config
from kdmarl_teacher.core.errors import NonFiniteError, writing
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
from kdmarl_teacher.core.run_files import (
    atomic_save,
    divergence_error,
    load_checkpoint,
    nonfinite_tensors,
    prepare_run_dir,
)
from kdmarl_teacher.core.training_run import SEED_STRIDE, MetricsLog
from kdmarl_teacher.distill.config import TERMS, DistillConfig
from kdmarl_teacher.distill.profiles import TeamConfig
from kdmarl_teacher.distill.pruning import group_lasso_penalty, prune_to_budget
from kdmarl_teacher.distill.qmix_recipe import distill_qmix
from kdmarl_teacher.distill.report import agent_rows, team_for_teacher, win_rate_fields
from kdmarl_teacher.distill.roles import AuxHeads, assign_roles, fit_roles
from kdmarl_teacher.distill.students import build_student
from kdmarl_teacher.distill.students_file import FILE_NAME as STUDENTS_FILE
from kdmarl_teacher.distill.students_file import students_payload
from kdmarl_teacher.distill.team import StudentTeam, agent_mask, sequences, unroll
from kdmarl_teacher.distill.team_eval import evaluate_students

# ------------------------------------------------------------------------------------------- policies






# ------------------------------------------------------------------------------------- rollout and update
@dataclass
class Rollout:
    """One iteration's student rollout with the teacher's labels, time-major: T steps of B envs, N agents."""

    inputs: list[torch.Tensor]  # per agent [T, B, in_dim_i]: the sensed observation the student acted on
    states: list[torch.Tensor]  # per agent [T, B, H_i]: a recurrent student's state before step t (H_i = 0: MLP)
    starts: torch.Tensor  # bool [T, B]: step t is the first of an episode (memory was reset before it)
    actions: torch.Tensor  # long [T, B, N]
    logp: torch.Tensor  # [T, B, N] log-probability of the action under the acting student
    rewards: torch.Tensor  # [T, B, N]
    dones: torch.Tensor  # bool [T, B]: the episode ended with step t
    t_logits: torch.Tensor  # [T, B, N, A_max] teacher logits (full observation)
    t_emb: torch.Tensor  # [T, B, N, E] teacher last-hidden embedding
    values: torch.Tensor  # [T, B, N] teacher critic (denormalized) of the state at t
    next_value: torch.Tensor  # [B, N] of the state after the last step
    masks: torch.Tensor | None = None  # bool [T, B, N, A_max]: available actions at step t (SMAX); None: MPE
    ep_returns: list[torch.Tensor] = field(default_factory=list)  # team returns of the episodes that ended
    ep_metrics: dict[str, list[torch.Tensor]] = field(default_factory=dict)


@torch.no_grad()
def rollout(env: Any, teacher: Teacher, team: StudentTeam, gen: torch.Generator, h0: torch.Tensor, *, seed: int,
            num_steps: int) -> Rollout:
    """The students act (sampled with `gen`, so a resume replays the same draws) for `num_steps` steps from
    `env.reset(seed=seed)`; the frozen teacher labels every visited state (its GRU state starts at `h0`).
    Memory is reset at every episode start: the previous observation of history features and the students'
    hidden states (the teacher's too)."""
    obs, state = env.reset(seed=seed)  # obs [B, N, D], state [B, S]
    T, B, N = num_steps, obs.shape[0], obs.shape[1]
    device = obs.device
    X = [torch.zeros(T, B, s.in_dim, device=device) for s in team.students]
    hs = team.initial_states(B)
    ro = Rollout(inputs=X, states=[torch.zeros(T, *h.shape, device=device) for h in hs],
                 starts=torch.zeros(T, B, dtype=torch.bool, device=device),
                 actions=torch.zeros(T, B, N, dtype=torch.long, device=device),
                 logp=torch.zeros(T, B, N, device=device), rewards=torch.zeros(T, B, N, device=device),
                 dones=torch.zeros(T, B, dtype=torch.bool, device=device),
                 t_logits=torch.zeros(T, B, N, teacher.actor.n_actions_max, device=device),
                 t_emb=torch.zeros(T, B, N, teacher.actor.embed_dim, device=device),
                 values=torch.zeros(T, B, N, device=device), next_value=torch.zeros(B, N, device=device))
    if hasattr(env, "available_actions"):  # SMAX: per-step masks (MPE: none, no mask path)
        ro.masks = torch.zeros(T, B, N, teacher.actor.n_actions_max, dtype=torch.bool, device=device)
    h = h0
    prev = obs  # an episode start: the current observation stands in for the previous one
    start = torch.ones(B, dtype=torch.bool, device=device)
    for t in range(T):
        ro.starts[t] = start
        mask = None
        if ro.masks is not None:
            ro.masks[t] = mask = env.available_actions()  # [B, N, A]: of the state the actions are taken in
        xs = team.inputs(obs, prev)
        for i, hi in enumerate(hs):
            ro.states[i][t] = hi
        logits, hs = team.logits(xs, hs)
        for i, (x, raw_i) in enumerate(zip(xs, logits, strict=True)):  # [B, A_i]
            logits_i = agent_mask(raw_i, mask, i)
            a_i = sample_actions(logits_i, gen)
            X[i][t], ro.actions[t, :, i] = x, a_i
            ro.logp[t, :, i] = F.log_softmax(logits_i, -1).gather(-1, a_i[:, None]).squeeze(-1)
        tl, tz, h = teacher.actor.step(actor_inputs_all(obs).reshape(B * N, -1), h)
        ro.t_logits[t] = apply_action_mask(tl.reshape(B, N, -1), mask)  # the teacher's targets, masked too
        ro.t_emb[t] = tz.reshape(B, N, -1)
        ro.values[t] = teacher.value(state, getattr(env, "t", None))  # time-aware critics need the step count
        next_obs, state, ro.rewards[t], ro.dones[t], info = env.step(ro.actions[t])
        start = ro.dones[t]
        keep = (~start).to(h.dtype)  # [B]: 0 where a new episode begins (auto-reset)
        h = h * keep.repeat_interleave(N).unsqueeze(1)
        hs = [hi * keep.unsqueeze(1) for hi in hs]
        prev = torch.where(start.view(B, 1, 1), next_obs, obs)
        obs = next_obs
        if bool(ro.dones[t].any()):
            ro.ep_returns.append(info["episode_returns"][ro.dones[t]].mean(1))
            for k, v in info["metrics"].items():
                ro.ep_metrics.setdefault(k, []).append(v[ro.dones[t]].float())
    ro.next_value = teacher.value(state, getattr(env, "t", None))
    return ro






def update(cfg: DistillConfig, team: StudentTeam, aux: AuxHeads, optimizer: torch.optim.Optimizer, ro: Rollout, *,
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
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]], cfg.max_grad_norm)
            values = {f"loss/{k}": float(v.detach()) for k, v in {**parts, "loss": loss}.items()}
            values["grad_norm"] = float(grad_norm)
            if not all(map(math.isfinite, values.values())):  # stop before the step spreads NaN into the weights
                raise diverged(values)
            optimizer.step()
            for k, v in {**parts, "loss": loss, "grad_norm": grad_norm}.items():
                stats[k] = stats.get(k, 0.0) + float(v.detach())
            agreement += agree
            n_mb += 1
    return {k: v / n_mb for k, v in stats.items()}, agreement / n_mb


# --------------------------------------------------------------------------------------------- the run






def distill(cfg: DistillConfig, teacher: Teacher, out_dir: str | Path, *, teacher_path: str | Path | None = None,
            resume: bool = False, progress: bool = True, team: TeamConfig | None = None) -> dict:
    """Run KD-MARL distillation; returns the report dict (also written to out_dir/distill_report.json).
    A QMIX teacher is distilled by the value-decomposition recipe (`distill_qmix.distill_qmix`)."""
    if teacher.algo == "qmix":
        return distill_qmix(cfg, teacher, out_dir, teacher_path=teacher_path, resume=resume, progress=progress,
                            team=team)
    cfg.validate()
    out = Path(out_dir)
    ckpt_path = prepare_run_dir(out, resume, what="distillation")
    torch.set_num_threads(cfg.torch_threads)
    device = torch.device(cfg.device)
    t_start = time.time()

    # ---- teacher, team, students -------------------------------------------------------------------------------
    team, teacher_actor_res, teacher_info = team_for_teacher(cfg, teacher, teacher_path, team)
    spec = teacher.spec
    N = spec.n_agents
    torch.manual_seed(cfg.seed)
    if cfg.resource_aware and any(a.rung.gru_hidden for a in team.agents):
        raise ValueError(f"distill config key 'resource_aware': pruning supports MLP students only; team "
                         f"{team.name} has recurrent students ({[a.name for a in team.agents if a.rung.gru_hidden]})")
    width_mult = cfg.ra_width_mult if cfg.resource_aware else 1.0
    students = [a.rung.build(a.input_dim, a.n_actions, width_mult).to(device) for a in team.agents]
    print(f"KD-MARL distill: team {team.name} ({team.source_file}); teacher actor {teacher_actor_res.flops} FLOPs, "
          f"{teacher_actor_res.params} params")
    for line in team.summary_lines():
        print("  " + line)
    aux = AuxHeads([s.embed_dim for s in students], cfg.n_roles, cfg.rel_dim).to(device)

    def make_optimizer() -> torch.optim.Optimizer:
        return torch.optim.Adam([*(p for s in students for p in s.parameters()), *aux.parameters()], lr=cfg.lr,
                                eps=1e-5)

    optimizer = make_optimizer()
    student_team = StudentTeam(team, students)
    env = envs.make_env(spec.name, num_envs=cfg.num_envs, seed=cfg.seed, device=device, **spec.params)
    B, T = cfg.num_envs, cfg.num_steps
    n_iters = max(1, cfg.total_steps // (B * T))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    start_iter, global_step, wall_before, pruned = 0, 0, 0.0, False
    centroids = None
    if resume:
        ck = load_checkpoint(ckpt_path, device)
        cfg.check_resume(ck["config"])
        if ck.get("pruned"):
            students[:] = [build_student(a).to(device) for a in ck["archs"]]
            aux = AuxHeads([s.embed_dim for s in students], cfg.n_roles, cfg.rel_dim).to(device)
            optimizer = make_optimizer()
            student_team = StudentTeam(team, students)
        for s, sd in zip(students, ck["students"], strict=True):
            s.load_state_dict(sd)
        aux.load_state_dict(ck["aux"])
        optimizer.load_state_dict(ck["optimizer"])
        gen.set_state(ck["gen_state"])
        torch.set_rng_state(ck["torch_rng"])
        start_iter, global_step, wall_before = ck["iteration"], ck["global_step"], ck["wall_time"]
        centroids, pruned = ck["centroids"].to(device), ck.get("pruned", False)
        print(f"resumed from {ckpt_path} at iteration {start_iter} ({global_step} steps)")

    # ---- roles: k-means on teacher embeddings of states the teacher itself visits ---------------------------------
    h0 = teacher.actor.initial_state(B * N)
    if centroids is None:
        obs, _ = env.reset(seed=cfg.seed * SEED_STRIDE - 1)
        embs, h = [], h0
        with torch.no_grad():
            for _ in range(T):
                logits, z, h = teacher.actor.step(actor_inputs_all(obs).reshape(B * N, -1), h)
                embs.append(z)
                mask = env.available_actions().reshape(B * N, -1) if hasattr(env, "available_actions") else None
                obs, _, _, dones, _ = env.step(sample_actions(apply_action_mask(logits, mask), gen).reshape(B, N))
                h = h * (~dones).repeat_interleave(N).unsqueeze(1).to(h.dtype)
        centroids = fit_roles(torch.cat(embs), cfg.n_roles, seed=cfg.seed)

    # ---- logging (after the run-directory guard and the resume check: a refused run leaves the first one intact) ----
    config_path = out / "distill_config.yaml"
    save_config(cfg, config_path)
    log = MetricsLog(out, start_iter if resume else None, global_step)
    last_checkpoint = start_iter if resume else None  # the iteration checkpoint.pt holds
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=n_iters, initial=start_iter, desc="distill", unit="it", dynamic_ncols=True)

    def save_all(iteration: int, final: bool = False) -> None:
        nonlocal last_checkpoint
        atomic_save({"iteration": iteration, "global_step": global_step, "wall_time": wall_before + time.time() - t0,
                     "students": [s.state_dict() for s in students], "archs": [s.arch() for s in students],
                     "aux": aux.state_dict(), "optimizer": optimizer.state_dict(), "gen_state": gen.get_state(),
                     "torch_rng": torch.get_rng_state(), "centroids": centroids.cpu(), "pruned": pruned,
                     "config": dataclasses.asdict(cfg)}, ckpt_path)
        atomic_save(students_payload(team, students, teacher_info, dataclasses.asdict(cfg), step=global_step,
                                     extra={"final": final, "role_centroids": centroids.cpu()}),
                    out / STUDENTS_FILE)
        last_checkpoint = iteration

    def diverged(iteration_number: int, values: dict[str, float]) -> NonFiniteError:
        if bar is not None:
            bar.close()
        log.close()
        modules = {**{f"student_{a.name}": s for a, s in zip(team.agents, students, strict=True)}, "aux": aux}
        return divergence_error(iteration_number, values, modules, ckpt_path, last_checkpoint)

    t0 = time.time()
    terms = cfg.terms()
    prune_iter = int(cfg.ra_prune_at * n_iters) if cfg.resource_aware else -1
    iteration = start_iter
    for iteration in range(start_iter, n_iters):
        if cfg.time_limit_minutes > 0 and wall_before + time.time() - t0 > 60 * cfg.time_limit_minutes:
            print(f"time limit of {cfg.time_limit_minutes} min reached at iteration {iteration}")
            break
        if iteration == prune_iter and not pruned:
            students[:] = [prune_to_budget(s, a.hardware).to(device)
                           for s, a in zip(students, team.agents, strict=True)]
            aux = AuxHeads([s.embed_dim for s in students], cfg.n_roles, cfg.rel_dim).to(device)
            optimizer, student_team, pruned = make_optimizer(), StudentTeam(team, students), True
            print("resource-aware: pruned to " + ", ".join(f"{list(s.hidden)}" for s in students))
        if cfg.anneal_lr:
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * (1.0 - iteration / n_iters)

        # ---- 1. rollout: students act, the frozen teacher labels --------------------------------------------------
        ro = rollout(env, teacher, student_team, gen, h0, seed=cfg.seed * SEED_STRIDE + iteration, num_steps=T)
        global_step += B * T

        # ---- 2. teacher-guided advantages ---------------------------------------------------------------------
        adv, _ = gae(ro.rewards, ro.values, ro.next_value, ro.dones, gamma=cfg.gamma, lam=cfg.gae_lambda)  # [T, B, N]
        roles = assign_roles(ro.t_emb, centroids)  # [T, B, N]

        # ---- 3. update ---------------------------------------------------------------------------------------
        stats, agreement = update(cfg, student_team, aux, optimizer, ro, adv=adv, roles=roles, terms=terms,
                                  lasso=cfg.resource_aware and not pruned,
                                  diverged=functools.partial(diverged, iteration + 1))
        if nonfinite_tensors(t for m in (*students, aux) for t in m.state_dict().items()):
            raise diverged(iteration + 1, {})

        # ---- 4. log, checkpoint ----------------------------------------------------------------------------------
        wall = wall_before + time.time() - t0
        row: dict[str, Any] = {"iteration": iteration + 1, "global_step": global_step, "wall_time": round(wall, 3),
                               "sps": round(global_step / max(wall, 1e-9), 1)}
        row.update({f"loss/{k}": v for k, v in stats.items()})
        row["teacher_agreement"] = agreement  # a fraction, not a loss: what report's agreement panel draws
        if ro.ep_returns:
            row["train_team_return"] = float(torch.cat(ro.ep_returns).mean())
            row.update({f"task/{k}": float(torch.cat(v).mean()) for k, v in ro.ep_metrics.items()})
        if (iteration + 1) % cfg.log_every == 0:
            log.write(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(ret=f"{row.get('train_team_return', float('nan')):.2f}",
                            agree=f"{row['teacher_agreement']:.3f}")
        if (iteration + 1) % cfg.checkpoint_every == 0:
            save_all(iteration + 1)
    else:
        iteration = n_iters
    if bar is not None:
        bar.close()
    wall = wall_before + time.time() - t0
    save_all(iteration, final=True)
    log.close()

    # ---- 5. evaluation and report ------------------------------------------------------------------------------
    for s in students:
        s.eval()
    ev = evaluate_students(teacher, student_team, episodes=cfg.eval_episodes, seed=cfg.eval_seed, device=cfg.device)
    ev_teacher, ev_students, ev_random = ev["teacher"], ev["students"], ev["random"]
    retention = team_retention(ev_students["team_return"], ev_teacher["team_return"], ev_random["team_return"])
    agents_report = agent_rows(team, students, teacher_actor_res.flops)
    report = {
        "team": team.name, "scenario": spec.name, "params": dict(spec.params), "teacher": teacher_info,
        "terms": terms, "resource_aware": cfg.resource_aware, "global_step": global_step,
        "wall_time_s": round(wall, 1), "total_time_s": round(time.time() - t_start, 1),
        "eval_mode": "greedy (argmax) for teacher and students; uniform random baseline",
        "teacher_eval": ev_teacher, "students_eval": ev_students, "random_eval": ev_random,
        "retention": retention, "agents": agents_report,
        **win_rate_fields(ev_teacher, ev_students),
        "min_flops_reduction": min(a["flops_reduction"] for a in agents_report),
        "config": dataclasses.asdict(cfg), "command": " ".join(sys.argv),
        "flops_note": ("FLOPs = 2 x MACs of the Linear layers and GRU cells at batch 1 (activations, gate "
                       "nonlinearities, LayerNorm, masking not counted); memory includes carried state"),
    }
    report_path = out / "distill_report.json"
    with writing(report_path), atomic_file(report_path) as fh:
        fh.write(json.dumps(report, indent=2).encode())
    if "win_rate" in ev_students:
        print(f"win rate: teacher {ev_teacher['win_rate']:.3f} ± {ev_teacher['win_rate_ci95']:.3f} | students "
              f"{ev_students['win_rate']:.3f} ± {ev_students['win_rate_ci95']:.3f} | random "
              f"{ev_random['win_rate']:.3f}")
    print(f"teacher {ev_teacher['team_return']:.2f} ± {ev_teacher['ci95']:.2f} | students "
          f"{ev_students['team_return']:.2f} ± {ev_students['ci95']:.2f} | random {ev_random['team_return']:.2f} "
          f"| retention {'n/a' if retention is None else f'{retention:.3f}'} "
          f"| min FLOPs reduction {report['min_flops_reduction']:.1f}x | "
          f"{wall:.0f} s training")
    return report


# ------------------------------------------------------------------------------------------------- CLI







