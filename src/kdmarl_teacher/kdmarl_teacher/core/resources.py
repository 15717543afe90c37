"""Analytic resource accounting of MLP policies: FLOPs per decision, parameters, memory.

Definitions (DESIGN.md §5), used everywhere in kdmarl (students' ladder, manifest, reports):
- **FLOPs per decision** = 2 × multiply-accumulates of one forward pass at batch 1. Bias additions and
  activation functions are *not* counted by default — the same convention as ``torch.utils.flop_counter``
  (which counts ``addmm`` as 2·m·n·k), so the analytic figure can be checked against it exactly. With
  ``count_activations=True`` one FLOP per hidden unit is added (one tanh/ReLU each) and the report says so.
- **Parameters** = weights + biases.
- **Memory** = weights (``bytes_per_value`` each, float32 by default) + activations at batch 1 + the state a
  student carries between decisions (issue 11: a GRU's hidden state, or the previous observation values of
  history features). Activations are counted conservatively as the sum of every buffer of the forward pass
  (input, each hidden layer, logits, a GRU's gate pre-activations): a runtime that reuses buffers needs
  less, never more.
- **A GRU cell** (PyTorch's ``GRUCell``: input and hidden projections to 3 gates) costs
  ``3·H·(in + H)`` MACs; its gate nonlinearities and the state update (about 10·H elementwise operations)
  are not counted, like activation functions, unless ``count_activations`` (then 3·H: one per gate unit).

A linear chain is described by its layer widths ``[in_dim, h1, ..., hk, out_dim]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Resources:
    """Resource figures of one MLP forward pass at batch 1 (see the module docstring for definitions)."""

    macs: int
    flops: int  # 2 × macs (+ activations if flops_include_activations)
    params: int
    weight_bytes: int
    activation_bytes: int
    flops_include_activations: bool = False
    state_bytes: int = 0  # carried between decisions (GRU hidden state, history features' previous values)

    @property
    def memory_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes + self.state_bytes

    def to_dict(self) -> dict:
        return {**asdict(self), "memory_bytes": self.memory_bytes}


def mlp_resources(
    widths: Sequence[int], count_activations: bool = False, bytes_per_value: int = 4, bias: bool = True
) -> Resources:
    """Resources of a dense chain with layer widths ``[in_dim, h1, ..., out_dim]`` (activation after each hidden)."""
    widths = [int(w) for w in widths]
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"an MLP needs at least [in_dim, out_dim] positive widths, got {widths}")
    macs = sum(a * b for a, b in itertools.pairwise(widths))
    params = macs + (sum(widths[1:]) if bias else 0)
    n_hidden_units = sum(widths[1:-1])
    flops = 2 * macs + (n_hidden_units if count_activations else 0)
    return Resources(
        macs=macs,
        flops=flops,
        params=params,
        weight_bytes=params * bytes_per_value,
        activation_bytes=sum(widths) * bytes_per_value,
        flops_include_activations=count_activations,
    )


def gru_resources(
    in_dim: int, trunk: Sequence[int], gru_hidden: int, n_actions: int, *, count_activations: bool = False,
    bytes_per_value: int = 4,
) -> Resources:
    """Resources of an optional MLP trunk ``[in_dim, *trunk]``, a GRU cell of ``gru_hidden`` units and a linear
    head to ``n_actions`` logits (``kdmarl_teacher.distill.students.StudentGRU``); the hidden state is the state."""
    H = int(gru_hidden)
    if H < 1:
        raise ValueError(f"a GRU needs at least one hidden unit, got {gru_hidden}")
    widths = [int(in_dim), *(int(w) for w in trunk)]
    trunk_macs = sum(a * b for a, b in itertools.pairwise(widths))
    gru_in = widths[-1]
    gru_macs = 3 * H * (gru_in + H)
    head_macs = H * int(n_actions)
    macs = trunk_macs + gru_macs + head_macs
    params = trunk_macs + sum(widths[1:]) + gru_macs + 6 * H + head_macs + int(n_actions)
    extra = sum(widths[1:]) + 3 * H if count_activations else 0
    activations = sum(widths) + 3 * H + 3 * H + H + int(n_actions)  # input, trunk, gi, gh, h_out, logits
    return Resources(
        macs=macs,
        flops=2 * macs + extra,
        params=params,
        weight_bytes=params * bytes_per_value,
        activation_bytes=activations * bytes_per_value,
        flops_include_activations=count_activations,
        state_bytes=H * bytes_per_value,
    )


def linear_widths(module: nn.Module) -> list[int]:
    """Layer widths of a module whose ``nn.Linear`` layers form one chain, in registration order.

    Works for the teacher actor and the students (any MLP built from Linear + elementwise activations).
    Raises ValueError if consecutive Linear layers do not chain (then the module is not a plain MLP).
    """
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(module).__name__} has no nn.Linear layer")
    widths = [linears[0].in_features]
    for layer in linears:
        if layer.in_features != widths[-1]:
            raise ValueError(f"{type(module).__name__}: Linear layers do not form a chain ({widths} -> {layer})")
        widths.append(layer.out_features)
    return widths


def module_resources(module: nn.Module, count_activations: bool = False, bytes_per_value: int = 4) -> Resources:
    """Resources of an MLP module (chain of nn.Linear); params are counted from the module itself.

    A module with GRU cells (a recurrent teacher actor: trunk, GRU, head) is counted layer by layer with the
    GRU rule of ``gru_resources``; its LayerNorms' parameters are not counted (as masking is not)."""
    cells = [m for m in module.modules() if isinstance(m, nn.GRUCell)]
    if cells:
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        macs = sum(m.in_features * m.out_features for m in linears)
        macs += sum(3 * c.hidden_size * (c.input_size + c.hidden_size) for c in cells)
        params = sum(p.numel() for m in (*linears, *cells) for p in m.parameters())
        hidden = sum(c.hidden_size for c in cells)
        activations = linears[0].in_features + sum(m.out_features for m in linears) + 7 * hidden
        return Resources(
            macs=macs,
            flops=2 * macs + (sum(m.out_features for m in linears[:-1]) + 3 * hidden if count_activations else 0),
            params=params,
            weight_bytes=params * bytes_per_value,
            activation_bytes=activations * bytes_per_value,
            flops_include_activations=count_activations,
            state_bytes=hidden * bytes_per_value,
        )
    widths = linear_widths(module)
    res = mlp_resources(widths, count_activations=count_activations, bytes_per_value=bytes_per_value)
    params = sum(p.numel() for m in module.modules() if isinstance(m, nn.Linear) for p in m.parameters())
    return Resources(
        macs=res.macs,
        flops=res.flops,
        params=params,
        weight_bytes=params * bytes_per_value,
        activation_bytes=res.activation_bytes,
        flops_include_activations=count_activations,
    )


def measured_flops(module: nn.Module, in_dim: int, method: str = "forward") -> int:
    """FLOPs of one batch-1 call counted by ``torch.utils.flop_counter`` (for cross-checks, not for reports)."""
    x = torch.zeros(1, in_dim)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        getattr(module, method)(x)
    return int(counter.get_total_flops())
