"""``kdmarl sign``: sign a bundle's manifest with ed25519, create key pairs, verify signatures.

    kdmarl sign --generate-key keys/team          # writes keys/team.key (0600) and keys/team.pub
    kdmarl sign bundles/NAME --key keys/team.key  # writes bundles/NAME/manifest.sig
    kdmarl sign bundles/NAME --verify --public-key keys/team.pub

The bundle is validated (schema, size and sha256 of every model, no ONNX external data) *before* it is
signed: a signature vouches for a bundle, so signing a broken one would only make the breakage look
trustworthy. ``--verify`` runs the same checks after the signature: a bundle that an older ``kdmarl sign``
signed with external data in it is refused, since the signature does not cover the external file. A
passphrase for an encrypted private key is read from the environment variable ``KDMARL_SIGNING_PASSPHRASE``
(never from the command line, where it would land in shell history and ``ps``). The heavy lifting is in
``kdmarl_student.signing`` so that signer and verifier share one implementation; no torch is imported.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from kdmarl_student.manifest import Manifest, load_manifest
from kdmarl_student.signing import (
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    sign_bundle,
    verify_bundle_signature,
)

PASSPHRASE_ENV = "KDMARL_SIGNING_PASSPHRASE"


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def check_models(manifest: Manifest) -> int:
    """Every model of the bundle (agents, and the teacher actor if shipped) checked as the robot checks it:
    inside the bundle, size, sha256, no ONNX external data (which no signature covers). Returns the count."""
    for agent in manifest.agents:
        manifest.read_model(agent)
    if manifest.data.get("teacher"):
        manifest.read_teacher_model()
        return len(manifest.agents) + 1
    return len(manifest.agents)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, nargs="?", help="bundle directory to sign or verify")
    parser.add_argument("--key", type=Path, help="ed25519 private key (PEM, PKCS#8) to sign with")
    parser.add_argument("--generate-key", type=Path, metavar="PREFIX",
                        help="create PREFIX.key (private, mode 0600) and PREFIX.pub; encrypted if "
                        f"${PASSPHRASE_ENV} is set")
    parser.add_argument("--verify", action="store_true", help="verify the bundle's signature instead of signing")
    parser.add_argument("--public-key", type=Path, help="public key to verify with (--verify)")


def run(args: argparse.Namespace) -> int:
    if args.generate_key is not None:
        prefix = args.generate_key
        private, public = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
        kid = generate_keypair(private, public, passphrase=_passphrase())
        print(f"kdmarl sign: key {kid}: private {private} (keep secret, mode 0600), public {public} (ship to robots)")
        if args.bundle is None:
            return 0
        if args.key is None:
            args.key = private
    if args.bundle is None:
        raise ValueError("a bundle directory is required (or --generate-key PREFIX)")
    if args.verify:
        if args.public_key is None:
            raise ValueError("--verify needs --public-key")
        public_key = load_public_key(args.public_key)
        kid = verify_bundle_signature(args.bundle, public_key)
        manifest = load_manifest(args.bundle, public_key=public_key)
        count = check_models(manifest)
        print(f"kdmarl sign: {args.bundle}: signature valid (key {kid}), {count} models match sha256, "
              "no external data")
        return 0
    if args.key is None:
        raise ValueError("--key PRIVATE_KEY is required to sign")
    manifest = load_manifest(args.bundle)
    check_models(manifest)  # refuse to sign a bundle the robot would refuse
    private_key = load_private_key(args.key, passphrase=_passphrase())
    sig = sign_bundle(args.bundle, private_key)
    print(f"kdmarl sign: {sig} (key {key_id(private_key.public_key())})")
    return 0
