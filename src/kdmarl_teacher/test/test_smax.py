"""The SMAX adapter (envs/smax.py) against raw JaxMARL stepping, and the SMAX scenario specs.

Parity: the adapter's B battles and B raw ``HeuristicEnemySMAX`` envs stepped one by one with JaxMARL's own
``reset``/``step`` and the same keys (chain b starts at ``fold_in(PRNGKey(seed), b)``, every call takes the
second half of ``split(key)``) and the same actions give identical observations, world states, rewards, masks
and dones, through episode ends and auto-resets. One compilation per jitted function, whatever is reset.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

jax = pytest.importorskip("jax")
pytest.importorskip("jaxmarl")

from kdmarl_student.scenarios import SMAX_MAPS, SMAX_UNIT_TYPES, scenario_spec  # noqa: E402
from kdmarl_teacher.envs import make_env  # noqa: E402
from kdmarl_teacher.envs.smax import _import_jax, _to_torch, make_smax_env  # noqa: E402

B, SEED, STEPS = 3, 7, 130


def _raw_stack(d: dict, agents: list[str]) -> np.ndarray:
    return np.stack([np.asarray(d[a]) for a in agents])


@pytest.fixture(scope="module")
def run3m():
    """The adapter and B raw envs stepped side by side on 3m; every step's outputs of both, recorded."""
    env = make_env("smax:3m", num_envs=B, seed=SEED)
    raw = make_smax_env(env.spec)
    agents = list(raw.agents)
    step_raw = jax.jit(raw.step)  # JaxMARL's MultiAgentEnv.step (auto-reset), one env at a time
    keys = [jax.random.fold_in(jax.random.PRNGKey(SEED), b) for b in range(B)]
    states, raw_obs, raw_ws = [], [], []
    for b in range(B):
        keys[b], sub = jax.random.split(keys[b])
        o, s = raw.reset(sub)
        states.append(s)
        raw_obs.append(_raw_stack(o, agents))
        raw_ws.append(np.asarray(o["world_state"]))
    obs, state = env.reset(seed=SEED)
    rec = {"first": (obs.numpy().copy(), state.numpy().copy(), np.stack(raw_obs), np.stack(raw_ws)),
           "steps": [], "env": env}
    rng = np.random.default_rng(0)
    returns = np.zeros((B, env.n_agents))
    for _t in range(STEPS):
        mask = env.available_actions().numpy().copy()
        raw_mask = np.stack([_raw_stack(raw.get_avail_actions(s), agents) for s in states]).astype(bool)
        actions = np.stack([[rng.choice(np.flatnonzero(mask[b, i])) for i in range(env.n_agents)]
                            for b in range(B)])
        obs, state, rew, done, info = env.step(torch.as_tensor(actions))
        r_obs, r_ws, r_rew, r_done = [], [], [], []
        for b in range(B):
            keys[b], sub = jax.random.split(keys[b])
            act = {a: jax.numpy.int32(actions[b, i]) for i, a in enumerate(agents)}
            o, states[b], r, d, _ = step_raw(sub, states[b], act)
            r_obs.append(_raw_stack(o, agents))
            r_ws.append(np.asarray(o["world_state"]))
            r_rew.append(_raw_stack(r, agents))
            r_done.append(bool(d["__all__"]))
        returns += np.stack(r_rew)
        raw_returns = returns.copy()
        returns[np.asarray(r_done)] = 0.0
        rec["steps"].append({
            "mask": mask, "raw_mask": raw_mask,
            "obs": obs.numpy().copy(), "raw_obs": np.stack(r_obs),
            "state": state.numpy().copy(), "raw_state": np.stack(r_ws),
            "rew": rew.numpy().copy(), "raw_rew": np.stack(r_rew),
            "done": done.numpy().copy(), "raw_done": np.asarray(r_done),
            "episode_returns": info["episode_returns"].numpy().copy(), "raw_returns": raw_returns,
            "metrics": {k: v.numpy().copy() for k, v in info["metrics"].items()},
            "final_obs": info["final_obs"].numpy().copy(),
        })
    return rec


def test_reset_equals_raw(run3m):
    obs, state, raw_obs, raw_ws = run3m["first"]
    assert obs.shape == (B, 3, 75) and state.shape == (B, 72)
    np.testing.assert_array_equal(obs, raw_obs)
    np.testing.assert_array_equal(state, raw_ws)


def test_steps_equal_raw(run3m):
    n_done = 0
    for t, s in enumerate(run3m["steps"]):
        for key in ("mask", "obs", "state", "rew", "done"):
            np.testing.assert_array_equal(s[key], s[f"raw_{key}"], err_msg=f"{key} differs at step {t}")
        np.testing.assert_allclose(s["episode_returns"][s["done"]], s["raw_returns"][s["done"]], rtol=1e-6)
        n_done += int(s["done"].sum())
    assert n_done >= B  # every battle ended at least once (time limit 100 < STEPS): auto-reset is covered


