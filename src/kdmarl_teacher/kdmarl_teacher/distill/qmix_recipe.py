"""Value-decomposition distillation: a frozen QMIX teacher -> budget-sized, critic-free students.

`kdmarl distill --teacher RUN` comes here when RUN holds a QMIX teacher (`distill.distill` dispatches on
`teacher.algo`). Students, teams, sensing, hardware budgets, students.pt, evaluation and export are those of the
MAPPO recipe (`distill.py`); what differs is what the students learn from. A student's outputs are read as its
utilities Q_i^S(o_i, .): it acts on their argmax, as the teacher's agents act on argmax_a Q_i(o_i, a), so the
exported ONNX graph and the ROS path are unchanged.

Per iteration (CleanRL style, one readable loop):
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
At the end: greedy teacher / students / random on the same mpe2 seeds -> distill_report.json (as distill.py).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from kdmarl_student.atomic import atomic_file
from kdmarl_student.bundle_eval import retention as team_retention

from kdmarl_teacher import envs
from kdmarl_teacher.algos.mixer import QMixer, mixer_state
from kdmarl_teacher.algos.teacher import Teacher
from kdmarl_teacher.core.config import save_config
from kdmarl_teacher.core.errors import NonFiniteError, writing
from kdmarl_teacher.core.losses import argmax_ce_loss, kd_kl_loss
from kdmarl_teacher.core.networks import actor_inputs_all, apply_action_mask, sample_actions
from kdmarl_teacher.core.run_files import (
    atomic_save,
    divergence_error,
    load_checkpoint,
    nonfinite_tensors,
    prepare_run_dir,
)
from kdmarl_teacher.core.training_run import SEED_STRIDE, MetricsLog
from kdmarl_teacher.distill.config import QMIX_TERMS, DistillConfig
from kdmarl_teacher.distill.profiles import TeamConfig
from kdmarl_teacher.distill.report import agent_rows, team_for_teacher, win_rate_fields
from kdmarl_teacher.distill.students_file import FILE_NAME as STUDENTS_FILE
from kdmarl_teacher.distill.students_file import students_payload
from kdmarl_teacher.distill.team import StudentTeam, agent_mask, sequences, unroll
from kdmarl_teacher.distill.team_eval import evaluate_students

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


@dataclass
class QRollout:
    """One iteration's student rollout with the QMIX teacher's labels, time-major: T steps of B envs, N agents."""

    inputs: list[torch.Tensor]  # per agent [T, B, in_dim_i]
    states: list[torch.Tensor]  # per agent [T, B, H_i]: a recurrent student's state before step t (H_i = 0: MLP)
    starts: torch.Tensor  # bool [T, B]
    actions: torch.Tensor  # long [T, B, N]
    t_q: torch.Tensor  # [T, B, N, A_max] teacher utilities (invalid actions masked)
    t_q_tot: torch.Tensor  # [T, B] teacher Q_tot of the students' joint action
    mix_state: torch.Tensor  # [T, B, S'] the mixer state (global state + time feature)
    masks: torch.Tensor | None = None  # bool [T, B, N, A_max]: available actions at step t (SMAX); None: MPE
    ep_returns: list[torch.Tensor] = field(default_factory=list)
    ep_metrics: dict[str, list[torch.Tensor]] = field(default_factory=dict)


@torch.no_grad()
def rollout(env: Any, teacher: Teacher, team: StudentTeam, gen: torch.Generator, *, seed: int, num_steps: int,
            temperature: float) -> QRollout:
    """The students act (softmax(Q^S / temperature), sampled with `gen`) for `num_steps` steps from
    `env.reset(seed=seed)`; the teacher labels every state. Memory (history features, student and teacher GRU
    states) is reset at every episode start, as in `distill.rollout`."""
    obs, state = env.reset(seed=seed)  # [B, N, D], [B, S]
    T, B, N = num_steps, obs.shape[0], obs.shape[1]
    device = obs.device
    time_feature = bool(teacher.config.get("mixer_time", False))
    max_cycles = int(teacher.spec.max_cycles)
    hs = team.initial_states(B)
    S = teacher.mixer.state_dim
    ro = QRollout(inputs=[torch.zeros(T, B, s.in_dim, device=device) for s in team.students],
                  states=[torch.zeros(T, *h.shape, device=device) for h in hs],
                  starts=torch.zeros(T, B, dtype=torch.bool, device=device),
                  actions=torch.zeros(T, B, N, dtype=torch.long, device=device),
                  t_q=torch.zeros(T, B, N, teacher.actor.n_actions_max, device=device),
                  t_q_tot=torch.zeros(T, B, device=device), mix_state=torch.zeros(T, B, S, device=device))
    if hasattr(env, "available_actions"):  # SMAX: per-step masks (MPE: none, no mask path)
        ro.masks = torch.zeros(T, B, N, teacher.actor.n_actions_max, dtype=torch.bool, device=device)
    h = teacher.actor.initial_state(B * N)
    prev = obs
    start = torch.ones(B, dtype=torch.bool, device=device)
    for t in range(T):
        ro.starts[t] = start
        mask = None
        if ro.masks is not None:
            ro.masks[t] = mask = env.available_actions()  # [B, N, A]: of the state the actions are taken in
        xs = team.inputs(obs, prev)
        for i, hi in enumerate(hs):
            ro.states[i][t] = hi
        outs, hs = team.logits(xs, hs)
        for i, (x, q_i) in enumerate(zip(xs, outs, strict=True)):  # q_i [B, A_i]
            ro.inputs[i][t], ro.actions[t, :, i] = x, sample_actions(agent_mask(q_i, mask, i) / temperature, gen)
        tq, _, h = teacher.actor.step(actor_inputs_all(obs).reshape(B * N, -1), h)
        ro.t_q[t] = apply_action_mask(tq.view(B, N, -1), mask)  # the teacher's targets, masked too
        ms = mixer_state(state, env.t if time_feature else None, max_cycles)  # [B, S']
        ro.mix_state[t] = ms
        taken = ro.t_q[t].gather(-1, ro.actions[t].unsqueeze(-1)).squeeze(-1)  # [B, N]
        ro.t_q_tot[t] = teacher.mixer(taken, ms)
        next_obs, state, _, done, info = env.step(ro.actions[t])
        start = done
        keep = (~start).to(h.dtype)
        h = h * keep.repeat_interleave(N).unsqueeze(1)
        hs = [hi * keep.unsqueeze(1) for hi in hs]
        prev = torch.where(start.view(B, 1, 1), next_obs, obs)
        obs = next_obs
        if bool(done.any()):
            ro.ep_returns.append(info["episode_returns"][done].mean(1))
            for k, v in info["metrics"].items():
                ro.ep_metrics.setdefault(k, []).append(v[done].float())
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


def minibatches(cfg: DistillConfig, team: StudentTeam, ro: QRollout) -> Iterator[dict[str, Any]]:
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
           ro: QRollout, *, terms: dict[str, float], diverged: Callable[[dict[str, float]], Exception]
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
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]], cfg.max_grad_norm)
            values = {f"loss/{k}": float(v.detach()) for k, v in {**parts, "loss": loss}.items()}
            values["grad_norm"] = float(grad_norm)
            if not all(map(math.isfinite, values.values())):
                raise diverged(values)
            optimizer.step()
            for k, v in {**parts, "loss": loss, "grad_norm": grad_norm}.items():
                stats[k] = stats.get(k, 0.0) + float(v.detach())
            agreement += agree
            n_mb += 1
    return {k: v / n_mb for k, v in stats.items()}, agreement / n_mb


def distill_qmix(cfg: DistillConfig, teacher: Teacher, out_dir: str | Path, *, teacher_path: str | Path | None = None,
                 resume: bool = False, progress: bool = True, team: TeamConfig | None = None) -> dict:
    """Distill a QMIX teacher (module docstring); returns the report (also out_dir/distill_report.json)."""
    if teacher.mixer is None:
        raise ValueError("value-decomposition distillation needs a QMIX teacher (teacher.pt with algo: qmix)")
    cfg.validate()
    out = Path(out_dir)
    ckpt_path = prepare_run_dir(out, resume, what="distillation")
    torch.set_num_threads(cfg.torch_threads)
    device = torch.device(cfg.device)
    t_start = time.time()

    team, teacher_actor_res, teacher_info = team_for_teacher(cfg, teacher, teacher_path, team)
    spec = teacher.spec
    N = spec.n_agents
    torch.manual_seed(cfg.seed)
    if cfg.resource_aware:
        raise ValueError("distill config key 'resource_aware': the value-decomposition recipe (QMIX teacher) has "
                         "no pruning option; expected resource_aware: false")
    students = [a.rung.build(a.input_dim, a.n_actions).to(device) for a in team.agents]
    student_mixer = QMixer(teacher.mixer.state_dim, N, embed=cfg.student_mixer_embed, hypernet_hidden=0).to(device)
    print(f"KD-MARL distill (value decomposition, QMIX teacher): team {team.name} ({team.source_file}); teacher "
          f"agent network {teacher_actor_res.flops} FLOPs, {teacher_actor_res.params} params")
    for line in team.summary_lines():
        print("  " + line)
    optimizer = torch.optim.Adam([*(p for s in students for p in s.parameters()), *student_mixer.parameters()],
                                 lr=cfg.lr, eps=1e-5)
    student_team = StudentTeam(team, students)
    env = envs.make_env(spec.name, num_envs=cfg.num_envs, seed=cfg.seed, device=device, **spec.params)
    B, T = cfg.num_envs, cfg.num_steps
    n_iters = max(1, cfg.total_steps // (B * T))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    start_iter, global_step, wall_before = 0, 0, 0.0
    if resume:
        ck = load_checkpoint(ckpt_path, device)
        cfg.check_resume(ck["config"])
        for s, sd in zip(students, ck["students"], strict=True):
            s.load_state_dict(sd)
        student_mixer.load_state_dict(ck["student_mixer"])
        optimizer.load_state_dict(ck["optimizer"])
        gen.set_state(ck["gen_state"])
        torch.set_rng_state(ck["torch_rng"])
        start_iter, global_step, wall_before = ck["iteration"], ck["global_step"], ck["wall_time"]
        print(f"resumed from {ckpt_path} at iteration {start_iter} ({global_step} steps)")

    save_config(cfg, out / "distill_config.yaml")
    log = MetricsLog(out, start_iter if resume else None, global_step)
    last_checkpoint = start_iter if resume else None
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=n_iters, initial=start_iter, desc="distill (qmix)", unit="it", dynamic_ncols=True)
    extra = {"recipe": RECIPE}

    def save_all(iteration: int, final: bool = False) -> None:
        nonlocal last_checkpoint
        atomic_save({"iteration": iteration, "global_step": global_step, "wall_time": wall_before + time.time() - t0,
                     "students": [s.state_dict() for s in students], "archs": [s.arch() for s in students],
                     "student_mixer": student_mixer.state_dict(), "optimizer": optimizer.state_dict(),
                     "gen_state": gen.get_state(), "torch_rng": torch.get_rng_state(),
                     "config": dataclasses.asdict(cfg)}, ckpt_path)
        atomic_save(students_payload(team, students, teacher_info, dataclasses.asdict(cfg), step=global_step,
                                     extra={"final": final, **extra}), out / STUDENTS_FILE)
        last_checkpoint = iteration

    def diverged(iteration_number: int, values: dict[str, float]) -> NonFiniteError:
        if bar is not None:
            bar.close()
        log.close()
        modules = {**{f"student_{a.name}": s for a, s in zip(team.agents, students, strict=True)},
                   "student_mixer": student_mixer}
        return divergence_error(iteration_number, values, modules, ckpt_path, last_checkpoint)

    t0 = time.time()
    terms = cfg.terms(QMIX_TERMS)
    iteration = start_iter
    for iteration in range(start_iter, n_iters):
        if cfg.time_limit_minutes > 0 and wall_before + time.time() - t0 > 60 * cfg.time_limit_minutes:
            print(f"time limit of {cfg.time_limit_minutes} min reached at iteration {iteration}")
            break
        if cfg.anneal_lr:
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * (1.0 - iteration / n_iters)
        ro = rollout(env, teacher, student_team, gen, seed=cfg.seed * SEED_STRIDE + iteration, num_steps=T,
                     temperature=cfg.q_temperature)
        global_step += B * T
        stats, agreement = update(cfg, student_team, student_mixer, optimizer, ro, terms=terms,
                                  diverged=functools.partial(diverged, iteration + 1))
        if nonfinite_tensors(t for m in (*students, student_mixer) for t in m.state_dict().items()):
            raise diverged(iteration + 1, {})
        wall = wall_before + time.time() - t0
        row: dict[str, Any] = {"iteration": iteration + 1, "global_step": global_step, "wall_time": round(wall, 3),
                               "sps": round(global_step / max(wall, 1e-9), 1)}
        row.update({f"loss/{k}": v for k, v in stats.items()})
        row["teacher_agreement"] = agreement
        if ro.ep_returns:
            row["train_team_return"] = float(torch.cat(ro.ep_returns).mean())
            row.update({f"task/{k}": float(torch.cat(v).mean()) for k, v in ro.ep_metrics.items()})
        if (iteration + 1) % cfg.log_every == 0:
            log.write(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(ret=f"{row.get('train_team_return', float('nan')):.2f}", agree=f"{agreement:.3f}")
        if (iteration + 1) % cfg.checkpoint_every == 0:
            save_all(iteration + 1)
    else:
        iteration = n_iters
    if bar is not None:
        bar.close()
    wall = wall_before + time.time() - t0
    save_all(iteration, final=True)
    log.close()

    for s in students:
        s.eval()
    ev = evaluate_students(teacher, student_team, episodes=cfg.eval_episodes, seed=cfg.eval_seed, device=cfg.device)
    ev_teacher, ev_students, ev_random = ev["teacher"], ev["students"], ev["random"]
    retention = team_retention(ev_students["team_return"], ev_teacher["team_return"], ev_random["team_return"])
    agents_report = agent_rows(team, students, teacher_actor_res.flops)
    report = {
        "team": team.name, "scenario": spec.name, "params": dict(spec.params), "teacher": teacher_info,
        "recipe": RECIPE, "terms": terms, "resource_aware": False, "global_step": global_step,
        "wall_time_s": round(wall, 1), "total_time_s": round(time.time() - t_start, 1),
        "eval_mode": "greedy (argmax of utilities) for teacher and students; uniform random baseline",
        "teacher_eval": ev_teacher, "students_eval": ev_students, "random_eval": ev_random,
        "retention": retention, "agents": agents_report,
        **win_rate_fields(ev_teacher, ev_students),
        "min_flops_reduction": min(a["flops_reduction"] for a in agents_report),
        "config": dataclasses.asdict(cfg), "command": " ".join(sys.argv),
        "flops_note": ("FLOPs = 2 x MACs of the Linear layers and GRU cells at batch 1 (activations, gate "
                       "nonlinearities, LayerNorm, masking not counted); the student mixer is training-only and "
                       "not counted (it is not exported)"),
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
          f"| min FLOPs reduction {report['min_flops_reduction']:.1f}x | {wall:.0f} s training")
    return report
