"""MAPPO training: GAE by hand, every output of a short run, load_teacher, and bit-exact resume."""

import csv
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from kdmarl_teacher.algos.config import load_config
from kdmarl_teacher.algos.mappo import train
from kdmarl_teacher.algos.teacher import load_teacher
from kdmarl_teacher.core.run_files import load_checkpoint

TINY = ["num_envs=8", "num_steps=25", "total_steps=800", "actor_hidden=[16,16]", "critic_hidden=[16,16]",
        "update_epochs=2", "num_minibatches=2", "checkpoint_every=2", "torch_threads=1"]


def tiny(*extra: str):
    return load_config(None, [*TINY, *extra])


def test_short_run_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "run"
    teacher_path = train(tiny(), out, progress=False)
    assert teacher_path == out / "teacher.pt"
    for name in ("config.yaml", "teacher.pt", "checkpoint.pt", "metrics.csv"):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["num_envs"] == 8 and cfg["actor_hidden"] == [16, 16]
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert int(rows[-1]["global_step"]) == 800
    for key in ("wall_time", "sps", "train_return", "pg_loss", "v_loss", "entropy", "task/landmarks_covered"):
        assert key in rows[0], key

    teacher = load_teacher(out)  # a directory or the file
    assert teacher.spec.name == "simple_spread" and teacher.n_agents == 3
    assert teacher.global_step == 800
    obs = torch.randn(5, 3, teacher.spec.obs_dim_max)
    assert teacher.act(obs).shape == (5, 3)
    x = teacher.actor_input(obs[:, 0], torch.zeros(5, dtype=torch.long))
    assert teacher.actor(x).shape == (5, 5) and teacher.actor.embed(x).shape == (5, 16)
    state = torch.randn(5, teacher.spec.state_dim)
    assert teacher.critic.time_feature  # default: time-aware critic
    assert teacher.value(state, 3).shape == (5, 3)
    assert torch.equal(teacher.value(state, torch.full((5,), 3)), teacher.value(state, 3))
    assert not torch.equal(teacher.value(state, 0), teacher.value(state, 20))
    with pytest.raises(ValueError, match="pass t"):
        teacher.value(state)
    assert not any(p.requires_grad for p in teacher.actor.parameters())
    # teacher.pt loads with weights_only (plain containers + tensors) and has no training state
    assert "train_state" not in torch.load(out / "teacher.pt", weights_only=True)

    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny(), out, progress=False)


def _params(path: Path) -> dict:
    ckpt = load_checkpoint(path)
    return {**{f"a.{k}": v for k, v in ckpt["actor"]["state_dict"].items()},
            **{f"c.{k}": v for k, v in ckpt["critic"]["state_dict"].items()},
            **{f"n.{k}": v for k, v in ckpt["value_norm"]["state_dict"].items()}}


def _metric_rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return [{k: v for k, v in r.items() if k not in ("wall_time", "sps", "sps_iter")} for r in csv.DictReader(fh)]


def tb_steps(tb_dir: Path, tag: str) -> list[int]:
    """The steps of one scalar as TensorBoard shows them (all event files of the run, purges applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    """Interrupt after 2 iterations, resume for 1, lose that iteration's checkpoint (as a kill would), resume to
    the end: parameters and metrics equal the uninterrupted run's bit for bit, and TensorBoard holds iteration 3
    once (the second resume purges what the lost iteration logged)."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(tiny(), full, progress=False)

    train(tiny(), cut, progress=False, stop_after_iterations=2)
    shutil.copy(cut / "checkpoint.pt", tmp_path / "ckpt_it2.pt")
    train(tiny(), cut, resume=True, progress=False, stop_after_iterations=1)
    assert len(_metric_rows(cut / "metrics.csv")) == 3
    shutil.copy(tmp_path / "ckpt_it2.pt", cut / "checkpoint.pt")  # iteration 3's checkpoint never got written
    train(tiny(), cut, resume=True, progress=False)

    a, b = _params(full / "teacher.pt"), _params(cut / "teacher.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert load_checkpoint(cut / "checkpoint.pt")["iteration"] == 4
    assert _metric_rows(full / "metrics.csv") == _metric_rows(cut / "metrics.csv")
    assert len(list((cut / "tb").glob("events.out.tfevents.*"))) == 3
    assert tb_steps(cut / "tb", "train/pg_loss") == tb_steps(full / "tb", "train/pg_loss") == [200, 400, 600, 800]


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    train(tiny(), tmp_path / "r", progress=False, stop_after_iterations=1)
    with pytest.raises(ValueError, match="lr"):
        train(tiny("lr=0.5"), tmp_path / "r", resume=True, progress=False)


def test_speaker_listener_gru_short_run(tmp_path: Path) -> None:
    """Heterogeneous agents (3 vs 5 actions, 3 vs 11 obs) with the recurrent option."""
    cfg = tiny("scenario=simple_speaker_listener", "use_gru=true", "gru_hidden=8", "total_steps=400")
    train(cfg, tmp_path / "sl", progress=False)
    teacher = load_teacher(tmp_path / "sl" / "teacher.pt")
    assert teacher.actor.recurrent and teacher.spec.n_actions == (3, 5)
    actions = teacher.act(torch.randn(64, 2, 11), deterministic=False, generator=torch.Generator().manual_seed(0))
    assert int(actions[:, 0].max()) <= 2  # the speaker never picks a listener-only action

    from kdmarl_teacher.evaluation.evaluate import evaluate, render_episode

    report = evaluate(teacher, episodes=10, seed_start=1000)
    det = report["results"]["deterministic"]
    assert "goal_distance" in det["metrics"] and "references" not in report
    # the GRU state is carried through the episode identically in the port (float64) and in real mpe2
    ret = render_episode(teacher, 1000, tmp_path / "sl.gif")
    assert abs(ret - det["episode_team_returns"][0]) < 1e-4