def test_masks_and_metrics(run3m):
    for s in run3m["steps"]:
        mask = s["mask"]
        assert mask.dtype == np.bool_ and mask.shape == (B, 3, 5 + 3)
        assert mask[..., 4].all()  # stop is always available
        d = s["done"]
        m = s["metrics"]
        won = m["won"][d]
        # SMAX pays the won-battle bonus (+1) exactly when our team won; the damage term alone is at most 1
        np.testing.assert_array_equal(won, (s["rew"][d, 0] > 1.0).astype(np.float32))
        assert np.all(m["allies_alive"][d][won > 0] >= 1)
        assert np.all((m["enemy_hp_left"] >= 0) & (m["enemy_hp_left"] <= 1))
        np.testing.assert_array_equal(m["enemy_hp_left"][d][won > 0], 0.0)
        # final_obs: the observation before the auto-reset, equal to obs where the battle goes on
        np.testing.assert_array_equal(s["final_obs"][~d], s["obs"][~d])


def test_no_recompilation(run3m):
    env = run3m["env"]
    assert env.compile_counts() == {"reset": 1, "step": 1}
    a = torch.full((B, env.n_agents), 4)
    for reset in (lambda: env.reset(seed=3), env.reset, lambda: env.reset_from_seeds([5, 6, 7])):
        reset()
        env.step(a)
        env.step(a.int())
    assert env.compile_counts() == {"reset": 1, "step": 1}


def test_reset_from_seeds_equals_raw(run3m):
    env = run3m["env"]
    raw = env.raw
    obs, state = env.reset_from_seeds([11, 12, 13])
    for b, s in enumerate([11, 12, 13]):
        _, sub = jax.random.split(jax.random.PRNGKey(s))
        o, _ = raw.reset(sub)
        np.testing.assert_array_equal(obs[b].numpy(), _raw_stack(o, list(raw.agents)))
        np.testing.assert_array_equal(state[b].numpy(), np.asarray(o["world_state"]))
    with pytest.raises(ValueError, match="one per environment"):
        env.reset_from_seeds([1, 2])


