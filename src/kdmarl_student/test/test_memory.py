"""Students with memory in the runtime (issue 11): recurrent graphs and history features in StudentPolicy and
evaluate_bundle, against numpy references, with real ONNX Runtime sessions.

The rules pinned here: a decision advances the state exactly once; a refused observation or output does not
advance it; ``reset()`` is an episode start (a reset policy acts as a fresh one); a batch cannot be run without
explicit states; evaluate_bundle resets at every episode start, so every episode depends on its seed alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from kdmarl_student.bundle_eval import evaluate_bundle
from kdmarl_student.errors import ObservationError, PolicyOutputError
from kdmarl_student.manifest import (
    RESET_EVENTS,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    build_memory_entry,
    load_manifest,
)
from kdmarl_student.policy import StudentPolicy
from kdmarl_student.scenarios import make_mpe2_env, scenario_spec
from kdmarl_student.sensing import apply_sensing
from kdmarl_student.testing import OPSET, numpy_gru_step, random_gru, write_onnx_gru
from onnx import TensorProto, helper, numpy_helper
from test_support_bundles import install_model, make_bundle, numpy_forward

LAYOUT = scenario_spec("simple_spread").agents[0].layout
HISTORY = {"slices": ["self_vel", "landmarks"], "history": {"mode": "delta", "slices": ["self_pos"]}}
PREVIOUS = {"slices": ["landmarks"], "history": {"mode": "previous", "slices": ["self_vel", "self_pos"]}}
H = 8


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """agent_0 stateless, agent_1 a GRU (trunk of 16, H = 8) on a partial view, agent_2 delta features."""
    path, weights, _ = make_bundle(tmp_path_factory.mktemp("memory") / "bundle",
                                   sensing={"agent_1": {"slices": ["self_vel", "landmarks"]}, "agent_2": HISTORY},
                                   recurrent={"agent_1": {"state_dim": H, "trunk": [16]}})
    return path, weights


def _episode(n: int = 60, seed: int = 0) -> np.ndarray:
    """A smooth random trajectory of full observations, so deltas are small as in an episode."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(0, 0.1, (n, 18)), axis=0).astype(np.float32)


