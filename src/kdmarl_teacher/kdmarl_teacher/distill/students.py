"""Student policies: small critic-free networks, and the ladders of sizes a hardware budget picks from.

Two families (issue 11): **MLPs** (``StudentMLP``; also the students with history features, whose extra
inputs come from the sensing transform) and **recurrent students** (``StudentGRU``: an optional MLP trunk, a
GRU cell, a linear head; the hidden state is carried between decisions and reset at episode starts). Each
has its ladder (``LADDER``, ``GRU_LADDER``).

Each agent gets the *largest* rung of its kind's ladder (most FLOPs per decision) whose FLOPs, parameters and
memory (state included) all fit its hardware profile, and whose estimated latency fits the profile's latency
budget. The choice and its margins (budget / used, per resource) are returned so that they are printed and
recorded.

The ladder is sized for the project's targets: ≥ 30× fewer FLOPs than a 2×256 teacher actor means about
2×32 hidden units on simple_spread (see ``resources.py`` for the counting rules), so the ladder is dense at
the small end and stops at the teacher's own size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from kdmarl_student.budget import budget_excess
from kdmarl_student.sensing import history_dim
from torch import nn

from kdmarl_teacher.core.resources import Resources, gru_resources, mlp_resources

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

# Recurrent rungs, small to large: (MLP trunk widths, GRU hidden units). A GRU of H units on `in` inputs costs
# 3H(in + H) multiply-accumulates, so the small end is dense (a microcontroller fits a GRU of 4-8 units).
GRU_LADDER: tuple[tuple[tuple[int, ...], int], ...] = (
    ((), 4),
    ((), 8),
    ((), 12),
    ((), 16),
    ((16,), 16),
    ((), 24),
    ((), 32),
    ((32,), 32),
    ((), 48),
    ((64,), 48),
    ((64,), 64),
    ((128,), 96),
    ((128,), 128),
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

    recurrent = False
    state_dim = 0

    @property
    def embed_dim(self) -> int:
        return self.hidden[-1]

    @property
    def label(self) -> str:
        return f"mlp{list(self.hidden)}"

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden layer [*, hidden[-1]]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Action logits [*, n_actions]."""
        return self.head(self.body(x))

    def arch(self) -> dict:
        """JSON-ready architecture; ``build_student(arch)`` rebuilds it."""
        return {"kind": "mlp", "in_dim": self.in_dim, "hidden": list(self.hidden), "n_actions": self.n_actions,
                "activation": self.activation}

    def resources(self, count_activations: bool = False) -> Resources:
        return mlp_resources([self.in_dim, *self.hidden, self.n_actions], count_activations=count_activations)


