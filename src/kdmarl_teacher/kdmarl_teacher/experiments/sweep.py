"""`kdmarl sweep SPEC.yaml --out runs/NAME`: a grid of distillation (or teacher-training) runs on Ray Tune.

The spec expands into trials (teachers x grid x variants); each trial is an ordinary `kdmarl distill` (or
`kdmarl train`) run directory under ``runs/NAME/trials/<trial>/``, made by the same Python function those
commands call, so any trial can be inspected, resumed or exported on its own. Ray Tune keeps the experiment
(``runs/NAME/tune``): placement of trials on the cores of a local Ray (or a cluster, ``--address``), one retry
of a failed trial (``FailureConfig(max_failures=1)``), and ``--resume`` of an interrupted sweep
(``Tuner.restore(..., resume_errored=True)``). A trial is also idempotent on its own: a finished one (its
``sweep_trial.json`` says done and its report exists) returns its recorded figures without recomputing, and an
interrupted one continues from its ``checkpoint.pt``.

`kdmarl sweep --report runs/NAME` aggregates the trial reports (``sweep_report.json``, ``.csv``, PNGs); it needs
neither Ray nor torch. Spec format, statistics and cluster commands: docs/distillation.md, "Sweeps".

Spec (YAML)::

    kind: distill                 # or train (base/grid keys are then `kdmarl train` config keys)
    teacher: runs/spread          # a path, a list of paths (the teacher-seed axis), or {team: path or list};
                                  # $VARS are expanded
    config: null                  # optional distill/train YAML under base (default: the shipped one)
    base: {total_steps: 1500000}  # config keys for every trial
    grid: {seed: [1, 2, 3, 4, 5]} # key -> list of values; the trials are the product (any config key)
    variants:                     # named overrides, crossed with the grid
      full: {}
      minus_kl: {use_kl: false}
    reference: full               # paired comparisons against this variant, on the same seeds
    metric: retention             # distill: retention | win_rate_retention (battles) | student_return |
                                  #   min_flops_reduction; train: team_return
    cpus_per_trial: 1             # Ray CPUs and torch threads of each trial
    eval_episodes: 200            # train only: greedy evaluation after training (eval.json, as kdmarl evaluate)
    bench: {}                     # free-form, ignored here (for the tool that wrote the spec)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kdmarl_teacher.experiments.report import print_table, write_report
from kdmarl_teacher.experiments.trials import run_sweep

# ------------------------------------------------------------------------------------------------ the spec




























# ----------------------------------------------------------------------------------------------- one trial






















# ----------------------------------------------------------------------------------------------- the sweep








# ---------------------------------------------------------------------------------------------- statistics






















# ------------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", help="sweep spec YAML (optional with --resume and --report)")
    parser.add_argument("--out", help="sweep directory, e.g. runs/ablation (trials/, tune/, sweep_report.*)")
    parser.add_argument("--address", help="an existing Ray cluster (`ray start --head` prints it); default: a "
                                          "local Ray sized to this machine")
    parser.add_argument("--cpus", type=int, help="CPUs of the local Ray (default: all cores)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep in --out; finished "
                                                              "trials are not recomputed, failed ones retried")
    parser.add_argument("--report", metavar="SWEEP_DIR", help="only aggregate SWEEP_DIR's trials (no Ray)")


def run(args: argparse.Namespace) -> int:
    if args.report:
        report = write_report(Path(args.report))
        print_table(report)
        print(f"wrote {Path(args.report) / 'sweep_report.json'}, sweep_report.csv and "
              f"{', '.join(Path(p).name for p in report['figures'])}")
        return 0
    if not args.out:
        raise ValueError("--out is required (the sweep directory)")
    if args.cpus is not None and args.cpus < 1:
        raise ValueError(f"--cpus must be >= 1, got {args.cpus}")
    report = run_sweep(args.spec, args.out, address=args.address, cpus=args.cpus, resume=args.resume)
    print_table(report)
    return 0 if not report["failed"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kdmarl sweep", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
