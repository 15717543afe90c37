"""The `kdmarl` dispatcher: help, subcommand table, lazy imports, missing modules, train/report via main()."""

import subprocess
import sys
from pathlib import Path

import pytest
from test_report_distill import DPI, png_size

from kdmarl_teacher import cli


def test_help_lists_all_subcommands(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in ("train", "evaluate", "report", "distill", "export", "sign"):
        assert name in text
    assert cli.main([]) == 2


def test_unknown_command_fails() -> None:
    with pytest.raises(SystemExit):
        cli.main(["fly"])


def test_missing_module_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli.COMMANDS, "ghost", ("kdmarl_teacher.no_such_module", "not written yet"))
    with pytest.raises(SystemExit, match="kdmarl ghost: not available yet"):
        cli.main(["ghost"])


def test_help_does_not_import_torch() -> None:
    code = "import sys; from kdmarl_teacher import cli; cli.main(['--help']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


def test_train_then_report_via_main(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--scenario", "simple_spread", "--out", str(out), "--no-progress", "--seed", "3",
            "--set", "num_envs=8", "--set", "total_steps=400", "--set", "actor_hidden=[8]",
            "--set", "critic_hidden=[8]", "--set", "torch_threads=1"]
    assert cli.main(args) == 0
    assert (out / "teacher.pt").is_file()
    assert "seed: 3" in (out / "config.yaml").read_text()
    assert cli.main(["report", str(out)]) == 0
    assert png_size(out / "learning_curve.png") == (11 * DPI, 4 * DPI)  # report's two panels, figsize (11, 4)
    # a config error is reported with the key, as exit code 2, not a traceback
    assert cli.main(["train", "--out", str(tmp_path / "x"), "--set", "nope=1"]) == 2
    # resuming a finished run is a no-op that keeps its outputs
    before = {name: (out / name).read_bytes() for name in ("teacher.pt", "checkpoint.pt", "metrics.csv")}
    assert cli.main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert {name: (out / name).read_bytes() for name in before} == before
