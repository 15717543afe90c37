"""`kdmarl train`: the command line of every teacher algorithm. `--algo` (or, on `--resume`, the algorithm the run's
own config.yaml names) picks the entry of `algos.ALGORITHMS`; everything else is the same for all of them."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdmarl_teacher.algos import ALGORITHMS, Algorithm
from kdmarl_teacher.algos.config import config_algo, default_config_path
from kdmarl_teacher.core.config import RunConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algo", choices=tuple(ALGORITHMS),
                        help="teacher algorithm (default mappo; a --resume continues with the run's own)")
    parser.add_argument("--scenario", help="scenario name or PettingZoo import path (default: the config's)")
    parser.add_argument("--out", required=True, help="run directory, e.g. runs/spread")
    parser.add_argument("--config", help="YAML config (default: the shipped config/<algo>_<scenario>.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (YAML value), repeatable: --set lr=3e-4 --set env_params.N=4")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint.pt")
    parser.add_argument("--device", help="cpu (default) or cuda")
    parser.add_argument("--seed", type=int, help="override the config's seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def chosen_algorithm(args: argparse.Namespace) -> Algorithm:
    """`--algo`; else, on `--resume` without `--config`, the algorithm of the run's config.yaml; else MAPPO."""
    if getattr(args, "algo", None):
        return ALGORITHMS[args.algo]
    config = Path(args.out) / "config.yaml"
    if args.resume and args.config is None and config.is_file():
        return ALGORITHMS[config_algo(config)]
    return ALGORITHMS["mappo"]


def resolve_config(args: argparse.Namespace, algorithm: Algorithm | None = None) -> RunConfig:
    """--resume without --config: the run's own config.yaml. Otherwise --config, else the shipped
    `config/<algo>_<scenario>.yaml`. Then --scenario/--seed/--device, then --set (last wins)."""
    algorithm = algorithm or chosen_algorithm(args)
    overrides = list(args.overrides)
    if args.scenario:
        overrides.insert(0, f"scenario={args.scenario}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.device:
        overrides.append(f"device={args.device}")
    path = args.config
    if path is None and args.resume and (Path(args.out) / "config.yaml").exists():
        path = Path(args.out) / "config.yaml"
    if path is None:
        path = default_config_path(args.scenario or algorithm.config_class.scenario, algorithm.name)
    return algorithm.load_config(path, overrides)


def run(args: argparse.Namespace) -> int:
    algorithm = chosen_algorithm(args)
    cfg = resolve_config(args, algorithm)
    teacher = algorithm.train()(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    print(f"wrote {teacher}")
    return 0
