"""The fault probe of issue 9, on real runs and real files: a diverging run stops and keeps its last good
checkpoint; a truncated checkpoint, a YAML syntax error, a missing GPU and a full disk are ONE line on stderr
naming the file (and line), with exit code 2 and no traceback."""

from __future__ import annotations

import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kdmarl_teacher.algos.config import load_config
from kdmarl_teacher.algos.mappo import train
from kdmarl_teacher.core.run_files import load_checkpoint
from kdmarl_teacher.distill.config import DistillConfig
from kdmarl_teacher.distill.loop import distill

from kdmarl_teacher import cli

TINY = ["num_envs=8", "num_steps=25", "total_steps=800", "actor_hidden=[16,16]", "critic_hidden=[16,16]",
        "update_epochs=2", "num_minibatches=2", "checkpoint_every=2", "torch_threads=1", "anneal_lr=false"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny teacher run stopped after 2 of its 4 iterations (checkpoint.pt and teacher.pt at iteration 2)."""
    out = tmp_path_factory.mktemp("faults") / "run"
    train(load_config(None, TINY), out, progress=False, stop_after_iterations=2)
    return out


@pytest.fixture
def run(run_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the run (tests truncate and poison its files)."""
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def one_line_error(capsys: pytest.CaptureFixture, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"kdmarl {command}: error: ")
    return lines[0]


def poison_optimizer(path: Path, key: tuple[str, ...], lr: float | None = None, exp_avg_sq: float | None = None
                     ) -> None:
    """Corrupt the Adam state saved in a checkpoint: a step size of `lr` (what `--set lr=1e9` did before the config
    refused it; the run resumes with it, since anneal_lr is off and Adam restores its param_groups) or a negative
    second moment (its square root makes the next step NaN)."""
    ckpt = torch.load(path, weights_only=True)
    state = ckpt
    for k in key:
        state = state[k]
    for group in state["param_groups"]:
        group["lr"] = group["lr"] if lr is None else lr
    for moments in state["state"].values():
        if exp_avg_sq is not None:
            moments["exp_avg_sq"].fill_(exp_avg_sq)
    torch.save(ckpt, path)


def test_train_stops_at_the_first_nonfinite_update_and_keeps_the_last_checkpoint(
        run: Path, capsys: pytest.CaptureFixture) -> None:
    poison_optimizer(run / "checkpoint.pt", ("train_state", "optimizer"), lr=1e9)
    before = {name: (run / name).read_bytes() for name in ("checkpoint.pt", "teacher.pt")}
    assert cli.main(["train", "--out", str(run), "--resume", "--no-progress"]) == 2
    line = one_line_error(capsys, "train")
    assert "iteration 3: non-finite" in line and "grad_norm=inf" in line and "keeps iteration 2" in line, line
    for name, data in before.items():  # nothing was checkpointed after the divergence
        assert (run / name).read_bytes() == data, name
    ckpt = load_checkpoint(run / "teacher.pt")
    assert all(bool(v.isfinite().all()) for v in ckpt["actor"]["state_dict"].values())
    assert (run / "metrics.csv").read_text().count("\n") == 3  # header + iterations 1, 2


def test_distill_stops_at_the_first_nonfinite_update_and_keeps_the_last_checkpoint(
        run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from kdmarl_teacher.algos.teacher import load_teacher

    out = tmp_path / "students"
    small = {"num_envs": 16, "num_steps": 25, "eval_episodes": 2, "checkpoint_every": 2, "anneal_lr": False,
             "torch_threads": 1}
    distill(DistillConfig(**small, total_steps=16 * 25 * 2), load_teacher(run), out, progress=False)
    poison_optimizer(out / "checkpoint.pt", ("optimizer",), exp_avg_sq=-1.0)
    before = {name: (out / name).read_bytes() for name in ("checkpoint.pt", "students.pt")}
    args = ["distill", "--teacher", str(run), "--out", str(out), "--resume", "--no-progress",
            "--set", f"total_steps={16 * 25 * 6}"]
    assert cli.main(args) == 2
    line = one_line_error(capsys, "distill")
    assert "iteration 3: non-finite loss/" in line and "weights student_agent_0." in line, line
    assert "keeps iteration 2" in line, line
    for name, data in before.items():
        assert (out / name).read_bytes() == data, name


def test_truncated_checkpoints_are_one_line_errors(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    assert cli.main(["train", "--out", str(run), "--resume", "--no-progress"]) == 2
    line = one_line_error(capsys, "train")
    assert f"{ckpt}: expected a complete torch.save checkpoint; the file is truncated" in line, line

    students = run / "students.pt"  # next to a good teacher.pt: export reads it
    students.write_bytes((run / "teacher.pt").read_bytes()[:100])
    assert cli.main(["export", str(run), "--out", str(tmp_path / "bundle"), "--eval-episodes", "0"]) == 2
    assert f"{students}: expected a complete torch.save checkpoint" in one_line_error(capsys, "export")

    teacher = run / "teacher.pt"
    teacher.write_bytes(b"")
    assert cli.main(["evaluate", str(run), "--episodes", "2"]) == 2
    assert f"{teacher}: expected a complete torch.save checkpoint" in one_line_error(capsys, "evaluate")


def test_yaml_syntax_errors_name_the_file_and_line(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("lr: 0.001\ngamma: 0.99\nactor_hidden: [64, 64\nseed: 1\n")
    assert cli.main(["train", "--config", str(config), "--out", str(tmp_path / "x")]) == 2
    line = one_line_error(capsys, "train")
    assert f"{config}:4: invalid YAML" in line and "expected `key: value` lines" in line, line
    assert not (tmp_path / "x").exists()

    team = tmp_path / "team.yaml"
    team.write_text("scenario: simple_spread\nagents: {agent_0: {sensing: full}\n")
    args = ["distill", "--teacher", str(run), "--out", str(tmp_path / "s"), "--team", str(team), "--no-progress"]
    assert cli.main(args) == 2
    assert f"{team}:3: invalid YAML" in one_line_error(capsys, "distill")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_a_one_line_error(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["train", "--out", str(tmp_path / "x"), "--set", "device=cuda", *[f"--set={s}" for s in TINY]]) == 2
    line = one_line_error(capsys, "train")
    assert "--set: device 'cuda'" in line and "torch.cuda.is_available() is False" in line, line
    assert cli.main(["distill", "--teacher", str(run), "--out", str(tmp_path / "s"), "--device", "cuda"]) == 2
    assert "device 'cuda'" in one_line_error(capsys, "distill")
    assert not (tmp_path / "x").exists() and not (tmp_path / "s").exists()


def _limit_file_size(limit: int) -> None:
    """preexec_fn: writes past `limit` bytes fail with EFBIG (SIGXFSZ ignored), as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_full_disk_while_checkpointing_is_a_one_line_error_and_keeps_the_old_checkpoint(run: Path) -> None:
    ckpt = run / "checkpoint.pt"
    old = ckpt.read_bytes()
    limit = len(old) // 2  # above config.yaml, metrics.csv and the TensorBoard events, below the checkpoint
    proc = subprocess.run([sys.executable, "-m", "kdmarl_teacher.cli", "train", "--out", str(run), "--resume",
                           "--no-progress"], check=False, capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: _limit_file_size(limit))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0] == f"kdmarl train: error: cannot write {ckpt}: File too large (EFBIG)", lines[0]
    assert ckpt.read_bytes() == old  # the previous checkpoint is intact ...
    assert load_checkpoint(ckpt)["iteration"] == 2
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # ... and no temp file is left behind
