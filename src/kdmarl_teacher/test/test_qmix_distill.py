"""Value-decomposition distillation from a (tiny, briefly trained) QMIX teacher: each term and its switch, the
masked utility regression, the training-only student mixer, bit-exact resume, and train -> distill -> export."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest
import torch
from kdmarl_student.manifest import sha256_file
from kdmarl_teacher.algos.config import load_qmix_config
from kdmarl_teacher.algos.mixer import QMixer
from kdmarl_teacher.algos.qmix import train
from kdmarl_teacher.algos.teacher import load_teacher
from kdmarl_teacher.cli import main as cli_main
from kdmarl_teacher.distill.cli import add_arguments, resolve_config
from kdmarl_teacher.distill.config import QMIX_TERMS, DistillConfig
from kdmarl_teacher.distill.loop import distill
from kdmarl_teacher.distill.profiles import load_team
from kdmarl_teacher.distill.qmix_recipe import minibatches, rollout, term_losses
from kdmarl_teacher.distill.students_file import load_students
from kdmarl_teacher.distill.team import StudentTeam

TEACHER = ["num_envs=32", "total_steps=16000", "agent_hidden=[32,32]", "mixer_embed=8", "hypernet_hidden=16",
           "batch_size=16", "updates_per_iteration=2", "learning_starts=800", "buffer_size=200",
           "eps_anneal_steps=8000", "eval_every=0", "lr=0.003", "gamma=0.9", "checkpoint_every=1000"]


@pytest.fixture(scope="module")
def spread_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(load_qmix_config(None, TEACHER), tmp_path_factory.mktemp("qmix_teacher"), progress=False)


@pytest.fixture(scope="module")
def sl_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_qmix_config(None, [*TEACHER, "scenario=simple_speaker_listener", "total_steps=1600"])
    return train(cfg, tmp_path_factory.mktemp("qmix_sl"), progress=False)


def _cfg(**kw: object) -> DistillConfig:
    base = {"num_envs": 32, "num_steps": 25, "total_steps": 32 * 25 * 6, "eval_episodes": 20, "torch_threads": 1,
            "checkpoint_every": 2, "lr": 0.01, "anneal_lr": False, "use_pg": False, "use_relation": False,
            "use_role": False}
    return DistillConfig(**{**base, **kw})


def _setup(teacher_path: Path, team_name: str, cfg: DistillConfig) -> tuple:
    from kdmarl_teacher.envs import make_env

    teacher = load_teacher(teacher_path)
    team = load_team(team_name)
    torch.manual_seed(0)
    students = [a.rung.build(a.input_dim, a.n_actions) for a in team.agents]
    st = StudentTeam(team, students)
    mixer = QMixer(teacher.mixer.state_dim, teacher.spec.n_agents, embed=4, hypernet_hidden=0)
    env = make_env(teacher.spec.name, num_envs=cfg.num_envs, seed=0, **teacher.spec.params)
    ro = rollout(env, teacher, st, torch.Generator().manual_seed(0), seed=5, num_steps=25,
                 temperature=cfg.q_temperature)
    torch.manual_seed(1)
    mb = next(iter(minibatches(cfg, st, ro)))
    return teacher, st, mixer, ro, mb


def _grads(modules: list[torch.nn.Module], loss: torch.Tensor) -> list[torch.Tensor]:
    params = [p for m in modules for p in m.parameters()]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def test_each_term_switch_changes_nothing_else(spread_teacher: Path) -> None:
    cfg = _cfg(w_kl=1.0, w_ce=0.3, w_util=0.2, w_mixer=0.5)
    _, st, mixer, _ro, mb = _setup(spread_teacher, "spread3_full", cfg)
    modules = [*st.students, mixer]
    all_terms = cfg.terms(QMIX_TERMS)
    assert set(all_terms) == set(QMIX_TERMS)
    parts_all, agree = term_losses(cfg, st, mixer, mb, all_terms)
    assert 0.0 <= agree <= 1.0 and all(float(v.detach()) > 0 for v in parts_all.values())
    g_all = _grads(modules, sum(w * parts_all[t] for t, w in all_terms.items()))
    for term in QMIX_TERMS:
        off = DistillConfig(**{**cfg.to_dict(), f"use_{term}": False}).terms(QMIX_TERMS)
        assert term not in off and len(off) == len(QMIX_TERMS) - 1
        parts, _ = term_losses(cfg, st, mixer, mb, off)
        assert float(parts[term]) == 0.0
        for other in off:  # every other term is exactly what it was
            assert torch.equal(parts[other], parts_all[other]), (term, other)
        g_off = _grads(modules, sum(w * parts[t] for t, w in off.items()))
        alone, _ = term_losses(cfg, st, mixer, mb, {term: all_terms[term]})
        g_term = _grads(modules, all_terms[term] * alone[term])
        for a, b, c in zip(g_all, g_off, g_term, strict=True):  # the switched-off term's gradient, nothing more
            assert torch.allclose(a - b, c, atol=1e-5 * float(a.abs().max()) + 1e-7)  # float32 cancellation
    # only the mixer term reaches the (training-only) student mixer; it also moves the students' utilities
    no_mixer, _ = term_losses(cfg, st, mixer, mb, {t: w for t, w in all_terms.items() if t != "mixer"})
    g = _grads(modules, sum(no_mixer.values()))
    assert all(float(x.abs().sum()) == 0 for x in g[-len(list(mixer.parameters())):])
    mix_only, _ = term_losses(cfg, st, mixer, mb, {"mixer": 1.0})
    g = _grads(modules, mix_only["mixer"])
    n_student = sum(1 for s in st.students for _ in s.parameters())
    assert any(float(x.abs().sum()) > 0 for x in g[:n_student])


def test_utility_regression_skips_masked_actions(sl_teacher: Path) -> None:
    """The speaker has 3 actions, the shared teacher network 5 (two masked at -1e8): the regression sees only
    the 3, so it stays at the utilities' scale."""
    cfg = _cfg(team="speaker_listener")
    _teacher, st, mixer, ro, mb = _setup(sl_teacher, "speaker_listener", cfg)
    assert bool((ro.t_q[..., 0, 3:] < -1e7).all())  # the speaker's padded actions are masked in the teacher
    parts, _ = term_losses(cfg, st, mixer, mb, cfg.terms(QMIX_TERMS))
    assert all(bool(torch.isfinite(v)) and float(v.detach()) < 1e4 for v in parts.values()), parts
    assert int(ro.actions[..., 0].max()) <= 2  # a speaker student never samples an action it lacks


