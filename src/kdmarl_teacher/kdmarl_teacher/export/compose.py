"""``kdmarl compose``: a team bundle from students of different bundles (issue 25).

    kdmarl compose --agent agent_0=bundles/a --agent agent_1=bundles/a --agent agent_2=bundles/small \\
                   --out bundles/mixed [--key keys/team.key]

``--agent SLOT=BUNDLE`` takes BUNDLE's agent SLOT; ``SLOT=BUNDLE:SOURCE`` takes its agent SOURCE instead. The
first bundle is the reference (scenario, conventions, the slot contracts, the teacher actor). The rules and
the writing are ``kdmarl_student.compose`` (torch-free, each mismatch a ``CompositionError`` naming the field).
Every model is read and checked (size, sha256, graph) from its bundle, copied byte for byte, the team results
and the envelope are measured again on the composed bundle (:mod:`kdmarl_student.team_profile`), the manifest is
signed with ``--key`` as ``kdmarl sign`` does, loaded back as a robot loads it, and the bundle appears atomically
(:func:`kdmarl_student.bundle_stage.publish_stage`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kdmarl_student.compose import compose_bundle
from kdmarl_student.manifest import load_manifest
from kdmarl_student.signing import load_private_key
from kdmarl_student.team_profile import DEFAULT_ENVELOPE_EPISODES, DEFAULT_ENVELOPE_SECONDS

from kdmarl_teacher.export.sign import _passphrase


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agent", action="append", required=True, metavar="SLOT=BUNDLE[:SOURCE]",
                        help="one per agent of the scenario; the first bundle is the reference")
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to create")
    parser.add_argument("--key", type=Path, help="ed25519 private key to sign the composed manifest")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle (atomically)")
    parser.add_argument("--allow-memory-change", action="store_true",
                        help="accept a student whose memory kind differs from the reference's for its slot")
    parser.add_argument("--eval-episodes", type=int, default=100, help="episodes of the team results (0: none)")
    parser.add_argument("--eval-seed", type=int, default=1000, help="first evaluation seed")
    parser.add_argument("--envelope-episodes", type=int, default=None,
                        help=f"episodes per perturbation (default min({DEFAULT_ENVELOPE_EPISODES}, --eval-episodes))")
    parser.add_argument("--envelope-seconds", type=float, default=DEFAULT_ENVELOPE_SECONDS)


def run(args: argparse.Namespace) -> int:
    key = None if args.key is None else load_private_key(args.key, passphrase=_passphrase())
    out = compose_bundle(args.agent, args.out, private_key=key, force=args.force,
                         allow_memory_change=args.allow_memory_change, eval_episodes=args.eval_episodes,
                         eval_seed=args.eval_seed, envelope_episodes=args.envelope_episodes,
                         envelope_seconds=args.envelope_seconds)
    data = load_manifest(out).data
    print(f"kdmarl compose: {out} from " + ", ".join(
        f"{p['agent']}={p['bundle']}:{p['source_agent']}" for p in data["producer"]["composed_from"]))
    team = data["team"]
    for label in ("teacher_return", "student_return", "random_return"):
        if team.get(label):
            print(f"{label:<15} {team[label]['mean']:8.3f} ± {team[label]['ci95']:.3f} ({team[label]['episodes']} ep.)")
    if team.get("retention") is not None:
        low, high = team.get("retention_ci95") or [float("nan")] * 2
        print(f"retention       {team['retention']:.3f} [{low:.3f}, {high:.3f}]")
    if args.key is not None:
        print(f"signed: {out}/manifest.sig")
    return 0
