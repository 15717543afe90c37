"""QMIX teacher: the mixer's monotonicity, the replay buffer's episode boundaries, TD(lambda) targets, action
masks, the target-network update, every output of a short run, load/evaluate/report, and bit-exact resume."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest
import torch
import yaml
from kdmarl_teacher.algos.config import load_qmix_config
from kdmarl_teacher.algos.mixer import QMixer
from kdmarl_teacher.algos.qmix import ReplayBuffer, epsilon_at, epsilon_greedy, td_lambda_targets, train, update_target
from kdmarl_teacher.algos.teacher import load_teacher
from kdmarl_teacher.cli import main as cli_main
from kdmarl_teacher.core.networks import MASKED_LOGIT, Actor
from kdmarl_teacher.core.run_files import load_checkpoint

TINY = ["num_envs=8", "num_steps=25", "total_steps=800", "agent_hidden=[16,16]", "mixer_embed=8",
        "hypernet_hidden=16", "batch_size=4", "updates_per_iteration=2", "learning_starts=300",
        "target_update_interval=3", "buffer_size=16", "checkpoint_every=2", "eval_every=2", "eval_envs=4",
        "eps_anneal_steps=400"]


def tiny(*extra: str):
    return load_qmix_config(None, [*TINY, *extra])


# ---- the mixer ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hypernet_hidden", [0, 16])
def test_mixer_is_monotonic_in_every_utility(hypernet_hidden: int) -> None:
    torch.manual_seed(0)
    mixer = QMixer(state_dim=7, n_agents=3, embed=8, hypernet_hidden=hypernet_hidden)
    qs = (torch.randn(512, 3) * 5).requires_grad_(True)
    state = torch.randn(512, 7) * 3
    (grad,) = torch.autograd.grad(mixer(qs, state).sum(), qs)  # row m depends only on qs[m]: [M, N] = dQ_tot/dQ_i
    assert bool((grad >= 0).all()) and bool((grad > 0).any())


def test_greedy_joint_action_is_the_per_agent_argmax() -> None:
    """Monotonicity is what lets each agent act alone: over every joint action, Q_tot peaks at the tuple of
    per-agent argmaxes (IGM)."""
    torch.manual_seed(1)
    mixer = QMixer(state_dim=5, n_agents=3, embed=8, hypernet_hidden=16)
    for _ in range(5):
        q = torch.randn(3, 4)  # [N, A] utilities
        state = torch.randn(1, 5)
        joint = torch.tensor(list(itertools.product(range(4), repeat=3)))  # [64, 3]
        q_tot = mixer(q[torch.arange(3), joint], state.expand(len(joint), 5))
        assert joint[q_tot.argmax()].tolist() == q.argmax(-1).tolist()


# ---- replay buffer, targets, exploration, target networks -----------------------------------------------------------
def _seq(B: int, T: int, N: int, D: int, S: int, *, offset: float) -> dict[str, torch.Tensor]:
    return {"obs": torch.full((B, T + 1, N, D), offset), "state": torch.full((B, T + 1, S), offset),
            "start": torch.zeros(B, T + 1, dtype=torch.bool), "action": torch.zeros(B, T, N, dtype=torch.long),
            "reward": torch.arange(B * T, dtype=torch.float32).view(B, T) + offset,
            "done": torch.zeros(B, T, dtype=torch.bool)}


def test_replay_buffer_is_fifo_and_keeps_whole_sequences() -> None:
    buf = ReplayBuffer(5, T=4, N=2, obs_dim=3, state_dim=2, device=torch.device("cpu"))
    for k in range(3):  # 3 x 2 sequences into 5 slots: the first sequence is overwritten by the last
        buf.add(_seq(2, 4, 2, 3, 2, offset=100.0 * k))
    assert buf.size == 5 and buf.pos == 1
    firsts = buf.data["obs"][:, 0, 0, 0].tolist()
    assert firsts == [200.0, 0.0, 100.0, 100.0, 200.0]
    gen = torch.Generator().manual_seed(0)
    batch = buf.sample(64, gen)
    assert batch["obs"].shape == (64, 5, 2, 3) and batch["action"].shape == (64, 4, 2)
    # every sampled row is one whole stored sequence: its reward row starts at its obs offset
    assert torch.equal(batch["reward"][:, 0] % 100, batch["reward"][:, 0] - batch["obs"][:, 0, 0, 0])
    assert set(batch["obs"][:, 0, 0, 0].tolist()) <= {0.0, 100.0, 200.0}
    # resume: the buffer's state dict reproduces it exactly, sampling included
    clone = ReplayBuffer(5, T=4, N=2, obs_dim=3, state_dim=2, device=torch.device("cpu"))
    clone.load_state_dict(buf.state_dict())
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert all(torch.equal(a, b) for a, b in zip(buf.sample(8, g1).values(), clone.sample(8, g2).values(),
                                                   strict=True))


def test_td_lambda_targets_stop_at_episode_boundaries() -> None:
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    q_next = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    done = torch.tensor([[False, True, False, False]])  # the first episode ends with step 1
    g, lam = 0.9, 0.5
    out = td_lambda_targets(r, done, q_next, g, lam)
    G3 = 4 + g * 40  # last step of the sequence: full bootstrap
    G2 = 3 + g * ((1 - lam) * 30 + lam * G3)
    G1 = 2.0  # done: no bootstrap into the next episode (neither its value nor its return)
    G0 = 1 + g * ((1 - lam) * 10 + lam * G1)
    assert torch.allclose(out, torch.tensor([[G0, G1, G2, G3]]))
    one_step = td_lambda_targets(r, done, q_next, g, 0.0)
    assert torch.allclose(one_step, r + g * (~done).float() * q_next)


def test_epsilon_schedule_and_greedy_respect_action_masks() -> None:
    cfg = tiny("eps_start=1.0", "eps_finish=0.1", "eps_anneal_steps=100")
    assert epsilon_at(cfg, 0) == 1.0 and epsilon_at(cfg, 50) == pytest.approx(0.55)
    assert epsilon_at(cfg, 100) == epsilon_at(cfg, 10**9) == pytest.approx(0.1)
    # speaker (3 actions) and listener (5): the shared network masks the speaker's actions 3, 4
    actor = Actor(obs_dim_max=4, n_agents=2, n_actions=[3, 5], hidden=[8])
    x = torch.cat([torch.randn(400, 4), torch.eye(2).repeat(200, 1)], dim=-1)  # speaker, listener, speaker, ...
    q = actor(x)
    assert bool((q[0::2, 3:] == MASKED_LOGIT).all())
    n_actions = torch.tensor([3, 5]).repeat(200)
    gen = torch.Generator().manual_seed(0)
    explore = epsilon_greedy(q, 1.0, n_actions, gen)
    assert int(explore[0::2].max()) == 2 and int(explore[1::2].max()) == 4  # every valid action, no invalid one
    assert torch.equal(epsilon_greedy(q, 0.0, n_actions, gen), q.argmax(-1))
    assert int(q[0::2].argmax(-1).max()) <= 2


def test_target_update_hard_and_polyak() -> None:
    torch.manual_seed(0)
    online, target = QMixer(4, 2, 4, 8), QMixer(4, 2, 4, 8)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    update_target(target, online, 0.25)
    for k, v in target.state_dict().items():
        assert torch.allclose(v, 0.75 * before[k] + 0.25 * online.state_dict()[k])
    update_target(target, online, 1.0)
    assert all(torch.equal(v, online.state_dict()[k]) for k, v in target.state_dict().items())


def test_training_copies_the_target_every_interval(tmp_path: Path) -> None:
    """With target_update_interval=3 and 2 gradient steps per iteration, after 3 learning iterations (6 steps)
    the target equals the online network as it was after step 6 = the final one; after 2 (4 steps) it holds the
    copy made at step 3, which differs from the final weights."""
    train(tiny("total_steps=1000", "learning_starts=0"), tmp_path / "a", progress=False, stop_after_iterations=3)
    ts = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    assert ts["train_state"]["grad_steps"] == 6
    assert all(torch.equal(v, ts["actor"]["state_dict"][k]) for k, v in ts["train_state"]["target_actor"].items())
    train(tiny("total_steps=1000", "learning_starts=0"), tmp_path / "b", progress=False, stop_after_iterations=2)
    ts = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert ts["train_state"]["grad_steps"] == 4
    assert not all(torch.equal(v, ts["actor"]["state_dict"][k])
                   for k, v in ts["train_state"]["target_actor"].items())


# ---- a run ----------------------------------------------------------------------------------------------------------
def test_short_run_writes_every_output_and_loads_as_a_teacher(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train(tiny(), out, progress=False) == out / "teacher.pt"
    for name in ("config.yaml", "teacher.pt", "checkpoint.pt", "metrics.csv"):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert yaml.safe_load((out / "config.yaml").read_text())["algo"] == "qmix"
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4] and int(rows[-1]["global_step"]) == 800
    for key in ("train_return", "greedy_return", "epsilon", "td_loss", "q_tot", "grad_norm",
                "task/landmarks_covered"):
        assert key in rows[0], key
    assert rows[0]["td_loss"] == "nan" and float(rows[-1]["td_loss"]) >= 0  # learning starts after 300 steps
    assert float(rows[1]["greedy_return"]) < 0 and rows[0]["greedy_return"] == "nan"  # eval_every=2

    teacher = load_teacher(out)
    assert teacher.algo == "qmix" and teacher.critic is None and teacher.mixer is not None
    assert teacher.act(torch.randn(5, 3, teacher.spec.obs_dim_max)).shape == (5, 3)
    assert not any(p.requires_grad for p in (*teacher.actor.parameters(), *teacher.mixer.parameters()))
    with pytest.raises(ValueError, match="no critic"):
        teacher.value(torch.zeros(2, teacher.spec.state_dim), 0)
    assert "train_state" not in torch.load(out / "teacher.pt", weights_only=True)

    # kdmarl evaluate and kdmarl report work on it
    assert cli_main(["evaluate", str(out), "--episodes", "8"]) == 0
    assert (out / "eval.json").is_file()
    assert cli_main(["report", str(out)]) == 0
    assert (out / "learning_curve.png").stat().st_size > 1000

    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny(), out, progress=False)


def test_speaker_listener_never_takes_an_invalid_action(tmp_path: Path) -> None:
    train(tiny("scenario=simple_speaker_listener"), tmp_path, progress=False)
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    actions = ck["train_state"]["buffer"]["data"]["action"]  # [n, T, 2]: speaker, listener
    assert int(actions[..., 0].max()) == 2 and int(actions[..., 1].max()) == 4


def test_epsilon_greedy_with_an_env_mask_picks_only_available_actions() -> None:
    """SMAX-style masks: random and greedy choices both stay among the available actions."""
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(500, 8, generator=gen) < 0.4
    mask[:, 4] = True  # SMAX: stop is always available
    q = torch.randn(500, 8, generator=gen)
    q[~mask] += 50.0  # unavailable actions would win by far if unmasked
    from kdmarl_teacher.core.networks import apply_action_mask

    masked_q = apply_action_mask(q, mask)
    n_actions = torch.full((500,), 8)
    for eps in (0.0, 0.5, 1.0):
        a = epsilon_greedy(masked_q, eps, n_actions, gen, mask)
        assert bool(mask.gather(-1, a.unsqueeze(-1)).all())
    explore = epsilon_greedy(masked_q, 1.0, n_actions, gen, mask)
    assert len(set(explore.tolist())) == 8  # uniform over what is available: every action shows up somewhere


def test_qmix_on_smax_steps_only_available_actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """QMIX on a masked env (SMAX 3m): every action stepped in rollouts and greedy evaluations is available,
    the buffer stores the masks it acted under, and the run checkpoints and evaluates as a teacher."""
    from kdmarl_teacher.evaluation.evaluate import evaluate

    from kdmarl_teacher import envs

    real_make_env, stepped = envs.make_env, []

    def checking_make_env(*args, **kwargs):
        env = real_make_env(*args, **kwargs)
        step = env.step

        def step_checked(actions):
            assert bool(env.available_actions().gather(-1, actions.unsqueeze(-1)).all())
            stepped.append(actions.numel())
            return step(actions)

        env.step = step_checked
        return env

    monkeypatch.setattr(envs, "make_env", checking_make_env)
    cfg = load_qmix_config(None, [*TINY, "scenario=smax:3m", "num_steps=16", "total_steps=384",
                                  "learning_starts=128", "eps_start=0.5"])
    train(cfg, tmp_path, progress=False)
    assert sum(stepped) >= 3 * 8 * 16 * 3  # three iterations of 8 envs x 16 steps x 3 agents, plus evaluations
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    data = ck["train_state"]["buffer"]["data"]
    avail, actions = data["avail"], data["action"]  # [n, T+1, N, A], [n, T, N]
    assert bool(avail[..., 4].all())  # stop is always available
    assert bool(avail[:, :-1].gather(-1, actions.unsqueeze(-1)).all())  # every stored action was available
    assert not bool(avail.all())  # masks are not trivially all-true (attacks need an enemy in range)
    report = evaluate(load_teacher(tmp_path), episodes=4, seed_start=100)
    wins = report["results"]["deterministic"]["win_rate"]
    assert wins["n"] == 4 and wins["mean"] == report["results"]["deterministic"]["metrics"]["won"]["mean"]
    assert wins["mean"] * 4 == round(wins["mean"] * 4)  # a fraction of the 4 battles


def _rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return [{k: v for k, v in r.items() if k not in ("wall_time", "sps", "sps_iter")} for r in csv.DictReader(fh)]


@pytest.mark.parametrize("gru", [False, True])
def test_resume_is_bit_exact(tmp_path: Path, gru: bool) -> None:
    extra = ["use_gru=true", "gru_hidden=8", "target_tau=0.5"] if gru else []
    train(tiny(*extra), tmp_path / "once", progress=False)
    train(tiny(*extra), tmp_path / "twice", progress=False, stop_after_iterations=2)
    train(tiny(*extra), tmp_path / "twice", resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "once" / "checkpoint.pt"), load_checkpoint(tmp_path / "twice" / "checkpoint.pt")
    for part in ("actor", "mixer"):
        assert all(torch.equal(v, b[part]["state_dict"][k]) for k, v in a[part]["state_dict"].items()), part
    for part in ("target_actor", "target_mixer"):
        assert all(torch.equal(v, b["train_state"][part][k]) for k, v in a["train_state"][part].items()), part
    assert all(torch.equal(v, b["train_state"]["buffer"]["data"][k])
               for k, v in a["train_state"]["buffer"]["data"].items())
    assert _rows(tmp_path / "once" / "metrics.csv") == _rows(tmp_path / "twice" / "metrics.csv")


def test_cli_trains_qmix_and_resume_keeps_the_algorithm(tmp_path: Path) -> None:
    out = tmp_path / "q"
    sets = [a for s in [*TINY, "total_steps=400"] for a in ("--set", s)]
    assert cli_main(["train", "--algo", "qmix", "--scenario", "simple_spread", "--out", str(out), "--no-progress",
                     *sets]) == 0
    assert load_teacher(out).algo == "qmix"
    # --resume without --algo continues as QMIX (from config.yaml), extended via a time limit change only
    assert cli_main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    # a QMIX key on a MAPPO run, or a bad range, is one line naming the key
    assert cli_main(["train", "--algo", "qmix", "--out", str(tmp_path / "bad"), "--set", "td_lambda=2",
                     "--no-progress"]) == 2
    assert cli_main(["train", "--out", str(tmp_path / "bad2"), "--set", "td_lambda=0.5", "--no-progress"]) == 2
