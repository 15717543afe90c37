"""The one distillation loop (`kdmarl distill`), CleanRL style, for every recipe: a frozen teacher into
budget-sized, critic-free students. Which teacher it is picks the recipe (`RECIPES`: MAPPO -> KD-MARL,
`distill.mappo_recipe`; QMIX -> value decomposition, `distill.qmix_recipe`); the recipe supplies the rollout's
labels, the update and its own lines of the checkpoint and report, and this loop does the rest:

1. set up the run (`core.training_run.TrainingRun`: run directory, `--resume` bit-exact, config file, metrics
   log, progress bar, divergence stop), the team and its students (budget-sized from the team config), one
   generator for every sampled action, the batched environments;
2. per iteration: the recipe's rollout (`distill.rollout`: students act, masked on SMAX, the teacher labels),
   its update, a check that every weight is finite, a metrics row, and every `checkpoint_every` iterations an
   atomic checkpoint.pt (for `--resume`) and students.pt;
3. at the end: greedy teacher, students and uniform random on the same seeds (`distill.team_eval`), retention
   (DESIGN.md §5), win rates on SMAX, FLOPs reduction per agent -> distill_report.json.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from kdmarl_student.atomic import atomic_file
from kdmarl_student.bundle_eval import retention as team_retention

from kdmarl_teacher import envs
from kdmarl_teacher.algos.teacher import Teacher
from kdmarl_teacher.core.errors import writing
from kdmarl_teacher.core.training_run import SEED_STRIDE, TrainingRun, anneal_lr
from kdmarl_teacher.distill.config import DistillConfig
from kdmarl_teacher.distill.mappo_recipe import MappoRecipe
from kdmarl_teacher.distill.profiles import TeamConfig
from kdmarl_teacher.distill.qmix_recipe import QmixRecipe
from kdmarl_teacher.distill.recipe import Recipe
from kdmarl_teacher.distill.report import agent_rows, team_for_teacher, win_rate_fields
from kdmarl_teacher.distill.students_file import FILE_NAME as STUDENTS_FILE
from kdmarl_teacher.distill.students_file import students_payload
from kdmarl_teacher.distill.team_eval import evaluate_students

RECIPES: dict[str, type[Recipe]] = {"mappo": MappoRecipe, "qmix": QmixRecipe}  # teacher.algo -> recipe



def rollout_truncation(num_steps: int, max_cycles: int) -> str:
    """Every iteration rolls its `num_steps` steps out from a fresh reset (one whole MPE episode at the shipped 25),
    so with fewer steps than the scenario's episode limit the students never act past step `num_steps` of an
    episode: a long SMAX battle (up to 100 steps) is distilled on its opening only. Empty when nothing is cut."""
    if num_steps >= max_cycles:
        return ""
    return (f"num_steps {num_steps} < the scenario's episode limit {max_cycles}: every iteration restarts the "
            f"episodes, so the students are never trained past step {num_steps} of an episode (set "
            f"num_steps={max_cycles}, and fewer num_envs to keep the batch)")

def distill(cfg: DistillConfig, teacher: Teacher, out_dir: str | Path, *, teacher_path: str | Path | None = None,
            resume: bool = False, progress: bool = True, team: TeamConfig | None = None) -> dict:
    """Distill `teacher` into the team's students (module docstring); returns the report dict (also written to
    out_dir/distill_report.json)."""
    cfg.validate()
    out = Path(out_dir)
    run = TrainingRun(out, resume=resume, what="distillation", checkpoint_every=cfg.checkpoint_every,
                      torch_threads=cfg.torch_threads)
    device = torch.device(cfg.device)
    t_start = time.time()

    # ---- teacher, team, students -------------------------------------------------------------------------------
    team, teacher_actor_res, teacher_info = team_for_teacher(cfg, teacher, teacher_path, team)
    spec = teacher.spec
    torch.manual_seed(cfg.seed)  # network initialization
    recipe = RECIPES[teacher.algo](cfg, teacher, team, device)
    recipe.build()
    print(recipe.header(teacher_actor_res.flops, teacher_actor_res.params))
    for line in team.summary_lines():
        print("  " + line)
    env = envs.make_env(spec.name, num_envs=cfg.num_envs, seed=cfg.seed, device=device, **spec.params)
    B, T = cfg.num_envs, cfg.num_steps
    rollout_note = rollout_truncation(T, env.max_cycles)
    if rollout_note:
        print(f"warning: {rollout_note}", file=sys.stderr)
    n_iters = max(1, cfg.total_steps // (B * T))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)  # every action the students sample
    start_iter, global_step, wall_before = 0, 0, 0.0
    if resume:
        ck = run.load(device)
        cfg.check_resume(ck["config"])
        recipe.load_state(ck)
        gen.set_state(ck["gen_state"])
        torch.set_rng_state(ck["torch_rng"])
        start_iter, global_step, wall_before = ck["iteration"], ck["global_step"], ck["wall_time"]
        print(f"resumed from {run.ckpt_path} at iteration {start_iter} ({global_step} steps)")
    recipe.prepare(env, gen)

    # ---- the run's files (after the run-directory guard and the resume check: a refused run leaves the first one
    # intact) ----------------------------------------------------------------------------------------------------
    run.start(cfg, "distill_config.yaml", start_iteration=start_iter, resume_step=global_step,
              wall_before=wall_before, progress=progress, bar_total=n_iters, bar_initial=start_iter,
              desc=recipe.progress_desc)
    run.watch(recipe.modules())

    def save_all(iteration: int, final: bool = False) -> None:
        run.save(iteration, {
            run.ckpt_path: {"iteration": iteration, "global_step": global_step, "wall_time": run.wall(),
                            **recipe.checkpoint_state(), "gen_state": gen.get_state(),
                            "torch_rng": torch.get_rng_state(), "config": dataclasses.asdict(cfg)},
            out / STUDENTS_FILE: students_payload(team, recipe.students, teacher_info, dataclasses.asdict(cfg),
                                                  step=global_step,
                                                  extra={"final": final, **recipe.students_extra()})})

    iteration = start_iter
    for iteration in range(start_iter, n_iters):
        if run.over_time(cfg.time_limit_minutes):
            print(f"time limit of {cfg.time_limit_minutes} min reached at iteration {iteration}")
            break
        if recipe.before_iteration(iteration, n_iters):  # the students were replaced (pruning)
            run.watch(recipe.modules())
        assert recipe.optimizer is not None
        if cfg.anneal_lr:
            anneal_lr(recipe.optimizer, cfg.lr, iteration, n_iters)

        # ---- rollout (students act, the frozen teacher labels) and the recipe's update --------------------------
        ro = recipe.rollout(env, gen, seed=cfg.seed * SEED_STRIDE + iteration)
        global_step += B * T
        stats, agreement = recipe.update(ro, functools.partial(run.diverged, iteration + 1))
        run.check_weights(iteration + 1, {})

        # ---- log, checkpoint ----------------------------------------------------------------------------------
        wall = run.wall()
        row: dict[str, Any] = {"iteration": iteration + 1, "global_step": global_step, "wall_time": round(wall, 3),
                               "sps": round(global_step / max(wall, 1e-9), 1)}
        row.update({f"loss/{k}": v for k, v in stats.items()})
        row["teacher_agreement"] = agreement  # a fraction, not a loss: what report's agreement panel draws
        if ro.ep_returns:
            row["train_team_return"] = float(torch.cat(ro.ep_returns).mean())
            row.update({f"task/{k}": float(torch.cat(v).mean()) for k, v in ro.ep_metrics.items()})
        if (iteration + 1) % cfg.log_every == 0:
            run.log_row(row)
        run.advance(1, ret=f"{row.get('train_team_return', float('nan')):.2f}", agree=f"{agreement:.3f}")
        if run.due(iteration + 1):
            save_all(iteration + 1)
    else:
        iteration = n_iters
    wall = run.wall()
    save_all(iteration, final=True)
    run.close()

    # ---- evaluation and report ------------------------------------------------------------------------------------
    for s in recipe.students:
        s.eval()
    assert recipe.team is not None
    ev = evaluate_students(teacher, recipe.team, episodes=cfg.eval_episodes, seed=cfg.eval_seed, device=cfg.device)
    ev_teacher, ev_students, ev_random = ev["teacher"], ev["students"], ev["random"]
    retention = team_retention(ev_students["team_return"], ev_teacher["team_return"], ev_random["team_return"])
    agents_report = agent_rows(team, recipe.students, teacher_actor_res.flops)
    report = {
        "team": team.name, "scenario": spec.name, "params": dict(spec.params), "teacher": teacher_info,
        "terms": recipe.terms, **recipe.report_extra(), "global_step": global_step,
        "wall_time_s": round(wall, 1), "total_time_s": round(time.time() - t_start, 1),
        "eval_mode": recipe.eval_mode,
        "teacher_eval": ev_teacher, "students_eval": ev_students, "random_eval": ev_random,
        "retention": retention, "agents": agents_report,
        **win_rate_fields(ev_teacher, ev_students),
        "min_flops_reduction": min(a["flops_reduction"] for a in agents_report),
        "config": dataclasses.asdict(cfg), "command": " ".join(sys.argv),
        "flops_note": recipe.flops_note, "rollout_note": rollout_note,
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