class StudentGRU(nn.Module):
    """A recurrent student: (x [M, in_dim], h [M, H]) -> (logits [M, n_actions], h' [M, H]). No critic.

    ``body`` is an optional MLP trunk (Linear+activation blocks), then ``cell`` (``nn.GRUCell``), then ``head``.
    Unlike the teacher's recurrent actor there is no LayerNorm: the student is exported as a plain graph of
    MatMul/Sigmoid/Tanh and every operation on the robot is counted. ``embed`` is the new hidden state (what
    the relation and role losses compare). ``forward(x, h)`` is one step, exactly the exported ONNX graph.
    """

    recurrent = True

    def __init__(self, in_dim: int, trunk: Sequence[int], gru_hidden: int, n_actions: int,
                 activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: expected one of {sorted(ACTIVATIONS)}")
        self.in_dim, self.trunk, self.n_actions = int(in_dim), tuple(int(h) for h in trunk), int(n_actions)
        self.gru_hidden, self.activation = int(gru_hidden), activation
        layers: list[nn.Module] = []
        prev = self.in_dim
        for width in self.trunk:
            layers += [_orthogonal(nn.Linear(prev, width), 2**0.5), ACTIVATIONS[activation]()]
            prev = width
        self.body = nn.Sequential(*layers)
        self.cell = nn.GRUCell(prev, self.gru_hidden)
        for name, p in self.cell.named_parameters():  # MAPPO's RNNLayer init: orthogonal weights, zero biases
            (nn.init.orthogonal_ if "weight" in name else nn.init.zeros_)(p)
        self.head = _orthogonal(nn.Linear(self.gru_hidden, self.n_actions), 0.01)

    @property
    def hidden(self) -> tuple[int, ...]:
        """Widths of every hidden layer, the GRU last (for reports that list layer sizes)."""
        return (*self.trunk, self.gru_hidden)

    @property
    def state_dim(self) -> int:
        return self.gru_hidden

    @property
    def embed_dim(self) -> int:
        return self.gru_hidden

    @property
    def label(self) -> str:
        return f"{f'mlp{list(self.trunk)}+' if self.trunk else ''}gru{self.gru_hidden}"

    def initial_state(self, batch: int) -> torch.Tensor:
        """Zeros [batch, H]: the state at every episode start (the manifest says so to the robot)."""
        return torch.zeros(batch, self.gru_hidden, device=self.head.weight.device)

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [M, in_dim], h [M, H] -> (logits [M, n_actions], new state [M, H]); the new state is the embedding."""
        h_new = self.cell(self.body(x), h)
        return self.head(h_new), h_new

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.step(x, h)

    def arch(self) -> dict:
        return {"kind": "gru", "in_dim": self.in_dim, "trunk": list(self.trunk), "gru_hidden": self.gru_hidden,
                "n_actions": self.n_actions, "activation": self.activation}

    def resources(self, count_activations: bool = False) -> Resources:
        return gru_resources(self.in_dim, self.trunk, self.gru_hidden, self.n_actions,
                             count_activations=count_activations)


@dataclass
class RungChoice:
    """The rung picked for one agent, with the margin left on each budgeted resource (budget / used).

    ``hidden`` is the MLP's hidden widths, or a recurrent student's trunk; ``gru_hidden`` is 0 for an MLP."""

    hidden: tuple[int, ...]
    resources: Resources
    margins: dict[str, float] = field(default_factory=dict)
    est_latency_ms: float | None = None
    rejected_larger: list[dict] = field(default_factory=list)  # the next rung up and what it exceeded
    gru_hidden: int = 0

    @property
    def label(self) -> str:
        if not self.gru_hidden:
            return f"mlp{list(self.hidden)}"
        return f"{f'mlp{list(self.hidden)}+' if self.hidden else ''}gru{self.gru_hidden}"

    def build(self, in_dim: int, n_actions: int, width_mult: float = 1.0) -> StudentMLP | StudentGRU:
        """The student of this rung (``width_mult`` widens an MLP for the resource-aware option)."""
        if self.gru_hidden:
            return StudentGRU(in_dim, self.hidden, self.gru_hidden, n_actions)
        return StudentMLP(in_dim, [max(1, round(h * width_mult)) for h in self.hidden], n_actions)

    def to_dict(self) -> dict:
        return {"hidden": list(self.hidden), "gru_hidden": self.gru_hidden, "label": self.label,
                "resources": self.resources.to_dict(), "margins": self.margins,
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


def rung_resources(in_dim: int, n_actions: int, hidden: Sequence[int], gru_hidden: int = 0, *,
                   state_values: int = 0, count_activations: bool = False) -> Resources:
    """Resources of one rung: an MLP (``gru_hidden`` 0) or a trunk + GRU; ``state_values`` adds carried state
    (the previous values history features keep, 4 bytes each) to its memory."""
    if gru_hidden:
        res = gru_resources(in_dim, hidden, gru_hidden, n_actions, count_activations=count_activations)
    else:
        res = mlp_resources([in_dim, *hidden, n_actions], count_activations=count_activations)
    if state_values:
        res = dataclasses.replace(res, state_bytes=res.state_bytes + 4 * int(state_values))
    return res


def choose_rung(
    in_dim: int, n_actions: int, budget: Mapping, ladder: Sequence = LADDER, count_activations: bool = False,
    *, recurrent: bool = False, state_values: int = 0,
) -> RungChoice | None:
    """Largest rung (by FLOPs, then params) that fits every field of ``budget``; None if none fits.

    ``ladder`` holds MLP hidden-width tuples, or with ``recurrent`` (trunk, gru_hidden) pairs (``GRU_LADDER``);
    ``state_values`` is the history features' carried state (see ``rung_resources``)."""
    entries = [(tuple(t), int(g)) for t, g in ladder] if recurrent else [(tuple(h), 0) for h in ladder]
    rungs = sorted(
        ((h, g, rung_resources(in_dim, n_actions, h, g, state_values=state_values,
                               count_activations=count_activations)) for h, g in entries),
        key=lambda hgr: (hgr[2].flops, hgr[2].params),
    )
    best, rejected = None, []
    for hidden, gru_hidden, res in rungs:
        viol = budget_violations(res, budget)
        if viol:
            if best is not None and not rejected:
                rejected.append({"hidden": list(hidden), "gru_hidden": gru_hidden,
                                 "exceeds": {k: {"used": u, "allowed": a} for k, (u, a) in viol.items()}})
            continue
        best, rejected = (hidden, gru_hidden, res), []
    if best is None:
        return None
    hidden, gru_hidden, res = best
    margins = {}
    for key, used in (("max_flops", res.flops), ("max_params", res.params), ("max_memory_bytes", res.memory_bytes)):
        if budget.get(key) is not None:
            margins[key] = round(float(budget[key]) / max(used, 1), 3)
    lat = estimated_latency_ms(res, budget)
    if lat is not None and budget.get("max_latency_ms") is not None:
        margins["max_latency_ms"] = round(float(budget["max_latency_ms"]) / max(lat, 1e-12), 3)
    return RungChoice(hidden=hidden, resources=res, margins=margins, est_latency_ms=lat, rejected_larger=rejected,
                      gru_hidden=gru_hidden)


def student_resources(student: StudentMLP | StudentGRU, layout: Mapping, sensing: Mapping,
                      count_activations: bool = False) -> Resources:
    """A student's cost on the robot: its network, plus the previous values its history features keep (the
    same accounting as ``rung_resources``, so a trained student is counted as the rung it was picked as)."""
    res = student.resources(count_activations)
    width = history_dim(layout, sensing)
    return dataclasses.replace(res, state_bytes=res.state_bytes + 4 * width) if width else res


def build_student(arch: Mapping) -> StudentMLP | StudentGRU:
    """Rebuild a student from its ``arch()`` (e.g. from students.pt; no ``kind`` means an MLP, as before)."""
    kind = arch.get("kind", "mlp")
    if kind == "gru":
        return StudentGRU(int(arch["in_dim"]), tuple(arch["trunk"]), int(arch["gru_hidden"]), int(arch["n_actions"]),
                          arch.get("activation", "tanh"))
    if kind != "mlp":
        raise ValueError(f"unknown student kind {kind!r}: expected 'mlp' or 'gru'")
    return StudentMLP(int(arch["in_dim"]), tuple(arch["hidden"]), int(arch["n_actions"]),
                      arch.get("activation", "tanh"))
