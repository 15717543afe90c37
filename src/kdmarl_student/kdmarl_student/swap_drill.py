"""A team switching release while it runs, without ROS: one :class:`ReleaseSlot` per agent stepped in lockstep on
the real mpe2 environment, exactly as :func:`kdmarl_student.bundle_eval.evaluate_bundle` steps a team.

This is what the sim bridge and the student nodes will do over ROS once the node hook is in (docs/fleet_updates.md):
the release is staged on every robot during an earlier episode, each slot switches at step 0 of the cut-over
episode. Because the episode loop is the offline evaluation's, the returns of the episodes before the cut-over must
equal ``evaluate_bundle(release_1, those seeds)`` and the ones from the cut-over on ``evaluate_bundle(release_2,
those seeds)``, bit for bit; every decision is answered (a missed decision would be an exception or a safe action).
Used by the tests and ``bench/bench_fleet_update.py``. MPE scenarios only (no action masks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdmarl_student.manifest import load_manifest
from kdmarl_student.release_slot import ReleaseSlot
from kdmarl_student.scenarios import make_mpe2_env, scenario_spec

__all__ = ["DrillResult", "run_swap_drill"]


@dataclass
class DrillResult:
    seeds: list[int]
    team_returns: np.ndarray  # [E]
    releases: list[dict[str, int | None]]  # per episode: agent -> release that acted at step 0
    mixed_episodes: int  # episodes in which two releases acted (0 expected)
    decisions: int
    missed_decisions: int
    swap_decision_ms: list[float] = field(default_factory=list)  # act() of the cut-over decision, per agent
    decision_ms_p50: float = 0.0


def run_swap_drill(bundle_1: str | Path, bundle_2: str | Path, seeds: Sequence[int], *, stage_episode: int,
                   cutover_episode: int, loader: Callable[[Path, str], object] | None = None,
                   public_key: object = None) -> DrillResult:
    """Run one episode per seed; stage ``bundle_2`` on every agent at step 5 of ``stage_episode`` (announcement),
    switch at ``cutover_episode``. ``loader(path, agent)`` opens a policy (default: CPU ``StudentPolicy``)."""
    from kdmarl_student.policy import StudentPolicy  # noqa: PLC0415

    def default_loader(path: Path, agent: str) -> StudentPolicy:
        return StudentPolicy(path, agent, public_key=public_key, providers=["CPUExecutionProvider"])

    load = loader or default_loader
    manifest = load_manifest(bundle_1)
    spec = scenario_spec(manifest.scenario["name"], **manifest.scenario["params"])
    env = make_mpe2_env(spec)
    names = list(env.possible_agents)
    slots = {}
    for name in names:
        slot = ReleaseSlot(name, loader=lambda path, agent=name: load(path, agent))
        slot.start(1, bundle_1)
        slots[name] = slot
    returns = np.zeros((len(seeds), len(names)))
    releases: list[dict[str, int | None]] = []
    mixed = decisions = missed = 0
    swap_ms: list[float] = []
    all_ms: list[float] = []
    for e, seed in enumerate(seeds):
        observations, _ = env.reset(seed=int(seed))
        for slot in slots.values():
            slot.policy.reset()  # as evaluate_bundle: an episode start
        seen: dict[str, set[int | None]] = {n: set() for n in names}
        step = 0
        while env.agents:
            if e == stage_episode and step == 5:
                for slot in slots.values():
                    slot.stage(2, bundle_2, cutover_episode)
            actions: dict[str, int] = {}
            for name in env.agents:
                before = slots[name].release
                started = time.perf_counter()
                try:
                    actions[name] = slots[name].act(observations[name], episode=e, step=step)
                except Exception:  # a missed decision: the bridge would step this agent with its safe action
                    missed += 1
                    actions[name] = 0
                elapsed = (time.perf_counter() - started) * 1e3
                all_ms.append(elapsed)
                if slots[name].release != before:
                    swap_ms.append(elapsed)
                decisions += 1
                seen[name].add(slots[name].release)
            observations, rewards, terminations, truncations, _ = env.step(actions)
            for i, name in enumerate(names):
                returns[e, i] += float(rewards.get(name, 0.0))
            step += 1
            if all(terminations.get(n, False) or truncations.get(n, False) for n in actions):
                break
        releases.append({n: next(iter(r)) if len(r) == 1 else None for n, r in seen.items()})
        mixed += int(len(set().union(*seen.values())) > 1)
        for slot in slots.values():
            slot.sync_store()
    env.close()
    return DrillResult(seeds=[int(s) for s in seeds], team_returns=returns.mean(axis=1), releases=releases,
                       mixed_episodes=mixed, decisions=decisions, missed_decisions=missed, swap_decision_ms=swap_ms,
                       decision_ms_p50=float(np.percentile(all_ms, 50)) if all_ms else 0.0)
