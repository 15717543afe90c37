"""Finishing a staged bundle, and replacing a bundle's manifest, signed and atomic (issue 25). Torch-free.

A bundle is signed and hashed content, written into a hidden sibling staging directory and renamed into place
(:func:`kdmarl_student.atomic.publish_directory`). :func:`publish_stage` is the last step every writer of a
finished stage shares (``kdmarl compose``, :func:`rewrite_manifest`): sign the manifest when a key is given, load
the stage as a robot loads it (signature included) and publish it. :func:`rewrite_manifest` (``kdmarl envelope
--write``) copies a bundle into a stage, writes the new manifest there through the readers' own validation
(:func:`kdmarl_student.manifest.dump_manifest`) and publishes it, so no reader ever sees a half-written manifest
or a manifest with the old signature. A signed bundle is never rewritten without a key.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kdmarl_student.atomic import publish_directory
from kdmarl_student.manifest import MANIFEST_FILE, SIGNATURE_FILE, dump_manifest, load_manifest
from kdmarl_student.signing import sign_bundle


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A hidden staging directory beside ``out`` (``.NAME.tmp-*``), removed if the block raises."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def publish_stage(stage: Path, out: Path, private_key: Any = None) -> Path:
    """Sign ``stage``'s manifest with ``private_key`` (ed25519) if given, check the stage as a robot does, and
    rename it to ``out``."""
    public_key = None
    if private_key is not None:
        sign_bundle(stage, private_key)
        public_key = private_key.public_key()
    load_manifest(stage, public_key=public_key)  # what a robot will check
    stage.chmod(0o755)  # mkdtemp makes it 0700; robots often run the node as another user
    publish_directory(stage, out)
    return out


def rewrite_manifest(bundle: str | Path, data: Mapping[str, Any], private_key: Any = None) -> Path:
    """Publish ``bundle`` with ``data`` as its manifest (signed with ``private_key`` if given); returns the path."""
    bundle = Path(bundle)
    if (bundle / SIGNATURE_FILE).exists() and private_key is None:
        raise ValueError(f"{bundle} is signed ({SIGNATURE_FILE}): rewriting its manifest would void the signature; "
                         "give --key PRIVATE_KEY to sign the new manifest")
    with staging(bundle) as stage:
        stage.rmdir()
        shutil.copytree(bundle, stage, symlinks=True)
        (stage / SIGNATURE_FILE).unlink(missing_ok=True)
        path = stage / MANIFEST_FILE
        path.write_bytes(dump_manifest(data, path))
        publish_stage(stage, bundle, private_key)
    return bundle


__all__ = ["publish_stage", "rewrite_manifest", "staging"]
