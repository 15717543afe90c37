"""`kdmarl distill`: the command line. Which teacher it is (MAPPO or QMIX) picks the recipe and its default
config; the loop and everything else are the same."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kdmarl_teacher.algos.teacher import build_teacher
from kdmarl_teacher.algos.teacher import teacher_path as resolve_teacher_path
from kdmarl_teacher.core.config import CONFIG_DIR
from kdmarl_teacher.core.run_files import load_checkpoint
from kdmarl_teacher.distill.config import ALL_TERMS, TERMS, DistillConfig, load_distill_config
from kdmarl_teacher.distill.loop import distill
from kdmarl_teacher.distill.students_file import FILE_NAME as STUDENTS_FILE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, help="teacher.pt or a run directory holding one")
    parser.add_argument("--out", required=True, help="output run directory, e.g. runs/spread_students")
    parser.add_argument("--team", help="team config name (config/teams/NAME.yaml) or path; default: the config's")
    parser.add_argument("--config", help=f"distill YAML (default: {CONFIG_DIR / 'distill.yaml'})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a distill config key, repeatable: --set w_kl=0.5")
    for term in ALL_TERMS:
        parser.add_argument(f"--no-{term}", action="store_true",
                            help=f"switch the {term} loss term off (ablation)" + (
                                " (QMIX teachers)" if term not in TERMS else ""))
    parser.add_argument("--resource-aware", action="store_true", help="group-lasso + prune + fine-tune option")
    parser.add_argument("--resume", action="store_true", help="continue from out/checkpoint.pt")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device")
    parser.add_argument("--no-progress", action="store_true")


def default_config_file(payload: dict[str, Any]) -> str:
    """The shipped distill config for a teacher checkpoint: its algorithm picks the recipe's file."""
    return "distill_qmix.yaml" if payload.get("algo") == "qmix" else "distill.yaml"


def episode_limit(payload: dict[str, Any]) -> int:
    """The teacher's scenario's episode limit (MPE max_cycles, SMAX/GRF max_steps) from its checkpoint."""
    return int(payload["scenario"]["spec"]["max_cycles"])


def whole_episode_rollouts(cfg: DistillConfig, max_cycles: int) -> list[str]:
    """The shipped defaults' rollout shape on a scenario whose episodes outlast `num_steps` (SMAX battles: 100).

    Every distillation iteration restarts its episodes, so with the MPE default of 25 steps a SMAX student would
    never act past a battle's 25th step (3s5z students won 0.27 of the teacher's 0.99 that way; with whole battles
    1.00, bench/results/smax_students_whole_battles.json). This covers a whole episode and keeps the batch of
    joint steps per iteration (128 x 25 -> 32 x 100), so iterations and update sizes stay those measured on MPE."""
    if max_cycles <= cfg.num_steps:
        return []
    return [f"num_steps={max_cycles}", f"num_envs={max(1, cfg.num_envs * cfg.num_steps // max_cycles)}"]


def resolve_config(args: argparse.Namespace, default_file: str = "distill.yaml",
                   max_cycles: int | None = None) -> DistillConfig:
    """--config, else (on --resume) the run's distill_config.yaml, else the shipped `default_file`
    (distill.yaml; distill_qmix.yaml for a QMIX teacher) with whole-episode rollouts on the teacher's scenario
    (`max_cycles`, see whole_episode_rollouts); then the flags, then --set."""
    path = args.config
    if path is None and args.resume and (Path(args.out) / "distill_config.yaml").exists():
        path = Path(args.out) / "distill_config.yaml"
    shipped = path is None and (CONFIG_DIR / default_file).exists()
    if shipped:
        path = CONFIG_DIR / default_file
    overrides = whole_episode_rollouts(load_distill_config(path), max_cycles) if shipped and max_cycles else []
    overrides += list(args.overrides)
    if args.team:
        overrides.append(f"team={args.team}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.device:
        overrides.append(f"device={args.device}")
    overrides += [f"use_{t}=false" for t in ALL_TERMS if getattr(args, f"no_{t}", False)]
    if args.resource_aware:
        overrides.append("resource_aware=true")
    return load_distill_config(path, overrides)


def run(args: argparse.Namespace) -> int:
    teacher_path = resolve_teacher_path(args.teacher)
    payload = load_checkpoint(teacher_path, "cpu")  # which teacher it is picks the recipe and its default config
    cfg = resolve_config(args, default_config_file(payload), episode_limit(payload))
    teacher = build_teacher(payload, cfg.device)
    out = Path(args.out)
    distill(cfg, teacher, out, teacher_path=teacher_path, resume=args.resume, progress=not args.no_progress)
    print(f"wrote {out / STUDENTS_FILE} and {out / 'distill_report.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kdmarl distill", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
