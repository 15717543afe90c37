"""Student policies: small critic-free MLPs, and the ladder of sizes a hardware budget picks from.

Each agent gets the *largest* rung of the ladder (most FLOPs per decision) whose FLOPs, parameters and
memory all fit its hardware profile, and whose estimated latency fits the profile's latency budget. The
choice and its margins (budget / used, per resource) are returned so that they are printed and recorded.

The ladder is sized for the project's targets: ≥ 30× fewer FLOPs than a 2×256 teacher actor means about
2×32 hidden units on simple_spread (see ``resources.py`` for the counting rules), so the ladder is dense at
the small end and stops at the teacher's own size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from kdmarl_student.budget import budget_excess
from torch import nn

from kdmarl_teacher.resources import Resources, mlp_resources

# Hidden-layer widths, small to large. Depth 1 and 2; every rung is a plain MLP.
LADDER: tuple[tuple[int, ...], ...] = (
    (4,),
    (8,),
    (8, 8),
    (16,),
    (16, 16),
    (32,),
    (24, 24),
    (32, 32),
    (48, 48),
    (64, 64),
    (96, 96),
    (128, 128),
    (192, 192),
    (256, 256),
)

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class StudentMLP(nn.Module):
    """A student actor: sensed observation [*, in_dim] -> action logits [*, n_actions]. No critic.

    ``body`` is Linear+activation blocks; ``head`` maps the last hidden layer to logits. ``embed`` exposes the
    last hidden layer for the structural-relation and role losses (the teacher actor has the same method).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], n_actions: int, activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: expected one of {sorted(ACTIVATIONS)}")
        if not hidden:
            raise ValueError("a student needs at least one hidden layer (embed() returns the last one)")
        self.in_dim, self.hidden, self.n_actions = int(in_dim), tuple(int(h) for h in hidden), int(n_actions)
        self.activation = activation
        layers: list[nn.Module] = []
        prev = self.in_dim
        for width in self.hidden:
            layers += [_orthogonal(nn.Linear(prev, width), 2**0.5), ACTIVATIONS[activation]()]
            prev = width
        self.body = nn.Sequential(*layers)
        self.head = _orthogonal(nn.Linear(prev, self.n_actions), 0.01)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden layer [*, hidden[-1]]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Action logits [*, n_actions]."""
        return self.head(self.body(x))

    def arch(self) -> dict:
        """JSON-ready architecture; ``StudentMLP(**arch)`` rebuilds it."""
        return {"in_dim": self.in_dim, "hidden": list(self.hidden), "n_actions": self.n_actions,
                "activation": self.activation}

    def resources(self, count_activations: bool = False) -> Resources:
        return mlp_resources([self.in_dim, *self.hidden, self.n_actions], count_activations=count_activations)


@dataclass
class RungChoice:
    """The rung picked for one agent, with the margin left on each budgeted resource (budget / used)."""

    hidden: tuple[int, ...]
    resources: Resources
    margins: dict[str, float] = field(default_factory=dict)
    est_latency_ms: float | None = None
    rejected_larger: list[dict] = field(default_factory=list)  # the next rung up and what it exceeded

    def to_dict(self) -> dict:
        return {"hidden": list(self.hidden), "resources": self.resources.to_dict(), "margins": self.margins,
                "est_latency_ms": self.est_latency_ms, "rejected_larger": self.rejected_larger}


def budget_violations(res: Resources, budget: Mapping) -> dict[str, tuple[float, float]]:
    """Which budget fields ``res`` exceeds: {field: (used, allowed)}, by the runtime's one budget rule
    (``kdmarl_student.budget``) with the latency the profile's throughput predicts (the robot later checks
    the latency it measures against the same field)."""
    used = {"flops": res.flops, "params": res.params, "memory": res.memory_bytes,
            "latency": estimated_latency_ms(res, budget)}
    return budget_excess(budget, used)[1]


def estimated_latency_ms(res: Resources, budget: Mapping) -> float | None:
    """Latency estimate from the profile's sustained throughput (FLOP/s), None if the profile gives none."""
    rate = budget.get("sustained_flops_per_s")
    if not rate:
        return None
    return 1e3 * (res.flops / float(rate) + float(budget.get("fixed_overhead_s", 0.0)))


def choose_rung(
    in_dim: int, n_actions: int, budget: Mapping, ladder: Sequence[Sequence[int]] = LADDER,
    count_activations: bool = False,
) -> RungChoice | None:
    """Largest rung (by FLOPs, then params) that fits every field of ``budget``; None if none fits."""
    rungs = sorted(
        ((tuple(h), mlp_resources([in_dim, *h, n_actions], count_activations=count_activations)) for h in ladder),
        key=lambda hr: (hr[1].flops, hr[1].params),
    )
    best, rejected = None, []
    for hidden, res in rungs:
        viol = budget_violations(res, budget)
        if viol:
            if best is not None and not rejected:
                rejected.append({"hidden": list(hidden), "exceeds": {k: {"used": u, "allowed": a}
                                                                    for k, (u, a) in viol.items()}})
            continue
        best, rejected = (hidden, res), []
    if best is None:
        return None
    hidden, res = best
    margins = {}
    for key, used in (("max_flops", res.flops), ("max_params", res.params), ("max_memory_bytes", res.memory_bytes)):
        if budget.get(key) is not None:
            margins[key] = round(float(budget[key]) / max(used, 1), 3)
    lat = estimated_latency_ms(res, budget)
    if lat is not None and budget.get("max_latency_ms") is not None:
        margins["max_latency_ms"] = round(float(budget["max_latency_ms"]) / max(lat, 1e-12), 3)
    return RungChoice(hidden=hidden, resources=res, margins=margins, est_latency_ms=lat, rejected_larger=rejected)


def build_student(arch: Mapping) -> StudentMLP:
    """Rebuild a student from ``StudentMLP.arch()`` (e.g. from students.pt)."""
    hidden = tuple(arch["hidden"])
    return StudentMLP(int(arch["in_dim"]), hidden, int(arch["n_actions"]), arch.get("activation", "tanh"))
