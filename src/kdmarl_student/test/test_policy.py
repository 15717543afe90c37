"""StudentPolicy: the right action for the right slice of the observation, typed errors, self-measurement."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from kdmarl_student.errors import ObservationError, PolicyOutputError
from kdmarl_student.policy import StudentPolicy, open_session
from kdmarl_student.scenarios import scenario_spec
from kdmarl_student.sensing import apply_sensing
from test_support_bundles import (
    install_model,
    make_bundle,
    numpy_forward,
    random_mlp,
    write_onnx_log_policy,
    write_onnx_mlp,
)

SENSING = {
    "agent_0": {"slices": "all"},
    "agent_1": {"slices": ["self_vel", "landmarks"]},  # a cheap sensor: no position, no other agents
    "agent_2": {"slices": ["self_vel", "self_pos", "landmarks", "other_agents"], "nearest": {"landmarks": 2}},
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path, weights, _ = make_bundle(tmp_path_factory.mktemp("policy") / "bundle", sensing=SENSING, hidden=(16, 8))
    return path, weights


def _observations(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (n, dim)).astype(np.float32)


@pytest.mark.parametrize("agent", list(SENSING))
def test_act_applies_sensing_then_the_model(bundle: tuple[Path, dict], agent: str) -> None:
    path, weights = bundle
    policy = StudentPolicy(path, agent)
    layout = scenario_spec("simple_spread").agents[0].layout
    obs = _observations(2000, 18)
    expected = numpy_forward(weights[agent], apply_sensing(obs, layout, SENSING[agent]))
    np.testing.assert_allclose(policy.logits(obs), expected, atol=1e-5)
    actions = [policy.act(row) for row in obs[:200]]
    assert actions == expected[:200].argmax(axis=1).tolist()
    assert policy.act_batch(obs).tolist() == expected.argmax(axis=1).tolist()


def test_act_accepts_lists_and_float64(bundle: tuple[Path, dict]) -> None:
    policy = StudentPolicy(bundle[0], "agent_0")
    obs = _observations(1, 18)[0]
    assert policy.act(obs.astype(np.float64).tolist()) == policy.act(obs)


@pytest.mark.parametrize(
    ("observation", "reason"),
    [
        (np.zeros(17), "shape"),
        (np.zeros(19), "shape"),
        (np.zeros((2, 18)), "shape"),  # act() takes one observation
        (np.array([np.nan] + [0.0] * 17), "non_finite"),
        (np.array([0.0] * 17 + [np.inf]), "non_finite"),
        (np.array([1e39] + [0.0] * 17), "non_finite"),  # finite in float64, Inf in float32
        (["a"] * 18, "dtype"),
        (None, "dtype"),
        ([], "shape"),
    ],
)
def test_bad_observations_raise_typed_errors(bundle: tuple[Path, dict], observation: object, reason: str) -> None:
    policy = StudentPolicy(bundle[0], "agent_1")
    with pytest.raises(ObservationError) as info:
        policy.act(observation)
    assert info.value.reason == reason
    assert info.value.agent == "agent_1"
    assert policy.rejected_observations == 1
    assert policy.act(np.zeros(18)) in range(5)  # the policy is still usable afterwards


def test_sampling_is_seeded(bundle: tuple[Path, dict]) -> None:
    obs = np.zeros(18, dtype=np.float32)
    a = StudentPolicy(bundle[0], "agent_0", deterministic=False, seed=7)
    b = StudentPolicy(bundle[0], "agent_0", deterministic=False, seed=7)
    draws_a = [a.act(obs) for _ in range(200)]
    assert draws_a == [b.act(obs) for _ in range(200)]
    assert len(set(draws_a)) > 1  # near-uniform logits: sampling really samples
    assert a.act(obs, deterministic=True) == int(np.argmax(a.logits(obs)))


def test_snapshot_reports_latency_resources_and_budget(tmp_path: Path) -> None:
    budget = {"name": "tiny", "max_flops": 10, "max_params": 10**6, "max_memory_bytes": 10**6, "max_latency_ms": 1e6}
    path, _, _ = make_bundle(tmp_path / "b", budget=budget)
    policy = StudentPolicy(path, "agent_2")
    assert policy.spec.budget["met"] is False and policy.spec.budget["checks"]["flops"] is False
    for row in _observations(50, 18):
        policy.act(row)
    snap = policy.snapshot()
    assert snap.decisions == 50
    assert 0 < snap.latency_p50_ms <= snap.latency_p99_ms <= snap.latency_max_ms
    with open("/proc/self/statm") as statm:  # this process's resident set, read independently of psutil
        rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert abs(snap.rss_bytes - rss) < 0.1 * rss, (snap.rss_bytes, rss)
    assert snap.flops_per_decision == policy.spec.resources["flops_per_decision"]
    assert snap.budget_met is False and snap.budget_checks["latency"] is True
    assert snap.provider == "CPUExecutionProvider"
    assert policy.session.get_session_options().intra_op_num_threads == 1


def test_thread_count_is_configurable(bundle: tuple[Path, dict]) -> None:
    policy = StudentPolicy(bundle[0], "agent_0", intra_op_num_threads=2)
    assert policy.session.get_session_options().intra_op_num_threads == 2


def test_teacher_model_gets_padding_and_one_hot(tmp_path: Path) -> None:
    path, _, teacher_w = make_bundle(tmp_path / "sl", scenario="simple_speaker_listener")
    listener = StudentPolicy(path, "listener_0", model="teacher")
    obs = _observations(100, 11)
    x = np.zeros((100, 11 + 2), dtype=np.float32)  # obs_dim_max 11, two agents; listener is index 1
    x[:, :11] = obs
    x[:, 12] = 1.0
    np.testing.assert_allclose(listener.logits(obs), numpy_forward(teacher_w, x)[:, :5], atol=1e-5)
    speaker = StudentPolicy(path, "speaker_0", model="teacher")
    assert speaker.logits(np.ones(3)).shape == (3,)  # only the speaker's 3 valid actions


def test_non_finite_logits_are_refused_not_acted_on(tmp_path: Path) -> None:
    """Issue 9: argmax over NaN picked an arbitrary action; now act/logits/act_batch raise PolicyOutputError."""
    path, _, _ = make_bundle(tmp_path / "b")
    weights = np.random.default_rng(0).normal(size=(18, 5)).astype(np.float32)
    install_model(path, 0, write_onnx_log_policy(path / "agent_0.onnx", weights))
    policy = StudentPolicy(path, "agent_0")
    good = np.zeros(18, np.float32)
    broken = good.copy()
    broken[3] = -2.0  # log(-1) = NaN in every logit
    with pytest.raises(PolicyOutputError) as info:
        policy.act(broken)
    assert info.value.agent == "agent_0" and info.value.reason == "non_finite_logits"
    assert policy.non_finite_outputs == 1
    assert policy.act(good) in range(5)  # still usable; only the refused decision is missing
    with pytest.raises(PolicyOutputError):
        policy.act_batch(np.stack([good, broken]))
    with pytest.raises(PolicyOutputError):
        policy.logits(broken)
    inf = good.copy()
    inf[0] = -1.0  # log(0) = -inf
    with pytest.raises(PolicyOutputError):
        policy.act(inf)
    snap = policy.snapshot()
    assert snap.non_finite_outputs == policy.non_finite_outputs == 4
    assert snap.decisions == 1


def test_open_session_takes_bytes_or_a_path(tmp_path: Path) -> None:
    """Other callers keep a path API; the policy hands over the bytes it hashed."""
    path = write_onnx_mlp(tmp_path / "m.onnx", random_mlp([7, 5, 3], seed=3))
    for model in (path, str(path), path.read_bytes()):
        session, provider = open_session(model, "observation", 7, providers=["CPUExecutionProvider"])
        assert provider == "CPUExecutionProvider"
        assert session.run(None, {"observation": np.zeros((1, 7), np.float32)})[0].shape == (1, 3)
