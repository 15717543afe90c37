"""``kdmarl publish`` end to end through the CLI dispatcher: init, publish, rotate, refresh; a robot updater reads the
result over real HTTP. The TUF logic itself is tested in kdmarl_student/test/test_fleet_updates.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kdmarl_student.fleet_serve import serving
from kdmarl_student.fleet_update import FleetUpdater
from kdmarl_student.testing import make_bundle

from kdmarl_teacher import cli


def kdmarl(*argv: str | Path) -> int:
    return cli.main([str(a) for a in argv])


def test_publish_rotate_refresh_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert kdmarl("sign", "--generate-key", tmp_path / "team") == 0
    bundles = []
    for seed in (1, 2):
        bundle, _, _ = make_bundle(tmp_path / f"b{seed}", seed=seed)
        assert kdmarl("sign", bundle, "--key", tmp_path / "team.key") == 0
        bundles.append(bundle)
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    assert kdmarl("publish", "--init", "--repo", repo, "--keys", keys) == 0
    assert "targets 2 of 3" in capsys.readouterr().out
    assert kdmarl("publish", bundles[0], "--repo", repo, "--keys", keys, "--public-key", tmp_path / "team.pub",
                  "--team", "spread") == 0
    assert "team spread release 1 (supersedes None)" in capsys.readouterr().out

    def robot_check() -> tuple[str, int | None]:
        with serving(repo) as url:
            robot = FleetUpdater(tmp_path / "robot", url, "spread", "agent_2", trusted_root=repo / "metadata" /
                                 "1.root.json", bundle_public_key=tmp_path / "team.pub")
            result = robot.check()
        return result.status, result.release

    assert robot_check() == ("staged", 1)
    assert kdmarl("publish", "--rotate", "targets", "--repo", repo, "--keys", keys) == 0
    assert "2.root.json" in capsys.readouterr().out
    assert kdmarl("publish", bundles[1], "--repo", repo, "--keys", keys, "--public-key", tmp_path / "team.pub",
                  "--team", "spread") == 0
    assert robot_check() == ("staged", 2)
    version = json.loads((repo / "metadata" / "timestamp.json").read_text())["signed"]["version"]
    assert kdmarl("publish", "--refresh", "--repo", repo, "--keys", keys) == 0
    assert json.loads((repo / "metadata" / "timestamp.json").read_text())["signed"]["version"] == version + 1


def test_publish_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bundle, _, _ = make_bundle(tmp_path / "unsigned")
    assert kdmarl("publish", "--init", "--repo", tmp_path / "repo", "--keys", tmp_path / "keys") == 0
    capsys.readouterr()
    assert kdmarl("publish", bundle, "--repo", tmp_path / "repo", "--keys", tmp_path / "keys") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "manifest.sig: missing" in err and "kdmarl sign" in err
    assert kdmarl("publish", bundle, "--init", "--repo", tmp_path / "r", "--keys", tmp_path / "k") == 2
    assert "exactly one of" in capsys.readouterr().err
    assert kdmarl("publish", "--init", "--repo", tmp_path / "r", "--keys", tmp_path / "r" / "keys") == 2
    assert "never be in a directory that is served" in capsys.readouterr().err


def test_publish_imports_no_torch() -> None:
    code = ("import sys; from kdmarl_teacher.export import publish; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_keystore_encrypted_with_the_signing_passphrase(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDMARL_SIGNING_PASSPHRASE", "correct horse")
    assert kdmarl("sign", "--generate-key", tmp_path / "team") == 0
    bundle, _, _ = make_bundle(tmp_path / "b1")
    assert kdmarl("sign", bundle, "--key", tmp_path / "team.key") == 0
    assert kdmarl("publish", "--init", "--repo", tmp_path / "repo", "--keys", tmp_path / "keys") == 0
    keys = list((tmp_path / "keys").glob("*.key"))
    assert len(keys) == 6 and all(b"ENCRYPTED PRIVATE KEY" in k.read_bytes() for k in keys)
    monkeypatch.delenv("KDMARL_SIGNING_PASSPHRASE")
    capsys.readouterr()
    assert kdmarl("publish", bundle, "--repo", tmp_path / "repo", "--keys", tmp_path / "keys") == 2
    assert "KDMARL_SIGNING_PASSPHRASE" in capsys.readouterr().err
    monkeypatch.setenv("KDMARL_SIGNING_PASSPHRASE", "correct horse")
    assert kdmarl("publish", bundle, "--repo", tmp_path / "repo", "--keys", tmp_path / "keys") == 0
