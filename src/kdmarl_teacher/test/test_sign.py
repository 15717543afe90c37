"""kdmarl sign: key generation, signing (after validating the bundle), verification, refusal on tampering."""

from __future__ import annotations

import argparse
import hashlib
import json
import stat
from pathlib import Path

import pytest
from kdmarl_student.errors import BundleError, SignatureError
from kdmarl_student.policy import StudentPolicy
from kdmarl_student.signing import load_private_key, sign_bundle
from kdmarl_teacher.algos.teacher import load_teacher
from kdmarl_teacher.export import bundle as export_bundle_mod
from kdmarl_teacher.export import onnx_models
from kdmarl_teacher.export import sign as sign_mod
from test_export import write_teacher


def sign_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    sign_mod.add_arguments(parser)
    return sign_mod.run(parser.parse_args(list(argv)))


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    teacher = load_teacher(write_teacher(tmp_path / "run", hidden=(16,)))
    return export_bundle_mod.export_bundle(
        spec=teacher.spec, agents=onnx_models.teacher_export_agents(teacher), teacher_actor=teacher.actor,
        out_dir=tmp_path / "bundle", eval_seeds=(), parity_random=100, parity_recorded=0, latency_calls=0,
        dynamo=False,
    )


def test_generate_sign_verify_and_node_refusal(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    prefix = tmp_path / "keys" / "team"
    assert sign_cli("--generate-key", str(prefix)) == 0
    private, public = tmp_path / "keys" / "team.key", tmp_path / "keys" / "team.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    with pytest.raises(SignatureError):  # the node with a key refuses the unsigned bundle
        StudentPolicy(bundle, "agent_0", public_key=public)
    assert sign_cli(str(bundle), "--key", str(private)) == 0
    assert (bundle / "manifest.sig").is_file()
    assert sign_cli(str(bundle), "--verify", "--public-key", str(public)) == 0
    assert "signature valid" in capsys.readouterr().out
    assert StudentPolicy(bundle, "agent_0", public_key=public).manifest.signed_by
    with pytest.raises(FileExistsError):  # never overwrite a key
        sign_cli("--generate-key", str(prefix))


def test_encrypted_key_uses_the_environment_passphrase(bundle: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sign_mod.PASSPHRASE_ENV, "s3cret")
    assert sign_cli("--generate-key", str(tmp_path / "k"), str(bundle)) == 0  # generate and sign in one go
    assert b"ENCRYPTED" in (tmp_path / "k.key").read_bytes()
    monkeypatch.setenv(sign_mod.PASSPHRASE_ENV, "wrong")
    with pytest.raises(SignatureError):
        sign_cli(str(bundle), "--key", str(tmp_path / "k.key"))
    assert sign_cli(str(bundle), "--verify", "--public-key", str(tmp_path / "k.pub")) == 0


def test_refuses_to_sign_a_tampered_bundle(bundle: Path, tmp_path: Path) -> None:
    sign_cli("--generate-key", str(tmp_path / "k"))
    model = bundle / "agent_1.onnx"
    original = model.read_bytes()
    model.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # same size, one bit changed
    with pytest.raises(BundleError) as info:
        sign_cli(str(bundle), "--key", str(tmp_path / "k.key"))
    assert info.value.path.endswith("agent_1.onnx") and info.value.field == "agents[1].model.sha256"
    model.write_bytes(original + b"\0")  # a different size is refused before the file is even read
    with pytest.raises(BundleError) as info:
        sign_cli(str(bundle), "--key", str(tmp_path / "k.key"))
    assert info.value.path.endswith("agent_1.onnx") and info.value.field == "agents[1].model.bytes"
    assert not (bundle / "manifest.sig").exists()


def _move_weights_to_external_data(bundle: Path, agent_index: int) -> Path:
    """Rewrite agent_N.onnx with its weights in an external file, listed in the manifest with its true sha256
    (what a pre-issue-9 exporter or signer let through); returns the external weights file."""
    onnx = pytest.importorskip("onnx")
    path = bundle / f"agent_{agent_index}.onnx"
    onnx.save(onnx.load(str(path)), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=f"agent_{agent_index}.weights", size_threshold=0)
    manifest = bundle / "manifest.json"
    data = json.loads(manifest.read_text())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    data["agents"][agent_index]["model"].update(sha256=digest, bytes=path.stat().st_size)
    manifest.write_text(json.dumps(data, indent=2))
    return bundle / f"agent_{agent_index}.weights"


def test_sign_and_verify_refuse_onnx_external_data(bundle: Path, tmp_path: Path) -> None:
    """Issue 9: external weights are covered by neither sha256 nor signature: a tampered weights file used to
    load, and ``--verify`` called the bundle valid. Now signing refuses it, and so does verifying a bundle an
    older signer signed."""
    sign_cli("--generate-key", str(tmp_path / "k"))
    weights = _move_weights_to_external_data(bundle, 1)
    with pytest.raises(BundleError) as info:
        sign_cli(str(bundle), "--key", str(tmp_path / "k.key"))
    assert info.value.path.endswith("agent_1.onnx") and info.value.field.endswith(".external_data")
    assert not (bundle / "manifest.sig").exists()
    sign_bundle(bundle, load_private_key(tmp_path / "k.key"))  # as an older kdmarl sign would have
    weights.write_bytes(bytes(b ^ 0x55 for b in weights.read_bytes()))  # tampered, signature still valid
    with pytest.raises(BundleError) as info:
        sign_cli(str(bundle), "--verify", "--public-key", str(tmp_path / "k.pub"))
    assert info.value.path.endswith("agent_1.onnx") and info.value.field.endswith(".external_data")
    with pytest.raises(BundleError):  # and the robot refuses it too
        StudentPolicy(bundle, "agent_1", public_key=tmp_path / "k.pub")


def test_verify_detects_a_changed_manifest(bundle: Path, tmp_path: Path) -> None:
    sign_cli("--generate-key", str(tmp_path / "k"), str(bundle))
    manifest = bundle / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"control_rate_hz": 10.0', '"control_rate_hz": 11.0', 1))
    with pytest.raises(SignatureError):
        sign_cli(str(bundle), "--verify", "--public-key", str(tmp_path / "k.pub"))


def test_usage_errors(bundle: Path) -> None:
    with pytest.raises(ValueError, match="bundle directory"):
        sign_cli()
    with pytest.raises(ValueError, match="--key"):
        sign_cli(str(bundle))
    with pytest.raises(ValueError, match="--public-key"):
        sign_cli(str(bundle), "--verify")
