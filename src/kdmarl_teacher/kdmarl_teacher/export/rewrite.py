"""Replace a bundle's manifest (new measured figures, e.g. ``kdmarl envelope --write``), signed, atomically.

A bundle is signed and hashed content: a manifest rewritten in place would, for a moment, be read with the old
signature (or half written). So the bundle is copied into a hidden sibling staging directory, the new manifest
is validated and written there (:func:`kdmarl_student.manifest.dump_manifest`, the readers' own validation),
signed when a key is given, loaded back as a robot loads it (signature included), and the staging directory
is renamed over the bundle (:func:`kdmarl_student.atomic.publish_directory`). A signed bundle is never
rewritten without a key: the old signature would no longer match.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdmarl_student.atomic import publish_directory
from kdmarl_student.manifest import MANIFEST_FILE, SIGNATURE_FILE, dump_manifest, load_manifest
from kdmarl_student.signing import sign_bundle


def rewrite_manifest(bundle: str | Path, data: Mapping[str, Any], private_key: Any = None) -> Path:
    """Publish ``bundle`` with ``data`` as its manifest (signed with ``private_key`` if given); returns the path."""
    bundle = Path(bundle)
    if (bundle / SIGNATURE_FILE).exists() and private_key is None:
        raise ValueError(f"{bundle} is signed ({SIGNATURE_FILE}): rewriting its manifest would void the signature; "
                         "give --key PRIVATE_KEY to sign the new manifest")
    stage = Path(tempfile.mkdtemp(prefix=f".{bundle.name}.tmp-", dir=bundle.parent))
    try:
        stage.rmdir()
        shutil.copytree(bundle, stage, symlinks=True)
        (stage / SIGNATURE_FILE).unlink(missing_ok=True)
        path = stage / MANIFEST_FILE
        path.write_bytes(dump_manifest(data, path))
        public_key = None
        if private_key is not None:
            sign_bundle(stage, private_key)
            public_key = private_key.public_key()
        load_manifest(stage, public_key=public_key)
        stage.chmod(0o755)
        publish_directory(stage, bundle)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return bundle


__all__ = ["rewrite_manifest"]
