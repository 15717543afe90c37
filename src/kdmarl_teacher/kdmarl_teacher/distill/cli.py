"""`kdmarl distill`: the command line. Which teacher it is (MAPPO or QMIX) picks the recipe and its default
config; the loop and everything else are the same."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def resolve_config(args: argparse.Namespace, default_file: str = "distill.yaml") -> DistillConfig:
    """--config, else (on --resume) the run's distill_config.yaml, else the shipped `default_file`
    (distill.yaml; distill_qmix.yaml for a QMIX teacher); then the flags, then --set."""
    path = args.config
    if path is None and args.resume and (Path(args.out) / "distill_config.yaml").exists():
        path = Path(args.out) / "distill_config.yaml"
    if path is None and (CONFIG_DIR / default_file).exists():
        path = CONFIG_DIR / default_file
    overrides = list(args.overrides)
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
    cfg = resolve_config(args, "distill_qmix.yaml" if payload.get("algo") == "qmix" else "distill.yaml")
    teacher = build_teacher(payload, cfg.device)
    out = Path(args.out)
    distill(cfg, teacher, out, teacher_path=teacher_path, resume=args.resume, progress=not args.no_progress)
    print(f"wrote {out / STUDENTS_FILE} and {out / 'distill_report.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kdmarl distill", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
