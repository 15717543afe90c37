"""KD-MARL distillation end to end on a real (tiny, briefly trained) teacher and the real batched envs.

The teacher fixture trains MAPPO for a few seconds; students distilled for a few seconds must beat uniform
random actions on the same seeds, and the teacher must come out bit-identical.
"""

from __future__ import annotations

import argparse
import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from kdmarl_student.manifest import sha256_file
from kdmarl_teacher.algos.teacher import load_teacher
from kdmarl_teacher.distill.cli import add_arguments, resolve_config
from kdmarl_teacher.distill.config import DistillConfig
from kdmarl_teacher.distill.loop import distill
from kdmarl_teacher.distill.profiles import load_team
from kdmarl_teacher.distill.students import StudentMLP
from kdmarl_teacher.distill.students_file import load_students
from kdmarl_teacher.distill.team import StudentTeam
from test_mappo import tb_steps


def _cfg(**kw: object) -> DistillConfig:
    base = {"num_envs": 64, "num_steps": 25, "total_steps": 64 * 25 * 30, "eval_episodes": 100,
            "torch_threads": 1, "checkpoint_every": 10, "lr": 0.01}
    return DistillConfig(**{**base, **kw})


def test_end_to_end_beats_random_and_teacher_is_untouched(teacher_path: Path, tmp_path: Path) -> None:
    teacher = load_teacher(teacher_path)
    before = {k: v.clone() for m in (teacher.actor, teacher.critic, teacher.value_normalizer)
              for k, v in m.state_dict().items()}
    sha = sha256_file(teacher_path)
    report = distill(_cfg(), teacher, tmp_path, teacher_path=teacher_path, progress=False)

    # Teacher: bit-identical in memory and on disk.
    after = {k: v for m in (teacher.actor, teacher.critic, teacher.value_normalizer) for k, v in m.state_dict().items()}
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sha256_file(teacher_path) == sha == report["teacher"]["sha256"]

    # Students beat random on the same seeds (with a margin of the confidence intervals).
    s, r = report["students_eval"], report["random_eval"]
    assert s["team_return"] - s["ci95"] > r["team_return"] + r["ci95"], report
    assert report["teacher_eval"]["team_return"] > r["team_return"]
    assert report["min_flops_reduction"] > 1.0
    assert report["rollout_note"] == ""  # 25 steps per iteration: every MPE episode whole

    # Outputs: students.pt (profiles, architecture, teacher hash), metrics.csv, TensorBoard, report.
    students, payload = load_students(tmp_path)
    assert payload["teacher"]["sha256"] == sha and payload["final"]
    assert [a["name"] for a in payload["agents"]] == ["agent_0", "agent_1", "agent_2"]
    for st, a in zip(students, payload["agents"], strict=True):
        # full sensing of spread N=3: the whole 18-input observation in, the 5 MPE actions out
        assert a["sensing"]["name"] == "full" and a["input_dim"] == 18 and st(torch.zeros(1, 18)).shape == (1, 5)
        assert a["resources"]["flops"] <= a["hardware"]["max_flops"]
        assert "role" not in "".join(st.state_dict())  # training-only heads are not part of a student
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert len(rows) == 30 and float(rows[-1]["teacher_agreement"]) > float(rows[0]["teacher_agreement"])
    assert any((tmp_path / "tb").iterdir())
    assert (tmp_path / "distill_report.json").is_file()


def test_resume_is_bit_exact(teacher_path: Path, tmp_path: Path) -> None:
    """Two iterations, then --resume to three, equals three in one go: the same students to the bit and the same
    metrics.csv rows. checkpoint_every=2 (not 1), so the final checkpoint of the first part, not a per-iteration
    one, must carry the optimizer, both generators and the role centroids; lr annealing off, because its schedule
    depends on total_steps, which a resume may extend."""
    teacher = load_teacher(teacher_path)
    kw = {"checkpoint_every": 2, "eval_episodes": 10, "anneal_lr": False}
    whole = distill(_cfg(total_steps=64 * 25 * 3, **kw), teacher, tmp_path / "whole", progress=False)
    distill(_cfg(total_steps=64 * 25 * 2, **kw), teacher, tmp_path / "split", progress=False)
    with pytest.raises(FileExistsError):
        distill(_cfg(total_steps=64 * 25 * 2, **kw), teacher, tmp_path / "split", progress=False)
    resumed = distill(_cfg(total_steps=64 * 25 * 3, **kw), teacher, tmp_path / "split", progress=False, resume=True)

    assert resumed["global_step"] == whole["global_step"] == 64 * 25 * 3
    assert resumed["students_eval"] == whole["students_eval"]
    (a, _), (b, _) = load_students(tmp_path / "whole"), load_students(tmp_path / "split")
    for sa, sb in zip(a, b, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(sa.state_dict().values(), sb.state_dict().values(), strict=True))

    def rows(run: Path) -> list[dict[str, str]]:
        timing = ("wall_time", "sps")
        return [{k: v for k, v in r.items() if k not in timing} for r in csv.DictReader((run / "metrics.csv").open())]

    assert rows(tmp_path / "split") == rows(tmp_path / "whole") and len(rows(tmp_path / "whole")) == 3


