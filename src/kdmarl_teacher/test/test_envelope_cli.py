"""``kdmarl envelope`` (issue 25) on a copy of the trained spread3 bundle: real mpe2, ONNX Runtime, matplotlib."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kdmarl_student.manifest import load_manifest
from kdmarl_student.signing import generate_keypair, load_public_key

from kdmarl_teacher import cli

SPREAD3 = Path(__file__).resolve().parents[2] / "kdmarl_bringup" / "test" / "data" / "spread3"


def test_envelope_is_measured_drawn_and_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "spread3"
    shutil.copytree(SPREAD3, bundle)
    before = (bundle / "manifest.json").read_bytes()
    assert cli.main(["envelope", str(bundle), "--episodes", "3"]) == 0  # measure and draw only
    assert (bundle / "manifest.json").read_bytes() == before and (bundle / "envelope.png").stat().st_size > 10_000
    assert "action_delay k=3" in capsys.readouterr().out
    assert cli.main(["envelope", str(bundle), "--episodes", "3", "--write"]) == 0
    data = load_manifest(bundle).data
    assert data["schema_version"] == "1.3" and data["envelope"]["protocol"]["episodes"] == 3
    assert len(data["envelope"]["cells"]) == 14 and data["envelope"]["protocol"]["complete"]
    (bundle / "envelope.png").unlink()
    assert cli.main(["envelope", str(bundle), "--from-manifest"]) == 0 and (bundle / "envelope.png").is_file()


def test_a_signed_bundle_is_rewritten_only_with_a_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "spread3"
    shutil.copytree(SPREAD3, bundle)
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    assert cli.main(["sign", str(bundle), "--key", str(tmp_path / "k.key")]) == 0
    signed = (bundle / "manifest.json").read_bytes()
    args = ["envelope", str(bundle), "--episodes", "2", "--seconds", "0", "--write"]
    assert cli.main(args) == 2
    assert "rewriting its manifest would void the signature" in capsys.readouterr().err
    assert (bundle / "manifest.json").read_bytes() == signed  # untouched
    assert cli.main([*args, "--key", str(tmp_path / "k.key")]) == 0
    manifest = load_manifest(bundle, public_key=load_public_key(tmp_path / "k.pub"))  # the new signature verifies
    assert not manifest.data["envelope"]["protocol"]["complete"]  # --seconds 0: one cell, said so
    assert len(manifest.data["envelope"]["cells"]) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
