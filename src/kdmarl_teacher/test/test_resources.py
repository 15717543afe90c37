"""Analytic FLOPs/params/memory vs torch's own counters."""

import pytest
import torch
from kdmarl_teacher.core.resources import linear_widths, measured_flops, mlp_resources, module_resources
from kdmarl_teacher.distill.students import LADDER, StudentMLP
from torch import nn


@pytest.mark.parametrize("hidden", [(4,), (16, 16), (32, 32), (128, 128)])
def test_analytic_flops_match_flop_counter(hidden: tuple[int, ...]) -> None:
    student = StudentMLP(18, hidden, 5)
    res = student.resources()
    assert res.flops == 2 * res.macs
    assert res.flops == measured_flops(student, 18)
    assert res.params == sum(p.numel() for p in student.parameters())
    assert res.memory_bytes == 4 * res.params + 4 * (18 + sum(hidden) + 5)


def test_counting_rules() -> None:
    res = mlp_resources([18, 16, 16, 5])
    assert res.macs == 18 * 16 + 16 * 16 + 16 * 5
    assert mlp_resources([18, 16, 16, 5], count_activations=True).flops == res.flops + 32
    seq = nn.Sequential(nn.LayerNorm(21), nn.Linear(21, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                        nn.Linear(128, 5))
    assert linear_widths(seq) == [21, 128, 128, 5]
    assert module_resources(seq).macs == 21 * 128 + 128 * 128 + 128 * 5


def test_teacher_actor_resources() -> None:
    from kdmarl_teacher.core.networks import Actor

    actor = Actor(obs_dim_max=18, n_agents=3, n_actions=[5, 5, 5], hidden=[128, 128])
    res = module_resources(actor)
    # flop_counter also counts the action-mask matmul (one-hot [1, 3] @ valid [3, 5]); LayerNorm is not counted.
    assert measured_flops(actor, actor.in_dim) == res.flops + 2 * 3 * 5
    assert res.flops == 2 * (21 * 128 + 128 * 128 + 128 * 5)
    small = StudentMLP(18, (16, 16), 5).resources()
    assert res.flops / small.flops >= 30.0  # the ladder reaches the >= 30x target vs a 2x128 teacher


def test_ladder_is_sorted_by_cost() -> None:
    flops = [mlp_resources([18, *h, 5]).flops for h in LADDER]
    assert flops == sorted(flops)
    assert torch.is_tensor(StudentMLP(3, (8,), 3)(torch.zeros(2, 3)))
