"""``kdmarl publish``: put a signed bundle into the fleet's TUF repository as a new release (issue 23).

    kdmarl publish --init --repo fleet/repo --keys ~/kdmarl-keys            # root, 3 targets keys (2 needed), ...
    kdmarl publish bundles/NAME --repo fleet/repo --keys ~/kdmarl-keys --public-key keys/team.pub
    kdmarl publish --refresh --repo fleet/repo --keys ~/kdmarl-keys         # new timestamp (cron, < 1 day)
    kdmarl publish --rotate root --repo fleet/repo --keys ~/kdmarl-keys     # or targets / snapshot / timestamp

``--keys`` may be repeated: threshold keys held by different people or media are brought together only for the
signing. Keys are never written inside ``--repo`` (refused); with ``$KDMARL_SIGNING_PASSPHRASE`` set they are
encrypted (read from the environment only, as ``kdmarl sign`` does). The logic is :mod:`kdmarl_student.fleet_repo`
(tuf's metadata API, no torch); this module only parses arguments and prints what happened.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path

from kdmarl_student.fleet_repo import (
    KeyStore,
    init_repository,
    publish_bundle,
    refresh,
    rotate_keys,
)

from kdmarl_teacher.export.sign import PASSPHRASE_ENV


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, nargs="?", help="signed bundle directory to publish as a release")
    parser.add_argument("--repo", type=Path, required=True, help="TUF repository directory (served to the fleet)")
    parser.add_argument("--keys", type=Path, action="append", required=True,
                        help="keystore directory (private keys, never inside --repo); repeat for keys held apart")
    parser.add_argument("--team", help="team name of the release (default: the manifest's scenario name)")
    parser.add_argument("--public-key", type=Path,
                        help="bundle public key: verify the bundle signature before publishing (recommended)")
    parser.add_argument("--init", action="store_true", help="create an empty repository and its keys")
    parser.add_argument("--root-keys", type=int, default=1)
    parser.add_argument("--root-threshold", type=int, default=1)
    parser.add_argument("--targets-keys", type=int, default=3)
    parser.add_argument("--targets-threshold", type=int, default=2)
    parser.add_argument("--refresh", action="store_true",
                        help="sign a new timestamp, and re-sign roles in the last half of their lifetime (cron)")
    parser.add_argument("--rotate", choices=("root", "targets", "snapshot", "timestamp"),
                        help="replace every key of this role (new root version signed by old and new root keys)")
    parser.add_argument("--count", type=int, help="--rotate: number of new keys (default: as many as before)")
    parser.add_argument("--threshold", type=int, help="--rotate: new threshold (default: as before)")
    parser.add_argument("--timestamp-hours", type=float, default=24.0,
                        help="lifetime of a timestamp; robots refuse updates (freeze, WARN) once it expired")


def run(args: argparse.Namespace) -> int:
    expiry = {"timestamp": timedelta(hours=args.timestamp_hours)}
    passphrase = os.environ.get(PASSPHRASE_ENV)
    keys = KeyStore(args.keys, passphrase=passphrase.encode() if passphrase else None)
    actions = [bool(args.init), bool(args.refresh), args.rotate is not None, args.bundle is not None]
    if sum(actions) != 1:
        raise ValueError("give exactly one of: BUNDLE, --init, --refresh, --rotate ROLE")
    if args.init:
        repo = init_repository(args.repo, keys, root_keys=args.root_keys, root_threshold=args.root_threshold,
                               targets_keys=args.targets_keys, targets_threshold=args.targets_threshold,
                               expiry=expiry)
        print(f"kdmarl publish: repository {args.repo} (root {args.root_threshold} of {args.root_keys} keys, "
              f"targets {args.targets_threshold} of {args.targets_keys}); keys in {args.keys[0]} (keep them off "
              f"robots); install {repo.metadata_dir / '1.root.json'} on every robot")
        return 0
    if args.refresh:
        for role, what in refresh(args.repo, keys, expiry=expiry).items():
            print(f"kdmarl publish: {role}: {what}", file=sys.stderr if what.startswith("WARNING") else sys.stdout)
        return 0
    if args.rotate:
        version = rotate_keys(args.repo, keys, args.rotate, count=args.count, threshold=args.threshold,
                              expiry=expiry)
        print(f"kdmarl publish: {args.rotate} keys rotated: {args.repo}/metadata/{version}.root.json (signed by the "
              "old and the new root keys); destroy the old private keys once every robot has updated")
        return 0
    release = publish_bundle(args.repo, keys, args.bundle, team=args.team, public_key=args.public_key,
                             expiry=expiry)
    print(f"kdmarl publish: team {release.team} release {release.release} (supersedes {release.supersedes}), "
          f"{len(release.files)} files, snapshot version {release.snapshot_version}")
    return 0
