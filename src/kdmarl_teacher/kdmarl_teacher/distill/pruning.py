"""The resource-aware option of `kdmarl distill` (`resource_aware: true`): group lasso, then prune to the budget.

Each student starts `ra_width_mult`x wider than its ladder rung; `group_lasso_penalty` (added to the loss with
weight `ra_lambda`) pushes whole hidden units to zero, each weighted by the FLOPs it costs, and at `ra_prune_at`
of the run `prune_to_budget` removes the weakest units until the student fits its hardware budget
(`students.budget_violations`, the same check the ladder uses); the rest of the run fine-tunes the pruned student.
Kept apart from the training loop so that the loop reads as rollout / update, and next to `students.py`, whose
`StudentMLP` it reshapes.
"""

from __future__ import annotations

import itertools

import torch

from kdmarl_teacher.distill.students import StudentMLP, budget_violations


def unit_groups(student: StudentMLP) -> list[tuple[torch.Tensor, float]]:
    """Per hidden layer: (L2 norm of each unit's group [H_l], FLOPs cost of one unit). A unit's group is its
    incoming weights + bias and its outgoing weights; its cost is the 2·(fan_in + fan_out) FLOPs it adds."""
    linears = [m for m in student.body if isinstance(m, torch.nn.Linear)] + [student.head]
    out = []
    for layer, nxt in itertools.pairwise(linears):
        sq = layer.weight.pow(2).sum(1) + layer.bias.pow(2) + nxt.weight.pow(2).sum(0)  # [H_l]
        out.append((sq.clamp_min(1e-12).sqrt(), 2.0 * (layer.in_features + nxt.out_features)))
    return out


def group_lasso_penalty(student: StudentMLP) -> torch.Tensor:
    """Σ_units cost_unit · ‖group_unit‖₂, costs normalized by the student's total FLOPs."""
    total = float(student.resources().flops)
    return sum(cost / total * norms.sum() for norms, cost in unit_groups(student))


@torch.no_grad()
def prune_to_budget(student: StudentMLP, budget: dict) -> StudentMLP:
    """Remove the hidden units with the smallest group norm per FLOP until the student fits ``budget``."""
    keep = [torch.ones(h, dtype=torch.bool) for h in student.hidden]
    scores = [norms / cost for norms, cost in unit_groups(student)]

    def current() -> StudentMLP:
        return StudentMLP(student.in_dim, [int(k.sum()) for k in keep], student.n_actions, student.activation)

    while budget_violations(current().resources(), budget):
        best = None
        for layer, (k, s) in enumerate(zip(keep, scores, strict=True)):
            if int(k.sum()) <= 1:
                continue
            masked = torch.where(k, s, torch.full_like(s, float("inf")))
            j = int(masked.argmin())
            if best is None or masked[j] < best[0]:
                best = (masked[j], layer, j)
        if best is None:
            break
        keep[best[1]][best[2]] = False
    small = current()
    linears = [m for m in student.body if isinstance(m, torch.nn.Linear)] + [student.head]
    new_linears = [m for m in small.body if isinstance(m, torch.nn.Linear)] + [small.head]
    prev = torch.ones(student.in_dim, dtype=torch.bool)
    for layer, new, k in zip(linears, new_linears, [*keep, torch.ones(student.n_actions, dtype=torch.bool)],
                             strict=True):
        new.weight.copy_(layer.weight[k][:, prev])
        new.bias.copy_(layer.bias[k])
        prev = k
    return small