def test_distill_resume_is_bit_exact(spread_teacher: Path, tmp_path: Path) -> None:
    teacher = load_teacher(spread_teacher)
    cfg = _cfg(total_steps=32 * 25 * 3, eval_episodes=10)
    distill(cfg, teacher, tmp_path / "once", teacher_path=spread_teacher, progress=False)
    distill(_cfg(total_steps=32 * 25 * 2, eval_episodes=10), teacher, tmp_path / "twice", teacher_path=spread_teacher,
            progress=False)
    distill(cfg, teacher, tmp_path / "twice", teacher_path=spread_teacher, resume=True, progress=False)
    a, _ = load_students(tmp_path / "once")
    b, _ = load_students(tmp_path / "twice")
    for sa, sb in zip(a, b, strict=True):
        assert all(torch.equal(v, sb.state_dict()[k]) for k, v in sa.state_dict().items())

    def rows(p: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("wall_time", "sps")} for r in csv.DictReader(p.open())]

    assert rows(tmp_path / "once" / "metrics.csv") == rows(tmp_path / "twice" / "metrics.csv")
    ra = json.loads((tmp_path / "once" / "distill_report.json").read_text())
    rb = json.loads((tmp_path / "twice" / "distill_report.json").read_text())
    assert ra["students_eval"] == rb["students_eval"]


def test_cli_flags_pick_the_recipe_config() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--teacher", "t", "--out", "o", "--no-mixer", "--no-util"])
    cfg = resolve_config(args, "distill_qmix.yaml")
    assert cfg.terms(QMIX_TERMS) == {"kl": cfg.w_kl, "ce": cfg.w_ce}
    assert not cfg.use_pg and not cfg.use_relation  # the QMIX defaults switch the MAPPO-only terms off


def test_train_distill_export_end_to_end(spread_teacher: Path, tmp_path: Path) -> None:
    sha = sha256_file(spread_teacher)
    run = tmp_path / "students"
    assert cli_main(["distill", "--teacher", str(spread_teacher.parent), "--out", str(run), "--no-progress",
                     "--set", "total_steps=4800", "--set", "num_envs=32", "--set", "eval_episodes=20"]) == 0
    report = json.loads((run / "distill_report.json").read_text())
    assert report["recipe"] == "value_decomposition" and report["teacher"]["algo"] == "qmix"
    assert set(report["terms"]) == set(QMIX_TERMS) and report["teacher"]["sha256"] == sha == sha256_file(spread_teacher)
    assert report["min_flops_reduction"] > 2  # MCU students (1 248 FLOPs) vs the 2x32 teacher agent network (3 712)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    for key in ("loss/kl", "loss/ce", "loss/util", "loss/mixer", "teacher_agreement"):
        assert key in rows[0], key
    _, payload = load_students(run)
    assert payload["recipe"] == "value_decomposition"
    assert not any("hyper" in k for a in payload["agents"] for k in a["state_dict"])  # the mixer is not shipped

    bundle = tmp_path / "bundle"
    assert cli_main(["export", str(run), "--out", str(bundle), "--teacher", str(spread_teacher), "--eval-episodes", "5",
                     "--parity-random", "500", "--parity-recorded", "100", "--latency-calls", "50",
                     "--legacy-exporter"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [a["model"]["kind"] for a in manifest["agents"]] == ["student"] * 3
    assert sha256_file(bundle / "teacher_actor.onnx") == manifest["teacher"]["sha256"]
    team = manifest["team"]
    assert team["retention"] == pytest.approx(
        (team["student_return"]["mean"] - team["random_return"]["mean"])
        / (team["teacher_return"]["mean"] - team["random_return"]["mean"]), rel=1e-12)