def _gru_reference(weights, sensing: dict, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy logits and states of one episode from a zero state: ([T, A], [T, H])."""
    h = np.zeros((1, weights.hidden_size), np.float32)
    logits, states = [], []
    for obs in observations:
        out, h = numpy_gru_step(weights, apply_sensing(obs[None], LAYOUT, sensing), h)
        logits.append(out[0])
        states.append(h[0])
    return np.array(logits), np.array(states)


def _history_reference(weights, sensing: dict, observations: np.ndarray) -> np.ndarray:
    previous = None
    out = []
    for obs in observations:
        out.append(numpy_forward(weights, apply_sensing(obs[None], LAYOUT, sensing,
                                                        None if previous is None else previous[None]))[0])
        previous = obs
    return np.array(out)


# ---- the builder's recurrent graph against its numpy reference ------------------------------------------
def test_onnx_gru_matches_numpy_step_by_step(tmp_path: Path) -> None:
    import onnxruntime as ort

    weights = random_gru(11, 6, 5, seed=4, trunk=(9,))
    path = write_onnx_gru(tmp_path / "gru.onnx", weights)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    h_onnx = h_ref = np.zeros((3, 6), np.float32)
    for _ in range(200):  # batch 3: the batch axis is dynamic
        x = rng.normal(size=(3, 11)).astype(np.float32)
        logits, h_onnx = session.run(["logits", "h_out"], {"observation": x, "h_in": h_onnx})
        ref_logits, h_ref = numpy_gru_step(weights, x, h_ref)
        np.testing.assert_allclose(h_onnx, h_ref, atol=1e-5)
        np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
    assert np.abs(h_ref).max() > 0.1  # the state really moves


def test_manifest_declares_the_memory(bundle: tuple[Path, dict]) -> None:
    manifest = load_manifest(bundle[0])
    assert manifest.data["schema_version"] == SCHEMA_VERSION == "1.1" and "1.0" in SUPPORTED_SCHEMA_VERSIONS
    assert manifest.agent("agent_0").memory is None and manifest.agent("agent_0").memory_kind == "none"
    assert manifest.agent("agent_1").memory == {
        "kind": "recurrent", "state_dim": H, "state_bytes": 4 * H, "state_input": "h_in", "state_output": "h_out",
        "initial_state": "zeros", "reset_on": list(RESET_EVENTS)}
    assert manifest.agent("agent_2").memory == {
        "kind": "history", "state_dim": 2, "state_bytes": 8, "initial_state": "current_observation",
        "reset_on": list(RESET_EVENTS)}
    assert manifest.agent("agent_2").input_dim == 2 + 6 + 2


def test_build_memory_entry_defaults_and_refusals() -> None:
    assert build_memory_entry(LAYOUT, {"slices": "all"}) is None
    assert build_memory_entry(LAYOUT, PREVIOUS)["state_dim"] == 4
    entry = build_memory_entry(LAYOUT, {"slices": "all"}, {"kind": "recurrent", "state_dim": 4,
                                                           "reset_on": ["episode_start"]})
    assert entry["state_bytes"] == 16 and entry["reset_on"] == ["episode_start"]
    for memory, words in [({"kind": "lstm", "state_dim": 4}, "kind"), ({"kind": "recurrent"}, "state_dim"),
                          ({"kind": "history"}, "state_dim"), ({"kind": "recurrent", "state_dim": 4, "x": 1},
                                                               "unknown")]:
        with pytest.raises(ValueError, match=words):
            build_memory_entry(LAYOUT, {"slices": "all"}, memory)
    with pytest.raises(ValueError, match="state_dim"):
        build_memory_entry(LAYOUT, PREVIOUS, {"kind": "history", "state_dim": 3})


# ---- StudentPolicy ----------------------------------------------------------------------------------------
def test_recurrent_policy_follows_the_numpy_gru(bundle: tuple[Path, dict]) -> None:
    path, weights = bundle
    policy = StudentPolicy(path, "agent_1")
    assert (policy.stateful, policy.memory_kind, policy.state_dim) == (True, "recurrent", H)
    episode = _episode()
    ref_logits, ref_states = _gru_reference(weights["agent_1"], {"slices": ["self_vel", "landmarks"]}, episode)
    np.testing.assert_array_equal(policy.state, np.zeros(H, np.float32))
    actions = []
    for t, obs in enumerate(episode):
        actions.append(policy.act(obs))
        np.testing.assert_allclose(policy.state, ref_states[t], atol=1e-5)
    assert actions == ref_logits.argmax(axis=1).tolist()
    assert len(set(actions)) > 1
    policy.reset()
    stepped = np.array([policy.step_logits(obs) for obs in episode])
    np.testing.assert_allclose(stepped, ref_logits, atol=1e-5)
    assert policy.latency.total == len(episode)  # step_logits is not metered


def test_history_policy_follows_the_numpy_features(bundle: tuple[Path, dict]) -> None:
    path, weights = bundle
    policy = StudentPolicy(path, "agent_2")
    assert (policy.stateful, policy.memory_kind, policy.state_dim, policy.state) == (True, "history", 2, None)
    episode = _episode(seed=3)
    expected = _history_reference(weights["agent_2"], HISTORY, episode)
    actions = [policy.act(obs) for obs in episode]
    assert actions == expected.argmax(axis=1).tolist()
    np.testing.assert_array_equal(policy.state, episode[-1][2:4])  # the previous self_pos
    policy.reset()
    assert policy.state is None
    np.testing.assert_allclose(np.array([policy.step_logits(obs) for obs in episode]), expected, atol=1e-5)


@pytest.mark.parametrize("agent", ["agent_1", "agent_2"])
def test_a_reset_policy_acts_as_a_fresh_one(bundle: tuple[Path, dict], agent: str) -> None:
    path, _ = bundle
    first, second = _episode(seed=5), _episode(seed=6)
    fresh_policy = StudentPolicy(path, agent)
    fresh = [fresh_policy.act(obs) for obs in second]
    policy = StudentPolicy(path, agent)
    for obs in first:
        policy.act(obs)
    policy.reset()
    assert [policy.act(obs) for obs in second] == fresh
    # Not vacuous: carrying the state over from the first episode changes the logits of the second.
    carried = StudentPolicy(path, agent)
    for obs in first:
        carried.step_logits(obs)
    assert not np.array_equal(carried.step_logits(second[0]), StudentPolicy(path, agent).step_logits(second[0]))


@pytest.mark.parametrize("agent", ["agent_1", "agent_2"])
@pytest.mark.parametrize("bad", [np.zeros(17), np.full(18, np.nan), ["x"] * 18, np.zeros((2, 18))],
                         ids=["short", "nan", "text", "batch"])
def test_a_refused_observation_leaves_the_state_alone(bundle: tuple[Path, dict], agent: str, bad: object) -> None:
    path, _ = bundle
    episode = _episode(seed=7)
    reference = StudentPolicy(path, agent)
    expected = [reference.act(obs) for obs in episode]
    policy = StudentPolicy(path, agent)
    actions = []
    for t, obs in enumerate(episode):
        if t in (1, 10, 30):
            state = policy.state
            with pytest.raises(ObservationError):
                policy.act(bad)
            with pytest.raises(ObservationError):
                policy.step_logits(bad)
            after = policy.state
            assert (state is None and after is None) or np.array_equal(state, after)
        actions.append(policy.act(obs))
    assert actions == expected
    assert policy.rejected_observations == 6


def _write_fragile_gru(path: Path, bad_logits: bool) -> Path:
    """A recurrent graph over the full observation whose h_out (or logits) goes NaN when obs[0] < -1:
    h_out = tanh(h_in @ U + obs @ V) + log(obs[0] + 1); logits = h_out @ W (or obs @ W + log(obs[0] + 1))."""
    rng = np.random.default_rng(0)
    u = rng.normal(0, 0.3, (H, H)).astype(np.float32)
    v = rng.normal(0, 0.3, (18, H)).astype(np.float32)
    w = rng.normal(0, 1.0, (H, 5)).astype(np.float32)
    w_obs = rng.normal(0, 1.0, (18, 5)).astype(np.float32)
    pick = np.zeros((18, 1), np.float32)
    pick[0, 0] = 1.0
    nodes = [
        helper.make_node("MatMul", ["h_in", "u"], ["hu"]), helper.make_node("MatMul", ["observation", "v"], ["xv"]),
        helper.make_node("Add", ["hu", "xv"], ["pre"]), helper.make_node("Tanh", ["pre"], ["cell"]),
        helper.make_node("MatMul", ["observation", "pick"], ["x0"]), helper.make_node("Add", ["x0", "one"], ["x1"]),
        helper.make_node("Log", ["x1"], ["fragile"]),
    ]
    if bad_logits:
        nodes += [helper.make_node("Identity", ["cell"], ["h_out"]),
                  helper.make_node("MatMul", ["observation", "w_obs"], ["lo"]),
                  helper.make_node("Add", ["lo", "fragile"], ["logits"])]
    else:
        nodes += [helper.make_node("Add", ["cell", "fragile"], ["h_out"]),
                  helper.make_node("MatMul", ["observation", "w_obs"], ["logits"])]
    graph = helper.make_graph(
        nodes, "fragile_gru",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", 18]),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, ["batch", H])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5]),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["batch", H])],
        [numpy_helper.from_array(a, n) for a, n in ((u, "u"), (v, "v"), (w, "w"), (w_obs, "w_obs"), (pick, "pick"),
                                                    (np.ones(1, np.float32), "one"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kdmarl-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(("bad_logits", "reason"), [(False, "non_finite_state"), (True, "non_finite_logits")])
def test_a_non_finite_output_leaves_the_state_alone(tmp_path: Path, bad_logits: bool, reason: str) -> None:
    path, _, _ = make_bundle(tmp_path / "b", recurrent={"agent_0": H})
    install_model(path, 0, _write_fragile_gru(path / "agent_0.onnx", bad_logits))
    policy = StudentPolicy(path, "agent_0")
    episode = np.abs(_episode(seed=8))  # obs[0] >= 0: finite
    policy.act(episode[0])
    state = policy.state
    broken = episode[1].copy()
    broken[0] = -3.0
    with pytest.raises(PolicyOutputError) as info:
        policy.act(broken)
    assert info.value.reason == reason
    np.testing.assert_array_equal(policy.state, state)
    assert policy.non_finite_outputs == 1
    # The refused decision did not count: the rest of the episode is what a policy that never saw it does.
    reference = StudentPolicy(path, "agent_0")
    expected = [reference.act(obs) for obs in episode]
    assert [policy.act(obs) for obs in episode[1:]] == expected[1:]


def test_batches_need_explicit_states(bundle: tuple[Path, dict]) -> None:
    """logits()/act_batch() cannot know a batch's states; logits_with_state() steps B episodes at once and
    equals B policies stepped one by one."""
    path, _ = bundle
    episodes = np.stack([_episode(30, seed=s) for s in range(4)], axis=1)  # [T, B, 18]
    for agent in ("agent_1", "agent_2"):
        policy = StudentPolicy(path, agent)
        with pytest.raises(ValueError, match="step_logits"):
            policy.logits(episodes[0])
        with pytest.raises(ValueError, match="logits_with_state"):
            policy.act_batch(episodes[0])
        singles = [StudentPolicy(path, agent) for _ in range(4)]
        state = None
        for obs in episodes:
            logits, state = policy.logits_with_state(obs, state)
            one_by_one = np.stack([p.step_logits(o) for p, o in zip(singles, obs, strict=True)])
            np.testing.assert_allclose(logits, one_by_one, atol=1e-6)
        assert policy.state is None or not policy.state.any()  # its own state never moved
        with pytest.raises(ValueError, match="state must be"):
            policy.logits_with_state(episodes[0], np.zeros((3, 5)))
    stateless = StudentPolicy(path, "agent_0")
    assert (stateless.stateful, stateless.memory_kind, stateless.state) == (False, "none", None)
    np.testing.assert_array_equal(stateless.logits_with_state(episodes[0])[0], stateless.logits(episodes[0]))
    np.testing.assert_array_equal(stateless.step_logits(episodes[0][0]), stateless.logits(episodes[0][0]))


def test_state_is_a_read_only_copy(bundle: tuple[Path, dict]) -> None:
    policy = StudentPolicy(bundle[0], "agent_1")
    policy.act(_episode()[0])
    state = policy.state
    with pytest.raises(ValueError):
        state[0] = 1.0
    assert state is not policy.state


def test_the_teacher_actor_stays_stateless(bundle: tuple[Path, dict]) -> None:
    teacher = StudentPolicy(bundle[0], "agent_1", model="teacher")
    assert not teacher.stateful and teacher.logits(_episode()[:3]).shape == (3, 5)


def test_a_schema_1_0_bundle_still_loads_and_acts_the_same(tmp_path: Path) -> None:
    path, _, _ = make_bundle(tmp_path / "b")
    old = tmp_path / "old"
    shutil.copytree(path, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["schema_version"] = "1.0"
    (old / "manifest.json").write_text(json.dumps(manifest))
    obs = _episode()
    for agent in ("agent_0", "agent_1", "agent_2"):
        policy = StudentPolicy(old, agent)
        assert not policy.stateful
        np.testing.assert_array_equal(policy.logits(obs), StudentPolicy(path, agent).logits(obs))


# ---- evaluate_bundle ----------------------------------------------------------------------------------------
SEEDS = [1000, 1001, 1002]


def _stepped_returns(bundle: Path, seeds: list[int]) -> np.ndarray:
    """Episodes stepped one by one with fresh policies per episode: the per-agent returns [E, N]."""
    spec = scenario_spec("simple_spread")
    env = make_mpe2_env(spec)
    out = []
    for seed in seeds:
        policies = {name: StudentPolicy(bundle, name) for name in env.possible_agents}
        obs, _ = env.reset(seed=seed)
        totals = dict.fromkeys(env.possible_agents, 0.0)
        while env.agents:
            obs, rewards, _, _, _ = env.step({name: policies[name].act(obs[name]) for name in env.agents})
            for name, reward in rewards.items():
                totals[name] += float(reward)
        out.append([totals[name] for name in env.possible_agents])
    return np.array(out)


def test_evaluate_bundle_resets_memory_at_every_episode(bundle: tuple[Path, dict]) -> None:
    path, _ = bundle
    result = evaluate_bundle(path, SEEDS)
    np.testing.assert_array_equal(result.agent_returns, _stepped_returns(path, SEEDS))
    assert evaluate_bundle(path, SEEDS[1:]).returns.tolist() == result.returns[1:].tolist()
    # Policies passed in are reset too, even after they have been used.
    policies = [StudentPolicy(path, name) for name in ("agent_2", "agent_0", "agent_1")]
    for policy in policies:
        policy.act(_episode()[0])
    reused = evaluate_bundle(path, SEEDS, policies=policies)
    assert reused.returns.tolist() == result.returns.tolist()


def test_stochastic_evaluation_steps_the_state(bundle: tuple[Path, dict]) -> None:
    path, _ = bundle
    sampled = evaluate_bundle(path, SEEDS, deterministic=False)
    assert sampled.returns.tolist() == evaluate_bundle(path, SEEDS, deterministic=False).returns.tolist()
    assert evaluate_bundle(path, SEEDS[2:], deterministic=False).returns.tolist() == sampled.returns[2:].tolist()


def test_evaluate_bundle_resets_the_memory_probes(tmp_path: Path) -> None:
    """With the memory probes (actions that show a missed reset) the returns equal fresh policies per episode,
    and differ from policies that carry their memory from one episode into the next (so the test can fail)."""
    path, _, _ = make_bundle(tmp_path / "probe", sensing={"agent_2": HISTORY}, recurrent={"agent_1": 3},
                             memory_probe=True)
    seeds = [1000, 1001, 1002, 1003]
    result = evaluate_bundle(path, seeds)
    np.testing.assert_array_equal(result.agent_returns, _stepped_returns(path, seeds))
    spec = scenario_spec("simple_spread")
    env = make_mpe2_env(spec)
    policies = {name: StudentPolicy(path, name) for name in env.possible_agents}
    carried = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        total = 0.0
        while env.agents:
            obs, rewards, _, _, _ = env.step({name: policies[name].act(obs[name]) for name in env.agents})
            total += float(np.mean(list(rewards.values())))
        carried.append(total)
    assert carried[0] == pytest.approx(result.returns[0], abs=1e-12)
    assert not np.allclose(carried[1:], result.returns[1:], rtol=0, atol=1e-9)
