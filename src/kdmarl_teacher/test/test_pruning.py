"""Group lasso and pruning of the resource-aware distillation option (kdmarl_teacher.pruning)."""

import copy

import torch
from kdmarl_teacher.distill.pruning import group_lasso_penalty, prune_to_budget
from kdmarl_teacher.distill.students import StudentMLP, budget_violations


def test_prune_to_budget_keeps_the_function_of_live_units() -> None:
    torch.manual_seed(0)
    wide = StudentMLP(18, (32, 32), 5)
    with torch.no_grad():  # kill half of each layer's units: incoming row, bias, outgoing column
        wide.body[0].weight[16:] = 0
        wide.body[0].bias[16:] = 0
        wide.body[2].weight[:, 16:] = 0
        wide.body[2].weight[16:] = 0
        wide.body[2].bias[16:] = 0
        wide.head.weight[:, 16:] = 0
    assert group_lasso_penalty(wide) > 0
    budget = {"max_flops": 1280}
    small = prune_to_budget(copy.deepcopy(wide), budget)
    assert small.hidden == (16, 16) and not budget_violations(small.resources(), budget)
    x = torch.randn(10, 18)
    torch.testing.assert_close(small(x), wide(x))  # tanh(0) = 0: dead units contributed nothing
