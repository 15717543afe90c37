"""`kdmarl`: one console script, one module per subcommand.

A thin dispatcher on purpose: each subcommand lives in its own module exposing `add_arguments(parser)` and
`run(args) -> int`, imported only when that subcommand runs (so `kdmarl --help` and `kdmarl report` do not
pay torch's import time, and a colleague's module that is missing or broken affects only its subcommand).

Failures the user can fix (bad config value, YAML syntax error, truncated checkpoint, full disk, a diverged run:
the typed errors of `kdmarl_teacher.core.errors`, `ValueError`, `OSError`) are printed here, and only here, as ONE line
on stderr naming the file or key at fault, with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from kdmarl_teacher.core.errors import NonFiniteError

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("kdmarl_teacher.algos.train_cli",
              "train a MAPPO (or --algo qmix: QMIX) teacher (writes runs/NAME/teacher.pt)"),
    "evaluate": ("kdmarl_teacher.evaluation.evaluate", "evaluate a teacher on fixed mpe2 seeds vs random"),
    "report": ("kdmarl_teacher.reports.cli", "draw the learning curve PNG from metrics.csv"),
    "distill": ("kdmarl_teacher.distill.cli", "distill a teacher into per-agent students"),
    "export": ("kdmarl_teacher.export.cli", "export students to an ONNX bundle"),
    "sign": ("kdmarl_teacher.export.sign", "sign a bundle manifest"),
    "envelope": ("kdmarl_teacher.evaluation.envelope",
                 "measure a bundle's envelope (team return and retention under perturbations) and draw it"),
    "compose": ("kdmarl_teacher.export.compose",
                "compose a team bundle from students of different bundles (checked, measured, signed)"),
    "publish": ("kdmarl_teacher.export.publish", "publish a signed bundle as a fleet release (TUF)"),
    "sweep": ("kdmarl_teacher.experiments.sweep",
              "run a grid of distill/train runs on Ray Tune; --report aggregates it"),
}


def _load(command: str) -> ModuleType:
    module_name = COMMANDS[command][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise SystemExit(f"kdmarl {command}: not available yet (module {module_name} is missing)") from exc
        raise


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="kdmarl", description="kdmarl: KD-MARL teacher, students and bundles")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND",
                        help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    head = parser.parse_args(argv[:1])
    module = _load(head.command)
    sub = argparse.ArgumentParser(prog=f"kdmarl {head.command}", description=COMMANDS[head.command][1])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except (ValueError, OSError, NonFiniteError) as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message (YAML and torch errors span lines)
        print(f"kdmarl {head.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
