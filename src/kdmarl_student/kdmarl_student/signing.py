"""Ed25519 signatures over a bundle's manifest.

Why only the manifest: it carries the sha256 of every model file and the runtime refuses a model whose
hash differs, so one signature over the exact bytes of ``manifest.json`` covers the whole bundle. The
signature is detached (``manifest.sig`` next to the manifest) so signing never rewrites what it signs,
and a bundle can be re-signed by another key without a new export.

Key files are standard PEM: the private key PKCS#8 (optionally encrypted with a passphrase), the public
key SubjectPublicKeyInfo, readable by ``openssl pkey``. Only ``cryptography`` is needed, and it is imported
only when a key is generated, loaded or used (not at import): a node that verifies no signature never maps its
~6 MB of OpenSSL/Rust code (docs/ARCHITECTURE.md, "memory").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from kdmarl_student.atomic import atomic_file
from kdmarl_student.bundle_files import MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES, read_bundle_file
from kdmarl_student.errors import SignatureError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
ALGORITHM = "ed25519"


def read_manifest_bytes(manifest_path: str | Path) -> bytes:
    """The bytes of ``manifest.json``: a regular file, not a symlink, at most ``MAX_MANIFEST_BYTES``, read
    without blocking (:func:`kdmarl_student.bundle_files.read_bundle_file`); signer and verifier both use it."""
    return read_bundle_file(manifest_path, what="a manifest (not a bundle, or an unfinished export?)",
                            limit=MAX_MANIFEST_BYTES)


def read_signature_document(sig_path: Path) -> dict:
    """``manifest.sig`` as a JSON object: a regular file (not a symlink) of at most ``MAX_SIGNATURE_BYTES``."""
    raw = read_bundle_file(sig_path, what="a signature file (this node requires signed bundles: kdmarl sign)",
                           limit=MAX_SIGNATURE_BYTES, error=SignatureError)
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise SignatureError(sig_path, "", f"a JSON signature document: {exc}") from exc
    if not isinstance(document, dict):
        raise SignatureError(sig_path, "", "a JSON object")
    return document


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short fingerprint of a public key (sha256 of its raw 32 bytes, first 16 hex digits).

    Stored in the signature file so an operator sees *which* key signed a bundle without trying all.
    """
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415  lazy: see module docstring

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(private_path: str | Path, public_path: str | Path, passphrase: bytes | None = None) -> str:
    """Create an ed25519 key pair; the private key file is created with mode 0600 and never overwritten.

    Returns the key id. Raises ``FileExistsError`` rather than replacing an existing key: losing a
    signing key silently would orphan every bundle signed with it.
    """
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: PLC0415

    private_path, public_path = Path(private_path), Path(public_path)
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} already exists; refusing to overwrite a key")
    private_key = Ed25519PrivateKey.generate()
    encryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_key = private_key.public_key()
    public_path.write_bytes(
        public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key_id(public_key)


def load_private_key(path: str | Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Read a PEM private key and insist that it is ed25519 (errors name the file)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: PLC0415

    path = Path(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureError(path, "", f"a PEM ed25519 private key (with the right passphrase): {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(path, "", f"an ed25519 private key; got {type(key).__name__}")
    return key


def load_public_key(source: str | Path | bytes | Ed25519PublicKey) -> Ed25519PublicKey:
    """Accept a key object, PEM bytes, or a path to a PEM public key file."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: PLC0415

    if isinstance(source, Ed25519PublicKey):
        return source
    label: str | Path = "<public key bytes>"
    if isinstance(source, (str, Path)):
        label = Path(source)
        try:
            source = label.read_bytes()
        except OSError as exc:
            raise SignatureError(label, "", f"a readable PEM ed25519 public key: {exc}") from exc
    try:
        key = serialization.load_pem_public_key(source)
    except (ValueError, TypeError) as exc:
        raise SignatureError(label, "", f"a PEM ed25519 public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(label, "", f"an ed25519 public key; got {type(key).__name__}")
    return key


def sign_bundle(bundle_dir: str | Path, private_key: Ed25519PrivateKey) -> Path:
    """Sign the exact bytes of ``manifest.json`` and write ``manifest.sig``; returns its path."""
    bundle_dir = Path(bundle_dir)
    payload = read_manifest_bytes(bundle_dir / MANIFEST_FILE)
    signature = private_key.sign(payload)
    document = {
        "algorithm": ALGORITHM,
        "key_id": key_id(private_key.public_key()),
        "signed_file": MANIFEST_FILE,
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    sig_path = bundle_dir / SIGNATURE_FILE
    with atomic_file(sig_path) as handle:
        handle.write((json.dumps(document, indent=2) + "\n").encode())
    return sig_path


def verify_bundle_signature(bundle_dir: str | Path, public_key: Ed25519PublicKey, payload: bytes | None = None) -> str:
    """Check ``manifest.sig`` against the manifest bytes; returns the key id or raises ``SignatureError``.

    ``payload`` lets the caller pass the manifest bytes it already read, so the bytes verified are the
    bytes parsed (no window for the file to change in between). Both files are read as
    :func:`read_bundle_file` reads bundle files: regular, not symlinks, size-bounded, never blocking.
    """
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

    bundle_dir = Path(bundle_dir)
    sig_path = bundle_dir / SIGNATURE_FILE
    if payload is None:
        payload = read_manifest_bytes(bundle_dir / MANIFEST_FILE)
    document = read_signature_document(sig_path)
    if document.get("algorithm") != ALGORITHM:
        raise SignatureError(sig_path, "algorithm", f"'{ALGORITHM}'; got {document.get('algorithm')!r}")
    if document.get("signed_file", MANIFEST_FILE) != MANIFEST_FILE:
        raise SignatureError(sig_path, "signed_file", f"'{MANIFEST_FILE}'; got {document.get('signed_file')!r}")
    try:
        signature = base64.b64decode(str(document.get("signature", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(sig_path, "signature", f"base64 ed25519 signature: {exc}") from exc
    expected_id = key_id(public_key)
    try:
        public_key.verify(signature, payload)
    except InvalidSignature as exc:
        signer = document.get("key_id")
        hint = f" (signed by key {signer}, node trusts key {expected_id})" if signer != expected_id else ""
        raise SignatureError(
            sig_path, "signature", f"a valid ed25519 signature of {MANIFEST_FILE}: verification failed{hint}"
        ) from exc
    return expected_id
