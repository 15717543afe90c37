"""`kdmarl report`: the figures of a run or of the benchmark results (PNG, matplotlib Agg).

- `kdmarl report runs/TEACHER`: the teacher learning curve from metrics.csv. Two panels: mean training team
  return against env steps and against wall time. For simple_spread (N=3, 25 steps) the reference lines of
  DESIGN.md §5 are drawn (-8.05 velocity-tracking controller, -7.05 model-based planner) and the uniformly random
  baseline (-26.9, or the run's own eval.json figure when there is one). Training returns are of the
  *stochastic* policy on training seeds; the headline figure is `kdmarl evaluate`'s.
- `kdmarl report runs/DISTILL` (the run holds distill_report.json): `distill_agents.png`, per-agent FLOPs and
  parameters against each agent's hardware budget and the FLOPs reduction vs the teacher actor, and
  `distill_curves.png`, the distillation learning curves (return, loss terms, teacher agreement, task figures).
- `kdmarl report --bench [DIR]` (default bench/results): `distill_pareto.png`, retention vs FLOPs reduction
  over the student ladder (distill_ladder.json), and `distill_ablation.png`, retention per baseline and
  ablation with 95 % CI (distill_ablation.json, plus any baseline rows of distill.json), and
  `peers_<task>.png`, ours and the JaxMARL peer against wall time, for each peers_<task>.json. Written to
  `--out-dir` (default docs/), where the README shows them.

One module per report: `report_teacher`, `report_distill`, `report_bench` (shared readers: `report_common`);
this one is the command line. None imports torch (a test checks), except `report_distill` reading students.pt.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kdmarl_teacher.reports import bench as report_bench
from kdmarl_teacher.reports import distill as report_distill
from kdmarl_teacher.reports import teacher as report_teacher

DEFAULT_BENCH_DIR = "bench/results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", help="run directory holding metrics.csv (teacher or distillation run)")
    parser.add_argument("--out", help="teacher run: PNG path (default RUN/learning_curve.png)")
    parser.add_argument("--bench", nargs="?", const=DEFAULT_BENCH_DIR, metavar="DIR",
                        help=f"draw the benchmark figures from DIR (default {DEFAULT_BENCH_DIR}) instead of a run")
    parser.add_argument("--out-dir", help="where the PNGs go (default: the run directory; docs/ with --bench)")


def run(args: argparse.Namespace) -> int:
    if args.bench is not None:
        if args.run:
            raise ValueError("give either a run directory or --bench, not both")
        paths = report_bench.draw_bench(Path(args.bench), Path(args.out_dir or "docs"))
    elif args.run is None:
        raise ValueError("nothing to draw: give a run directory or --bench [DIR]")
    else:
        run_dir = Path(args.run)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: no such run directory")
        if (run_dir / "distill_report.json").is_file():
            if args.out:
                raise ValueError("--out names the teacher learning curve; a distillation run takes --out-dir")
            paths = report_distill.draw_distill(run_dir, Path(args.out_dir) if args.out_dir else run_dir)
        else:
            out = Path(args.out) if args.out else Path(args.out_dir or run_dir) / "learning_curve.png"
            paths = [report_teacher.draw_teacher(run_dir, out)]
    for p in paths:
        print(f"wrote {p}")
    return 0
