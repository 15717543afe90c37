"""Evaluate a team from its bundle alone: the real mpe2 environment, ONNX Runtime, numpy. No torch.

This is what ``kdmarl evaluate --bundle bundles/NAME`` runs, and the reference the ROS simulation bridge
must reproduce exactly: per episode ``env.reset(seed=seed)`` on ``scenarios.make_mpe2_env`` built from the
manifest's scenario, then every agent acts on its own full observation each step until the episode ends
(``max_cycles``). With greedy actions the returns equal those of the torch students on the same seeds
(the ONNX/torch parity at export is 1e-5 on logits, so only exact logit ties could differ).

Students with memory (history features, recurrent state) are reset at every episode start, the policies a
caller passes in too, so each episode's return depends on its seed alone: evaluating seeds [a, b] gives
the returns of [a] and of [b]. That is also what the ROS bridge gets, since the student node resets on a
new episode counter.

Definitions (DESIGN.md §5): team return = mean over agents of each agent's summed reward. Task figures:
``simple_spread`` — ``landmarks_covered`` at the last step (an agent closer than 0.1, mpe2's
benchmark rule) and ``collisions`` (agent pairs in contact, summed over the steps of the episode);
speaker-listener — ``goal_distance`` (listener to goal landmark at the last step); simple_reference —
``goal_distance`` (mean over agents of the distance between each agent's target agent and landmark).

SMAX (issue 12): the battle of seed s is ``kdmarl_student.smax_battle.SmaxBattle.reset(s)`` (the teacher side's
``reset_from_seeds([s])``), stepped until it ends; every agent gets its step's available actions as ``mask``
(so no policy picks an unavailable one; random = uniform over the available ones), and the task figures are
SMAX's: ``won`` (its mean is the win rate), ``allies_alive``, ``enemy_hp_left``.

Google Research Football (issue 27): the game of seed s is ``kdmarl_student.grf_game.GrfGame.reset(s)`` (the
teacher side's ``reset_from_seeds([s])``); no masks; figures ``won`` and ``goal_diff`` at the episode's end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdmarl_student.manifest import load_manifest
from kdmarl_student.perturbation import Perturbation
from kdmarl_student.policy import StudentPolicy
from kdmarl_student.scenarios import is_grf, is_smax, make_mpe2_env, scenario_spec, task_metrics
from kdmarl_student.stats import mean_ci

ACTORS = ("student", "teacher", "random")


@dataclass
class BundleEvaluation:
    """Per-episode results, in seed order."""

    actor: str
    seeds: list[int]
    agents: list[str]
    returns: np.ndarray  # [E] team return per episode
    agent_returns: np.ndarray  # [E, N] summed reward per agent
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [E]

    def summary(self) -> dict[str, Any]:
        """Mean team return with its 95 % confidence interval (:func:`kdmarl_student.stats.mean_ci`) and mean
        metrics. The manifest is strict JSON (no NaN), so a single episode, whose interval is undefined, writes
        ci95 0.0 there."""
        ret = mean_ci(self.returns)
        return {
            "mean": ret["mean"],
            "ci95": ret["ci95"] if ret["n"] >= 2 else 0.0,
            "episodes": ret["n"],
            "metrics": {k: float(np.mean(v)) for k, v in self.metrics.items()},
        }


def retention(student: float | None, teacher: float | None, random: float | None) -> float | None:
    """(R_student - R_random) / (R_teacher - R_random), DESIGN.md §5; None if any is missing or degenerate."""
    if student is None or teacher is None or random is None or abs(teacher - random) < 1e-12:
        return None
    return (student - random) / (teacher - random)


def make_bundle_env(spec: Any) -> Any:
    """The environment a bundle is evaluated in: mpe2's parallel env, one SMAX battle (numpy + jax) or one
    GRF game (numpy + gfootball)."""
    if is_grf(spec.name):
        from kdmarl_student.grf_game import GrfGame  # noqa: PLC0415  (gfootball only for GRF)

        return GrfGame(spec)
    if is_smax(spec.name):
        from kdmarl_student.smax_battle import SmaxBattle  # noqa: PLC0415  (jax only for SMAX)

        return SmaxBattle(spec)
    return make_mpe2_env(spec)


def evaluate_bundle(
    bundle_dir: str | Path,
    seeds: Iterable[int],
    *,
    actor: str = "student",
    public_key: Any = None,
    require_signature: bool | None = None,
    deterministic: bool = True,
    intra_op_num_threads: int = 1,
    policies: Sequence[StudentPolicy] | None = None,
    perturbation: Perturbation | None = None,
) -> BundleEvaluation:
    """Run one episode per seed with the bundle's agents and return per-episode returns and task metrics.

    Args:
        bundle_dir: the bundle.
        seeds: one episode per seed (``env.reset(seed=seed)``).
        actor: ``"student"`` (the bundle's models), ``"teacher"`` (the teacher actor shipped in the
            bundle) or ``"random"`` (uniform actions from ``numpy.random.default_rng(seed)`` per episode,
            agents drawn in mpe2's agent order).
        public_key / require_signature: as ``StudentPolicy`` (the bundle is verified the same way).
        deterministic: greedy actions; with ``False`` each agent samples with its own generator seeded
            from the episode seed and its index.
        policies: already-open policies (one per agent, any order) to reuse, e.g. by a caller that also
            benchmarks them; they are reset at every episode start.
        perturbation: one cell of the envelope (:mod:`kdmarl_student.perturbation`), applied to the student or
            teacher policies as a robot meets it; ignored for ``"random"`` (the baseline is never perturbed).
    """
    if actor not in ACTORS:
        raise ValueError(f"actor must be one of {ACTORS}, got {actor!r}")
    seeds = [int(s) for s in seeds]
    manifest = load_manifest(bundle_dir, public_key=public_key, require_signature=require_signature)
    scenario = manifest.scenario
    spec = scenario_spec(scenario["name"], **scenario["params"])
    env = make_bundle_env(spec)
    masked = hasattr(env, "available_actions")
    names = list(env.possible_agents)
    missing = sorted(set(names) - set(manifest.agent_names))
    if missing:
        raise ValueError(f"{manifest.path}: the environment has agents {missing} the bundle does not")
    n_actions = {a.name: a.n_actions for a in manifest.agents}
    by_name: dict[str, StudentPolicy] = {}
    if actor != "random":
        if policies is not None:
            by_name = {p.name: p for p in policies}
        else:
            by_name = {
                name: StudentPolicy(bundle_dir, name, public_key=public_key, require_signature=require_signature,
                                    intra_op_num_threads=intra_op_num_threads, providers=["CPUExecutionProvider"],
                                    model=actor)
                for name in names
            }
    if actor == "random" or (perturbation is not None and perturbation.kind == "none"):
        perturbation = None
    safe = {a.name: a.safe_action for a in manifest.agents}
    returns = np.zeros((len(seeds), len(names)))
    metrics: dict[str, list[float]] = {}
    for e, seed in enumerate(seeds):
        observations, _ = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        samplers = {name: np.random.default_rng([seed, i]) for i, name in enumerate(names)}
        collisions = 0.0
        last: dict[str, float] = {}
        for policy in by_name.values():
            policy.reset()  # an episode start: no memory carried over from the previous episode
        if perturbation is not None:
            perturbation.reset(seed, names, safe)
        while env.agents:
            actions: dict[str, int] = {}
            masks = env.available_actions() if masked else {}
            for name in env.agents:
                mask = masks.get(name)
                seen = observations[name] if perturbation is None else perturbation.observe(name, observations[name])
                if seen is None:  # a lost observation: the policy is not stepped, the runtime's answer is sent
                    actions[name] = perturbation.dropped_action(name)
                elif actor == "random":
                    actions[name] = (int(rng.integers(n_actions[name])) if mask is None
                                     else int(rng.choice(np.flatnonzero(mask))))
                elif deterministic:
                    actions[name] = by_name[name].act(seen, mask=mask)
                else:
                    logits = by_name[name].step_logits(seen).astype(np.float64)
                    if mask is not None:
                        logits = np.where(by_name[name].check_mask(mask), logits, -np.inf)
                    probs = np.exp(logits - logits.max())
                    actions[name] = int(samplers[name].choice(probs.size, p=probs / probs.sum()))
            if perturbation is not None:
                actions = perturbation.actions(actions, masks)
            observations, rewards, terminations, truncations, _ = env.step(actions)
            for i, name in enumerate(names):
                returns[e, i] += float(rewards.get(name, 0.0))
            last = dict(env.metrics) if masked else task_metrics(spec.name, env.unwrapped.world)
            collisions += last.get("collisions", 0.0)
            if all(terminations.get(n, False) or truncations.get(n, False) for n in actions):
                break
        if "collisions" in last:
            last["collisions"] = collisions
        for key, value in last.items():
            metrics.setdefault(key, []).append(value)
    env.close()
    return BundleEvaluation(
        actor=actor,
        seeds=seeds,
        agents=names,
        returns=returns.mean(axis=1),
        agent_returns=returns,
        metrics={k: np.asarray(v) for k, v in metrics.items()},
    )


