"""ReleaseSlot: swap at the cut-over episode with no missed decision and a reset memory, revert on unhealthy output
or latency, all with real ONNX Runtime sessions of real bundles."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from kdmarl_student.errors import BundleError, PolicyOutputError
from kdmarl_student.policy import StudentPolicy
from kdmarl_student.release_slot import ReleaseSlot
from kdmarl_student.release_store import ReleaseStore
from kdmarl_student.signing import generate_keypair, load_private_key, sign_bundle
from test_support_bundles import install_model, make_bundle, write_onnx_log_policy

AGENT = "agent_0"
EPISODE = 25


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, Path]:
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    return tmp_path / "k.key", tmp_path / "k.pub"


def signed_bundle(path: Path, key: tuple[Path, Path], **kwargs: object) -> Path:
    bundle, _, _ = make_bundle(path, **kwargs)
    sign_bundle(bundle, load_private_key(key[0]))
    return bundle


def store_with(tmp_path: Path, bundles: dict[int, Path]) -> ReleaseStore:
    """A release store holding these releases (as the updater stages them): the first current, the next staged."""
    store = ReleaseStore(tmp_path / "releases")
    for release, bundle in bundles.items():
        shutil.copytree(bundle, store.root / str(release))
    first, *rest = bundles
    store.set_pointer("current", first)
    if rest:
        store.set_pointer("staged", rest[0])
    return store


def cpu_loader(public_key: Path):
    return lambda path: StudentPolicy(path, AGENT, public_key=public_key, providers=["CPUExecutionProvider"])


def observations(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 18)).astype(np.float32)


def test_swap_at_cutover_episode_no_missed_decision(tmp_path: Path, key: tuple[Path, Path]) -> None:
    r1 = signed_bundle(tmp_path / "r1", key, seed=1)
    r2 = signed_bundle(tmp_path / "r2", key, seed=2)
    store = store_with(tmp_path, {1: r1, 2: r2})
    slot = ReleaseSlot(AGENT, loader=cpu_loader(key[1]), store=store)
    assert slot.start_from_store() == 1
    ref = {1: StudentPolicy(r1, AGENT, providers=["CPUExecutionProvider"]),
           2: StudentPolicy(r2, AGENT, providers=["CPUExecutionProvider"])}
    obs = observations(4 * EPISODE)
    actions, releases = [], []
    for t, o in enumerate(obs):
        episode, step = divmod(t, EPISODE)
        if (episode, step) == (1, 7):  # the announcement arrives mid-episode: cut-over at episode 2
            slot.stage(2, store.path("staged"), cutover_episode=2)
        actions.append(slot.act(o, episode=episode, step=step))
        releases.append(slot.release)
    assert len(actions) == len(obs)  # every decision answered
    assert releases == [1] * (2 * EPISODE) + [2] * (2 * EPISODE)  # switched exactly at episode 2, step 0
    expected = [ref[r].act(o) for r, o in zip(releases, obs, strict=True)]
    assert actions == expected
    assert [ref[1].act(o) for o in obs] != [ref[2].act(o) for o in obs]  # the releases act differently
    assert store.listing()["pointers"] == {"current": 1, "previous": None, "staged": 2}  # act() wrote nothing
    slot.sync_store()
    assert store.listing()["pointers"] == {"current": 2, "previous": 1, "staged": None}
    assert slot.status()["release"] == 2 and slot.status()["last_good_release"] == 1
    assert slot.status()["last_event"].startswith("swap 2 at episode 2 step 0")


def test_swap_resets_memory_of_a_recurrent_student(tmp_path: Path, key: tuple[Path, Path]) -> None:
    """Step-counter students: the action is the number of decisions since the last reset (mod 5)."""
    probe = {"recurrent": {AGENT: 4}, "memory_probe": True}
    r1 = signed_bundle(tmp_path / "r1", key, seed=1, **probe)
    r2 = signed_bundle(tmp_path / "r2", key, seed=2, **probe)
    loaded: list[StudentPolicy] = []

    def loader(path: Path) -> StudentPolicy:
        loaded.append(cpu_loader(key[1])(path))
        return loaded[-1]
    slot = ReleaseSlot(AGENT, loader=loader)
    slot.start(1, r1)
    obs = np.zeros(18, np.float32)
    # episode 0 has no reset in between: the counter of release 1 runs 1, 2, 3, ...
    first = [slot.act(obs, episode=0, step=s) for s in range(7)]
    assert first == [(s + 1) % 5 for s in range(7)]
    slot.stage(2, r2, cutover_episode=1)
    # a fresh policy was loaded, then release 1 acts 3 more times; the swap must reset release 2 at step 0 anyway
    loaded[-1].act(obs)  # a decision taken on the staged policy before the cut-over advances its counter
    more = [slot.act(obs, episode=0, step=s) for s in range(7, 10)]
    assert more == [(s + 1) % 5 for s in range(7, 10)] and slot.release == 1
    after = [slot.act(obs, episode=1, step=s) for s in range(6)]
    assert slot.release == 2 and after == [(s + 1) % 5 for s in range(6)]


def test_non_finite_output_reverts_to_last_good_on_the_same_decision(tmp_path: Path, key: tuple[Path, Path],
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    r1 = signed_bundle(tmp_path / "r1", key, seed=1)
    r2, _, _ = make_bundle(tmp_path / "r2", seed=2)
    weights = np.random.default_rng(0).normal(size=(18, 5)).astype(np.float32)
    install_model(r2, 0, write_onnx_log_policy(r2 / "broken_agent_0.onnx", weights))
    sign_bundle(r2, load_private_key(key[0]))
    store = store_with(tmp_path, {1: r1, 2: r2})
    slot = ReleaseSlot(AGENT, loader=cpu_loader(key[1]), store=store)
    slot.start_from_store()
    slot.stage(2, store.path("staged"), cutover_episode=1)
    ref1 = StudentPolicy(r1, AGENT, providers=["CPUExecutionProvider"])
    healthy = np.full(18, 0.5, np.float32)
    assert slot.act(healthy, episode=0, step=0) == ref1.act(healthy)
    slot.act(healthy, episode=1, step=0)
    assert slot.release == 2
    broken = np.full(18, -0.5, np.float32)
    broken[3] = -2.0  # log(-1): NaN logits from release 2
    with pytest.raises(PolicyOutputError):
        StudentPolicy(r2, AGENT, providers=["CPUExecutionProvider"]).act(broken)
    with caplog.at_level(logging.ERROR, logger="kdmarl_student.release_slot"):
        action = slot.act(broken, episode=1, step=1)
    ref1.reset()
    assert action == ref1.act(broken)  # answered by release 1, same decision
    assert slot.release == 1 and "non_finite_logits" in slot.status()["last_revert"]
    slot.sync_store()  # the swap to 2, then the revert to 1
    assert store.listing()["pointers"] == {"current": 1, "previous": None, "staged": None}
    assert store.status()["reverted"] == [2] and "reverted" in store.status()["last_refusal"]["reason"]
    assert any("reverted to release 1" in r.getMessage() for r in caplog.records)
    assert slot.act(healthy, episode=2, step=0) == ref1.act(healthy)  # and keeps acting on release 1


def test_latency_over_budget_reverts_after_the_window(tmp_path: Path, key: tuple[Path, Path]) -> None:
    r1 = signed_bundle(tmp_path / "r1", key, seed=1)
    r2 = signed_bundle(tmp_path / "r2", key, seed=2)
    slot = ReleaseSlot(AGENT, loader=cpu_loader(key[1]), max_latency_ms=1e-6, latency_window=20)
    slot.start(1, r1)
    slot.stage(2, r2, cutover_episode=1)
    obs = observations(60)
    releases = []
    for t, o in enumerate(obs):
        slot.act(o, episode=t // 25, step=t % 25)
        releases.append(slot.release)
    assert releases[:25] == [1] * 25
    assert releases[25:45] == [2] * 20  # judged after 20 decisions on release 2
    assert releases[45:] == [1] * 15 and "p99 decision latency" in slot.status()["last_revert"]


def test_a_bundle_that_fails_to_load_is_not_staged(tmp_path: Path, key: tuple[Path, Path]) -> None:
    r1 = signed_bundle(tmp_path / "r1", key, seed=1)
    generate_keypair(tmp_path / "other.key", tmp_path / "other.pub")
    r2, _, _ = make_bundle(tmp_path / "r2", seed=2)
    sign_bundle(r2, load_private_key(tmp_path / "other.key"))
    slot = ReleaseSlot(AGENT, loader=cpu_loader(key[1]))
    slot.start(1, r1)
    with pytest.raises(BundleError, match="verification failed"):
        slot.stage(2, r2, cutover_episode=1)
    obs = observations(1)[0]
    slot.act(obs, episode=1, step=0)
    assert slot.release == 1 and slot.status()["staged_release"] is None
    assert slot.events[-1].kind == "stage_refused"


def test_a_late_announcement_never_splits_an_episode(tmp_path: Path, key: tuple[Path, Path]) -> None:
    """Staged during the cut-over episode itself: this robot switches at the next episode start, not mid-episode."""
    r1 = signed_bundle(tmp_path / "r1", key, seed=1)
    r2 = signed_bundle(tmp_path / "r2", key, seed=2)
    slot = ReleaseSlot(AGENT, loader=cpu_loader(key[1]))
    slot.start(1, r1)
    releases = []
    for t, o in enumerate(observations(3 * EPISODE)):
        episode, step = divmod(t, EPISODE)
        if (episode, step) == (1, 3):
            slot.stage(2, r2, cutover_episode=1)
        slot.act(o, episode=episode, step=step)
        releases.append(slot.release)
    assert releases == [1] * (2 * EPISODE) + [2] * EPISODE


def test_team_swap_drill_returns_equal_offline_evaluation_of_each_release(tmp_path: Path) -> None:
    """A 3-agent team in lockstep on the real mpe2 env switches from release 1 to 2 at episode 3: no missed
    decision, no mixed episode, and every episode's return is the offline evaluation's of its release, bit for bit."""
    from kdmarl_student.bundle_eval import evaluate_bundle
    from kdmarl_student.swap_drill import run_swap_drill

    r1, _, _ = make_bundle(tmp_path / "r1", seed=1)
    r2, _, _ = make_bundle(tmp_path / "r2", seed=2)
    seeds = list(range(1000, 1006))
    drill = run_swap_drill(r1, r2, seeds, stage_episode=1, cutover_episode=3)
    assert drill.missed_decisions == 0 and drill.mixed_episodes == 0
    assert drill.decisions == 6 * 25 * 3
    assert [set(r.values()) for r in drill.releases] == [{1}] * 3 + [{2}] * 3
    before = evaluate_bundle(r1, seeds[:3]).returns
    after = evaluate_bundle(r2, seeds[3:]).returns
    assert drill.team_returns.tolist() == [*before.tolist(), *after.tolist()]
    assert evaluate_bundle(r1, seeds[3:]).returns.tolist() != after.tolist()  # the releases are told apart
    assert len(drill.swap_decision_ms) == 3
