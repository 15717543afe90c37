"""Perturbations a team meets on robots, applied to its policies during an offline evaluation (issue 25).

One :class:`Perturbation` is one cell of a bundle's *envelope*: ``kdmarl_student.bundle_eval.evaluate_bundle``
takes it and, every step, lets it change what each policy sees (before the policy acts) and what reaches the
environment (after every policy acted). Each kind is modelled as the runtime meets it:

- ``obs_noise`` (``sigma``): Gaussian noise, standard deviation ``sigma`` in the observation's own units (MPE:
  world units for positions, units per second for velocities), added to every component of every agent's
  observation before its policy sees it;
- ``obs_drop`` (``p``, ``answer``): each agent's observation is lost with probability ``p`` per step,
  independently; the policy is not stepped (its memory does not advance, as in the node) and the agent
  answers with ``answer``: ``safe`` (the manifest's safe action, what ``student_node`` publishes on a stale
  observation) or ``last`` (its last action held, what a controller that keeps applying the last command does);
- ``action_delay`` (``k``): the action applied at step t is the one decided at step t - k (k control
  periods of latency); the first k steps apply the safe action (nothing has arrived yet);
- ``teammate_frozen``: one agent applies the safe action from ``from_step`` on (a stopped robot);
- ``teammate_gone``: one agent's last action before ``from_step`` is held from then on (a robot whose
  controller keeps executing its last command after its node died); MPE scenarios cannot remove an agent,
  so "gone" is the held action there.

Which teammate is frozen or gone rotates with the episode seed (agent ``seed mod N``), so a set of episodes
averages over which robot fails. Random draws come from ``numpy.random.default_rng([seed, 25, i])`` per agent,
so a perturbed evaluation is as reproducible as an unperturbed one. The random baseline is never perturbed.

numpy only: a robot-side tool can reuse it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = ("none", "obs_noise", "obs_drop", "action_delay", "teammate_frozen", "teammate_gone")
ANSWERS = ("safe", "last")


@dataclass
class Perturbation:
    """One perturbation (see the module docstring); ``Perturbation()`` is the unperturbed baseline."""

    kind: str = "none"
    sigma: float = 0.0
    p: float = 0.0
    answer: str = "safe"
    k: int = 0
    from_step: int = 0
    _state: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"perturbation kind must be one of {KINDS}, got {self.kind!r}")
        if self.answer not in ANSWERS:
            raise ValueError(f"obs_drop answer must be one of {ANSWERS}, got {self.answer!r}")
        if self.sigma < 0 or not 0 <= self.p <= 1 or self.k < 0 or self.from_step < 0:
            raise ValueError(f"perturbation parameters out of range: {self.describe()}")

    # ----------------------------------------------------------------------------------------- description
    def describe(self) -> dict[str, Any]:
        """The manifest's form: the kind and only the parameters it uses."""
        params = {"none": (), "obs_noise": ("sigma",), "obs_drop": ("p", "answer"), "action_delay": ("k",),
                  "teammate_frozen": ("from_step",), "teammate_gone": ("from_step",)}[self.kind]
        return {"kind": self.kind, **{name: getattr(self, name) for name in params}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Perturbation:
        return cls(**{k: v for k, v in data.items() if k in ("kind", "sigma", "p", "answer", "k", "from_step")})

    def label(self) -> str:
        d = self.describe()
        return d["kind"] + "".join(f" {k}={v}" for k, v in d.items() if k != "kind")

    # ------------------------------------------------------------------------------------------- stepping
    def reset(self, seed: int, names: list[str], safe: Mapping[str, int]) -> None:
        """An episode starts: per-agent generators from the seed, no action history, the failing teammate."""
        self._state = {
            "rngs": {name: np.random.default_rng([int(seed), 25, i]) for i, name in enumerate(names)},
            "safe": dict(safe), "last": {}, "queue": [], "step": 0, "held": {},
            "victim": names[int(seed) % len(names)] if names else None,
        }

    def observe(self, name: str, observation: np.ndarray) -> np.ndarray | None:
        """What agent ``name``'s policy sees this step; ``None``: the observation is lost (answer with
        :meth:`dropped_action`)."""
        rng = self._state["rngs"][name]
        if self.kind == "obs_noise" and self.sigma > 0:
            obs = np.asarray(observation, dtype=np.float64)
            return (obs + rng.normal(0.0, self.sigma, obs.shape)).astype(np.asarray(observation).dtype)
        if self.kind == "obs_drop" and rng.random() < self.p:
            return None
        return observation

    def dropped_action(self, name: str) -> int:
        if self.answer == "last" and name in self._state["last"]:
            return int(self._state["last"][name])
        return int(self._state["safe"][name])

    def actions(self, decided: Mapping[str, int], masks: Mapping[str, Any] | None = None) -> dict[str, int]:
        """The actions that reach the environment this step, from the ones the policies decided."""
        st = self._state
        step = st["step"]
        st["step"] = step + 1
        out = {name: int(a) for name, a in decided.items()}
        if self.kind == "action_delay" and self.k > 0:
            st["queue"].append(dict(out))
            out = (dict(st["queue"].pop(0)) if len(st["queue"]) > self.k
                   else {name: st["safe"][name] for name in out})
        victim = st["victim"]
        if self.kind in ("teammate_frozen", "teammate_gone") and victim in out and step >= self.from_step:
            if self.kind == "teammate_frozen":
                out[victim] = st["safe"][victim]
            else:
                out[victim] = st["held"].setdefault(victim, int(st["last"].get(victim, st["safe"][victim])))
        for name, action in out.items():  # an action no longer available (SMAX masks) becomes the safe action
            mask = (masks or {}).get(name)
            if mask is not None and not bool(np.asarray(mask).reshape(-1)[action]):
                out[name] = st["safe"][name]
        st["last"].update(out)
        return out


def default_grid(max_cycles: int) -> list[Perturbation]:
    """The envelope's grid: the unperturbed baseline first, then each perturbation at increasing strength."""
    late = max(1, max_cycles // 5)
    return [
        Perturbation(),
        *(Perturbation("obs_noise", sigma=s) for s in (0.02, 0.05, 0.1, 0.2)),
        *(Perturbation("obs_drop", p=p, answer=a) for a in ANSWERS for p in (0.1, 0.3)),
        *(Perturbation("action_delay", k=k) for k in (1, 2, 3)),
        Perturbation("teammate_frozen", from_step=0),
        Perturbation("teammate_gone", from_step=late),
    ]


__all__ = ["ANSWERS", "KINDS", "Perturbation", "default_grid"]