def _csv_iterations(path: Path) -> list[int]:
    return [int(r["iteration"]) for r in csv.DictReader(path.open())]


def test_killed_run_resumes_with_its_config_and_logs_every_iteration_once(
        teacher_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """SIGKILL a `kdmarl distill` between checkpoints (interval 8), then: a second run over it is refused and
    leaves its distill_config.yaml alone, a resume with another config is refused, and the resumed run's
    metrics.csv and TensorBoard hold every iteration exactly once."""
    from kdmarl_teacher.core.run_files import load_checkpoint

    from kdmarl_teacher import cli

    out, every, n = tmp_path / "s", 8, 20
    sets = [f"--set={s}" for s in ("num_envs=32", "num_steps=25", f"total_steps={32 * 25 * n}",
                                   f"checkpoint_every={every}", "eval_episodes=4", "torch_threads=1")]
    args = ["distill", "--teacher", str(teacher_path), "--out", str(out), "--no-progress", *sets]
    proc = subprocess.Popen([sys.executable, "-m", "kdmarl_teacher.cli", *args], stdout=subprocess.DEVNULL)
    metrics, deadline = out / "metrics.csv", time.monotonic() + 300
    while not metrics.exists() or metrics.read_text().count("\n") - 1 < every + 2:  # row 9 comes after checkpoint 8
        assert proc.poll() is None and time.monotonic() < deadline, "distill ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    logged, kept = _csv_iterations(metrics)[-1], load_checkpoint(out / "checkpoint.pt")["iteration"]
    assert kept % every == 0 and logged > kept  # iterations after the checkpoint were logged, then lost

    config = (out / "distill_config.yaml").read_bytes()
    capsys.readouterr()
    assert cli.main([*args, "--seed", "7"]) == 2  # a second run over the first: refused ...
    assert "already holds a distillation" in capsys.readouterr().err
    assert (out / "distill_config.yaml").read_bytes() == config  # ... and the first run's config is intact
    assert cli.main([*args, "--resume", "--set", "lr=0.02"]) == 2  # a resume must continue the same run
    assert "--resume: config differs from the checkpoint's in ['lr']" in capsys.readouterr().err

    assert cli.main([*args, "--resume"]) == 0
    assert _csv_iterations(metrics) == list(range(1, n + 1))
    assert tb_steps(out / "tb", "loss/kl") == [32 * 25 * i for i in range(1, n + 1)]


def test_hidden_slices_change_the_student_input(teacher_path: Path) -> None:
    from kdmarl_teacher.envs import make_env

    team = load_team("spread3_hetero", memory="none")  # sensing only: no history features
    students = [StudentMLP(a.input_dim, a.rung.hidden, a.n_actions) for a in team.agents]
    st = StudentTeam(team, students)
    env = make_env("simple_spread", num_envs=8, seed=0, N=3)
    obs, _ = env.reset()
    xs = st.inputs(obs)
    assert [x.shape[-1] for x in xs] == [18, 16, 16]
    torch.testing.assert_close(xs[1], obs[:, 1, 2:18])  # no_velocity drops self_vel
    moved = obs.clone()
    moved[:, 1, 0:2] += 3.0  # change agent_1's velocity: its student cannot see it
    torch.testing.assert_close(st.inputs(moved)[1], xs[1])


def test_ablation_flags_and_config() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--teacher", "t", "--out", "o", "--no-relation", "--no-role", "--set", "w_kl=0.5"])
    cfg = resolve_config(args)
    assert set(cfg.terms()) == {"pg", "kl", "ce"} and cfg.w_kl == 0.5
    with pytest.raises(ValueError, match="unknown distill config key"):
        resolve_config(parser.parse_args(["--teacher", "t", "--out", "o", "--set", "w_kll=1"]))
