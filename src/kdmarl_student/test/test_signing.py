"""ed25519 signing of manifests: key files, sign/verify round trip, tampering, malformed signatures."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from kdmarl_student.errors import SignatureError
from kdmarl_student.manifest import load_manifest
from test_support_bundles import make_bundle

from kdmarl_student import signing


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    signing.generate_keypair(tmp_path / "keys" / "team.key", tmp_path / "keys" / "team.pub")
    return tmp_path / "keys" / "team.key", tmp_path / "keys" / "team.pub"


def test_private_key_is_owner_only_and_never_overwritten(keys: tuple[Path, Path]) -> None:
    private, public = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    with pytest.raises(FileExistsError):
        signing.generate_keypair(private, public)


def test_encrypted_private_key(tmp_path: Path) -> None:
    kid = signing.generate_keypair(tmp_path / "a.key", tmp_path / "a.pub", passphrase=b"correct horse")
    assert b"ENCRYPTED" in (tmp_path / "a.key").read_bytes()
    key = signing.load_private_key(tmp_path / "a.key", passphrase=b"correct horse")
    assert signing.key_id(key.public_key()) == kid == signing.key_id(signing.load_public_key(tmp_path / "a.pub"))
    with pytest.raises(SignatureError) as info:
        signing.load_private_key(tmp_path / "a.key", passphrase=b"wrong")
    assert info.value.path.endswith("a.key")


def test_round_trip_and_key_id(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    bundle, _, _ = make_bundle(tmp_path / "b")
    sig = signing.sign_bundle(bundle, signing.load_private_key(keys[0]))
    document = json.loads(sig.read_text())
    assert document["algorithm"] == "ed25519" and document["signed_file"] == "manifest.json"
    assert signing.verify_bundle_signature(bundle, signing.load_public_key(keys[1])) == document["key_id"]
    assert load_manifest(bundle, public_key=keys[1]).signed_by == document["key_id"]
    assert load_manifest(bundle).signed_by is None  # no key configured: signature not required


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.__setitem__("algorithm", "rsa"), "algorithm"),
        (lambda d: d.__setitem__("signature", "%%% not base64"), "signature"),
        (lambda d: d.__setitem__("signature", "AAAA"), "signature"),
        (lambda d: d.__setitem__("signed_file", "other.json"), "signed_file"),
    ],
)
def test_malformed_signature_documents(tmp_path: Path, keys: tuple[Path, Path], edit, field: str) -> None:
    bundle, _, _ = make_bundle(tmp_path / "b")
    sig = signing.sign_bundle(bundle, signing.load_private_key(keys[0]))
    document = json.loads(sig.read_text())
    edit(document)
    sig.write_text(json.dumps(document))
    with pytest.raises(SignatureError) as info:
        load_manifest(bundle, public_key=keys[1])
    assert info.value.path.endswith(signing.SIGNATURE_FILE) and info.value.field == field


def test_signature_not_json(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    bundle, _, _ = make_bundle(tmp_path / "b")
    (bundle / signing.SIGNATURE_FILE).write_text("garbage")
    with pytest.raises(SignatureError) as info:
        load_manifest(bundle, public_key=keys[1])
    assert info.value.path.endswith(signing.SIGNATURE_FILE)


def test_wrong_key_type_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "ec.pub").write_bytes(pem)
    with pytest.raises(SignatureError, match="ed25519"):
        signing.load_public_key(tmp_path / "ec.pub")


def test_signer_reads_the_manifest_like_the_robot(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """Issue 9: the signer uses the robot's reader, so it never signs a manifest the robot would not read
    (a symlink, which could point anywhere, or a file above the size bound)."""
    from kdmarl_student.bundle_files import MAX_MANIFEST_BYTES
    from kdmarl_student.errors import BundleError

    bundle, _, _ = make_bundle(tmp_path / "b")
    manifest = bundle / "manifest.json"
    real = tmp_path / "real.json"
    manifest.rename(real)
    manifest.symlink_to(real)
    with pytest.raises(BundleError, match="symlink") as info:
        signing.sign_bundle(bundle, signing.load_private_key(keys[0]))
    assert info.value.path.endswith("manifest.json")
    manifest.unlink()
    manifest.write_bytes(real.read_bytes() + b" " * MAX_MANIFEST_BYTES)
    with pytest.raises(BundleError, match="at most"):
        signing.sign_bundle(bundle, signing.load_private_key(keys[0]))
    assert not (bundle / signing.SIGNATURE_FILE).exists()
