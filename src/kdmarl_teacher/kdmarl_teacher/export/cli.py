"""`kdmarl export runs/NAME --out bundles/NAME`: the command line (finds teacher.pt and students.pt of a run and
exports the bundle, `export.bundle`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdmarl_student.manifest import (
    load_manifest,
    sha256_file,
)
from kdmarl_student.team_profile import DEFAULT_ENVELOPE_EPISODES, DEFAULT_ENVELOPE_SECONDS

from kdmarl_teacher.algos.teacher import TEACHER_FILE as TEACHER_PT_FILE
from kdmarl_teacher.algos.teacher import load_teacher
from kdmarl_teacher.algos.teacher import teacher_path as resolve_teacher_path
from kdmarl_teacher.distill.students_file import FILE_NAME, read_students_payload
from kdmarl_teacher.export.bundle import export_bundle
from kdmarl_teacher.export.onnx_models import load_student_agents, teacher_export_agents


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run directory (teacher.pt and/or students.pt)")
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to create (bundles/NAME)")
    parser.add_argument("--students", type=Path, default=None,
                        help="students file (default: RUN/students.pt if it exists, else the teacher's actor)")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="a teacher run directory or its teacher.pt (default: RUN/teacher.pt, else the teacher "
                             "recorded in the students file)")
    parser.add_argument("--from-teacher", action="store_true",
                        help="export the teacher's actor for every agent even if students exist")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle (atomically)")
    parser.add_argument("--eval-episodes", type=int, default=100,
                        help="episodes for the team figures, seeds --eval-seed.. (0: leave them null)")
    parser.add_argument("--eval-seed", type=int, default=1000, help="first evaluation seed")
    parser.add_argument("--envelope-episodes", type=int, default=None,
                        help=f"episodes per perturbation of the envelope, seeds --eval-seed.. (default: "
                             f"min({DEFAULT_ENVELOPE_EPISODES}, --eval-episodes); 0: no envelope)")
    parser.add_argument("--envelope-seconds", type=float, default=DEFAULT_ENVELOPE_SECONDS,
                        help="time bound of the envelope: the grid stops after this (the manifest says so)")
    parser.add_argument("--control-rate", type=float, default=None,
                        help="control rate in Hz (default: the hardware profile's, else 10 Hz, MPE's dt)")
    parser.add_argument("--parity-random", type=int, default=10_000, help="random observations per agent")
    parser.add_argument("--parity-recorded", type=int, default=10_000,
                        help="decisions per agent stepped through whole mpe2 episodes (torch vs ONNX Runtime)")
    parser.add_argument("--latency-calls", type=int, default=2_000, help="batch-1 calls timed per model")
    parser.add_argument("--legacy-exporter", action="store_true", help="use torch's TorchScript ONNX exporter")


def resolve_sources(run_dir: Path, students: Path | None, teacher: Path | None,
                    from_teacher: bool) -> tuple[Path, Path | None]:
    """Find teacher.pt and students.pt for a run directory.

    A distillation run keeps ``students.pt`` in its own directory and records the teacher's path and
    sha256 in it; a teacher run has ``teacher.pt``. So: ``--teacher`` if given, else ``RUN/teacher.pt``, else
    the teacher recorded in the students file (its sha256 must still match, or the students would be
    compared with a different teacher than the one they were distilled from).
    """
    students_path = None if from_teacher else (students or run_dir / FILE_NAME)
    if students is not None and not from_teacher and not students.is_file():
        raise FileNotFoundError(f"{students} does not exist")
    if students_path is not None and not students_path.is_file():
        students_path = None
    teacher_path = resolve_teacher_path(teacher) if teacher is not None else run_dir / TEACHER_PT_FILE
    if not teacher_path.is_file() and teacher is None and students_path is not None:
        info = read_students_payload(students_path).get("teacher") or {}
        if info.get("path"):
            teacher_path = Path(info["path"])
            if info.get("sha256") and teacher_path.is_file() and sha256_file(teacher_path) != info["sha256"]:
                raise ValueError(f"{teacher_path} changed since {students_path} was distilled from it (sha256)")
    if not teacher_path.is_file():
        raise FileNotFoundError(f"no teacher checkpoint: {teacher_path} (give --teacher PATH)")
    return teacher_path, students_path


def run(args: argparse.Namespace) -> int:
    teacher_path, students_path = resolve_sources(args.run, args.students, args.teacher, args.from_teacher)
    teacher = load_teacher(teacher_path)
    if students_path is not None:
        agents = load_student_agents(students_path)
        what = f"students from {students_path}, teacher {teacher_path}"
    else:
        agents = teacher_export_agents(teacher)
        what = f"the teacher's actor from {teacher_path} (no students)"
    seeds = list(range(args.eval_seed, args.eval_seed + args.eval_episodes))
    envelope_episodes = (min(DEFAULT_ENVELOPE_EPISODES, args.eval_episodes) if args.envelope_episodes is None
                         else args.envelope_episodes)
    out = export_bundle(
        spec=teacher.spec, agents=agents, teacher_actor=teacher.actor, out_dir=args.out, source=str(args.run),
        control_rate_hz=args.control_rate, eval_seeds=seeds, parity_random=args.parity_random,
        parity_recorded=args.parity_recorded, latency_calls=args.latency_calls, dynamo=not args.legacy_exporter,
        overwrite=args.force, envelope_episodes=envelope_episodes, envelope_seconds=args.envelope_seconds,
    )
    manifest = load_manifest(out).data  # through the runtime's reader, like every other reader of a bundle
    print(f"kdmarl export: {out} ({what})")
    print(f"{'agent':<12} {'input':>5} {'params':>8} {'FLOPs':>9} {'p50 ms':>8} {'p99 ms':>8} {'parity':>9}  budget")
    for entry in manifest["agents"]:
        lat = entry["latency"] or {}
        print(f"{entry['name']:<12} {entry['observation']['input_dim']:>5} {entry['resources']['params']:>8} "
              f"{entry['resources']['flops_per_decision']:>9} {lat.get('p50_ms', float('nan')):>8.4f} "
              f"{lat.get('p99_ms', float('nan')):>8.4f} {entry['parity']['max_abs_diff']:>9.2e}  "
              f"{entry['budget']['profile'] or '-'} met={entry['budget']['met']}")
    team = manifest["team"]
    for key in ("teacher_return", "student_return", "random_return"):
        stat = team[key]
        if stat:
            print(f"{key:<15} {stat['mean']:8.3f} ± {stat['ci95']:.3f} ({stat['episodes']} episodes)")
    if team["retention"] is not None:
        low_high = team.get("retention_ci95") or [float("nan")] * 2
        print(f"retention       {team['retention']:.3f} [{low_high[0]:.3f}, {low_high[1]:.3f}]")
    envelope = manifest.get("envelope")
    if envelope:
        proto = envelope["protocol"]
        print(f"envelope        {len(envelope['cells'])} perturbations x {proto['episodes']} episodes in "
              f"{proto['seconds']:.1f} s{'' if proto['complete'] else ' (time bound reached: grid incomplete)'}; "
              f"figure: kdmarl envelope {out} --from-manifest")
    return 0
