"""``kdmarl envelope BUNDLE``: how the team degrades under what robots meet (issue 25).

    kdmarl envelope bundles/NAME                       # measure, print the table, draw BUNDLE/envelope.png
    kdmarl envelope bundles/NAME --write [--key K]     # ... and put it into the manifest (re-signed with K)
    kdmarl envelope bundles/NAME --from-manifest       # redraw the figure from the manifest's envelope

The measurement is :func:`kdmarl_student.team_profile.measure_envelope` (torch-free: a robot-side tool runs the
same code); the figure is :func:`kdmarl_teacher.reports.envelope.draw_envelope`. ``--write`` publishes the bundle
again with the new manifest atomically (:func:`kdmarl_student.bundle_stage.rewrite_manifest`).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

from kdmarl_student.bundle_stage import rewrite_manifest
from kdmarl_student.manifest import load_manifest, oldest_schema_version
from kdmarl_student.team_profile import DEFAULT_ENVELOPE_EPISODES, DEFAULT_ENVELOPE_SECONDS, measure_envelope

from kdmarl_teacher.export.sign import _passphrase
from kdmarl_teacher.reports.envelope import draw_envelope


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory")
    parser.add_argument("--episodes", type=int, default=DEFAULT_ENVELOPE_EPISODES, help="episodes per perturbation")
    parser.add_argument("--seed", type=int, default=1000, help="first seed (consecutive seeds)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_ENVELOPE_SECONDS,
                        help="time bound: the grid stops after this and the manifest says it is incomplete")
    parser.add_argument("--write", action="store_true", help="put the envelope into the bundle's manifest")
    parser.add_argument("--key", type=Path, help="ed25519 private key to sign the rewritten manifest (--write)")
    parser.add_argument("--from-manifest", action="store_true",
                        help="do not measure: draw the figure from the manifest's envelope")
    parser.add_argument("--figure", type=Path, default=None, help="figure path (default: BUNDLE/envelope.png)")


def print_envelope(envelope: dict[str, Any]) -> None:
    proto = envelope["protocol"]
    print(f"envelope: {proto['episodes']} episodes per cell, seeds {proto['seeds']}, {proto['seconds']:.1f} s"
          f"{'' if proto['complete'] else ' (time bound reached: grid incomplete)'}")
    print(f"{'perturbation':<34} {'students':>17} {'retention':>9} {'teacher':>17} {'retention':>9}")
    for cell in envelope["cells"]:
        label = cell["perturbation"]["kind"] + "".join(
            f" {k}={v}" for k, v in cell["perturbation"].items() if k != "kind")
        row = f"{label:<34}"
        for actor in ("student", "teacher"):
            stat, value = cell.get(f"{actor}_return"), cell.get(f"{actor}_retention")
            row += (f" {stat['mean']:8.3f} ± {stat['ci95']:5.3f}" if stat else f" {'-':>17}")
            row += f" {value:9.3f}" if value is not None else f" {'-':>9}"
        print(row)


def run(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.bundle)
    figure = args.figure or args.bundle / "envelope.png"
    if args.from_manifest:
        envelope = manifest.data.get("envelope")
        if not envelope:
            raise ValueError(f"{manifest.path}: no envelope (schema 1.3 field 'envelope'); run kdmarl envelope "
                             f"{args.bundle} --write")
    else:
        envelope = measure_envelope(args.bundle, range(args.seed, args.seed + args.episodes),
                                    time_budget_s=args.seconds, has_teacher=bool(manifest.data.get("teacher")),
                                    max_cycles=int(manifest.scenario.get("max_cycles") or 25))
    print_envelope(envelope)
    draw_envelope(envelope, figure, title=args.bundle.name)
    print(f"figure: {figure}")
    if args.write and not args.from_manifest:
        data = copy.deepcopy(manifest.data)
        data["envelope"] = envelope
        data["schema_version"] = oldest_schema_version(data)
        key = None
        if args.key is not None:
            from kdmarl_student.signing import load_private_key  # noqa: PLC0415

            key = load_private_key(args.key, passphrase=_passphrase())
        rewrite_manifest(args.bundle, data, private_key=key)
        print(f"kdmarl envelope: {args.bundle}/manifest.json carries the envelope"
              f"{' (signed)' if key is not None else ''}")
    return 0