def test_bad_actions(run3m):
    env = run3m["env"]
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(B, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        env.step(torch.zeros(B, 3))
    with pytest.raises(ValueError, match="0 <= action < 8"):
        env.step(torch.full((B, 3), 8))


def test_dlpack_zero_copy():
    _jax, jnp, _ = _import_jax()
    x = jnp.arange(12, dtype=jnp.float32).reshape(3, 4)
    t = _to_torch(x, torch.device("cpu"), torch.float32)
    assert t.data_ptr() == x.unsafe_buffer_pointer()
    assert _to_torch(x, torch.device("cpu"), torch.float64).dtype == torch.float64


def test_spec_table_equals_jaxmarl():
    _jax, _jnp, smax = _import_jax()
    table = smax.smax_env.MAP_NAME_TO_SCENARIO
    fixed = {name: sc for name, sc in table.items()
             if not (sc.smacv2_position_generation or sc.smacv2_unit_type_generation)}
    ours = {name: (tuple(int(u) for u in sc.unit_types[:sc.num_allies]),
                   tuple(int(u) for u in sc.unit_types[sc.num_allies:])) for name, sc in fixed.items()}
    assert ours == SMAX_MAPS
    for name in SMAX_MAPS:
        spec = scenario_spec(f"smax:{name}")
        raw = make_smax_env(spec)
        assert tuple(raw.unit_type_names) == SMAX_UNIT_TYPES
        assert spec.agent_names == tuple(raw.agents)
        assert spec.obs_dims == tuple(raw.observation_space(a).shape[0] for a in raw.agents)
        assert spec.n_actions == tuple(raw.action_space(a).n for a in raw.agents)
        assert spec.state_dim == raw.state_size
        assert spec.max_cycles == raw.max_steps
        assert [a.role for a in spec.agents] == [SMAX_UNIT_TYPES[u] for u in SMAX_MAPS[name][0]]
        assert max(e for _, e in spec.agents[0].layout.values()) == spec.obs_dims[0]


def test_issue_dimensions_and_heterogeneous_roles():
    for name, (obs, state, n_act) in {"3m": (75, 72, 8), "2s3z": (127, 120, 10), "3s5z": (205, 192, 13)}.items():
        spec = scenario_spec(f"smax:{name}")
        assert (spec.obs_dim_max, spec.state_dim, spec.n_actions[0]) == (obs, state, n_act)
    assert [a.role for a in scenario_spec("smax:2s3z").agents] == ["stalker"] * 2 + ["zealot"] * 3


def test_bad_names_and_params():
    with pytest.raises(ValueError, match=r"unknown SMAX map 'nope'.*smax:3m"):
        make_env("smax:nope", num_envs=2)
    with pytest.raises(ValueError, match="unknown SMAX map"):
        scenario_spec("smax:smacv2_5_units")
    with pytest.raises(ValueError, match="unknown parameter"):
        scenario_spec("smax:3m", N=3)
    with pytest.raises(ValueError, match="max_steps"):
        scenario_spec("smax:3m", max_steps=0)
    with pytest.raises(ValueError, match="num_envs"):
        make_env("smax:3m", num_envs=0)


# ---- masks in the MAPPO teacher and its evaluation ------------------------------------------------------------
def test_masked_sampling_never_picks_unavailable():
    from kdmarl_teacher.core.networks import apply_action_mask, sample_actions

    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(4096, 8, generator=gen) < 0.3
    mask[:, 4] = True  # SMAX: stop is always available
    logits = torch.randn(4096, 8, generator=gen) * 10
    logits[~mask] += 50.0  # unavailable actions would win by far if unmasked
    masked = apply_action_mask(logits, mask)
    for _ in range(5):
        a = sample_actions(masked, gen)
        assert mask.gather(-1, a[:, None]).all()
    assert mask.gather(-1, masked.argmax(-1, keepdim=True)).all()
    assert apply_action_mask(logits, None) is logits  # MPE: no mask, unchanged


def test_tiny_training_run_and_evaluate(tmp_path, monkeypatch):
    from kdmarl_teacher.algos import mappo
    from kdmarl_teacher.algos.config import default_config_path, load_config
    from kdmarl_teacher.algos.teacher import load_teacher
    from kdmarl_teacher.evaluation.evaluate import evaluate

    real_make_env = mappo.make_env
    checked = []

    def checking_make_env(*args, **kwargs):
        env = real_make_env(*args, **kwargs)
        step = env.step

        def step_checked(actions):  # every action the teacher samples must be available
            mask = env.available_actions()
            assert mask.gather(-1, actions.unsqueeze(-1)).all()
            checked.append(actions.numel())
            return step(actions)

        env.step = step_checked
        return env

    monkeypatch.setattr(mappo, "make_env", checking_make_env)
    path = default_config_path("smax:3m")
    assert path is not None and path.name == "mappo_smax.yaml"
    cfg = load_config(path, ["scenario=smax:3m", "num_envs=8", "num_steps=16", "total_steps=256",
                             "num_minibatches=2", "update_epochs=1", "checkpoint_every=1"])
    teacher_path = mappo.train(cfg, tmp_path / "run", progress=False)
    assert teacher_path.is_file() and (tmp_path / "run" / "checkpoint.pt").is_file()
    assert sum(checked) == 2 * 16 * 8 * 3
    teacher = load_teacher(tmp_path / "run", "cpu")
    assert teacher.spec.name == "smax:3m"
    report = evaluate(teacher, episodes=4, seed_start=100)
    assert report["seeding"].startswith("SMAX")
    for policy in ("deterministic", "stochastic", "random"):
        res = report["results"][policy]
        assert 0.0 <= res["win_rate"]["mean"] <= 1.0 and res["win_rate"]["n"] == 4
        assert set(res["metrics"]) == {"won", "allies_alive", "enemy_hp_left"}


def test_each_map_takes_its_own_config_where_it_has_one():
    """`kdmarl train --scenario smax:<map>` reads config/mappo_smax_<map>.yaml where the map has one (5m_vs_6m: an
    entropy bonus, without which its policy collapsed), else the shared mappo_smax.yaml; the per-map file is the
    shared one but for the key its header names, so the two cannot drift apart silently."""
    from kdmarl_teacher.algos.config import default_config_path, load_config

    shared = default_config_path("smax:3m")
    own = default_config_path("smax:5m_vs_6m")
    assert shared is not None and shared.name == "mappo_smax.yaml"
    assert default_config_path("smax:2s3z") == shared
    assert own is not None and own.name == "mappo_smax_5m_vs_6m.yaml"
    base = load_config(shared, ["scenario=smax:5m_vs_6m"]).to_dict()
    mine = load_config(own).to_dict()
    assert mine["scenario"] == "smax:5m_vs_6m" and mine["ent_coef"] == 0.01 and base["ent_coef"] == 0.0
    assert {k for k in base if base[k] != mine[k]} == {"ent_coef"}
    assert default_config_path("smax:5m_vs_6m", "qmix") == default_config_path("smax:3m", "qmix")
