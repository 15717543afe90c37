"""kdmarl sign: key generation, signing (after validating the bundle), verification, refusal on tampering."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest
from kdmarl_student.errors import BundleError, SignatureError
from kdmarl_student.policy import StudentPolicy
from kdmarl_teacher.checkpoint import load_teacher
from test_export import write_teacher

from kdmarl_teacher import export as export_mod
from kdmarl_teacher import sign as sign_mod


def sign_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    sign_mod.add_arguments(parser)
    return sign_mod.run(parser.parse_args(list(argv)))


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    teacher = load_teacher(write_teacher(tmp_path / "run", hidden=(16,)))
    return export_mod.export_bundle(
        spec=teacher.spec, agents=export_mod.teacher_export_agents(teacher), teacher_actor=teacher.actor,
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
    with open(bundle / "agent_1.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError) as info:
        sign_cli(str(bundle), "--key", str(tmp_path / "k.key"))
    assert info.value.path.endswith("agent_1.onnx") and info.value.field == "agents[1].model.sha256"
    assert not (bundle / "manifest.sig").exists()


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
