"""Running normalization of value targets, as `ValueNorm` in the MAPPO reference code (marlbenchmark/on-policy).

Why: MPE returns drift from about -60 (random) to -20 per agent during training; a critic regressing raw returns
chases a moving scale. The critic predicts *normalized* values; targets are normalized with debiased exponential
running moments (beta close to 1 means an almost plain running average), and values are denormalized for GAE.
"""

from __future__ import annotations

import torch
from torch import nn


class ValueNorm(nn.Module):
    """Debiased exponential running mean / mean-of-squares over a batch of scalar targets."""

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5, var_floor: float = 1e-2) -> None:
        super().__init__()
        self.beta = beta
        self.epsilon = epsilon
        self.var_floor = var_floor
        # Buffers (not parameters): they move with .to(device) and are saved in state_dict, never optimized.
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_mean_sq", torch.zeros(()))
        self.register_buffer("debiasing_term", torch.zeros(()))

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        debias = self.debiasing_term.clamp(min=self.epsilon)
        mean = self.running_mean / debias
        mean_sq = self.running_mean_sq / debias
        var = (mean_sq - mean**2).clamp(min=self.var_floor)
        return mean, var

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """x: any shape; every element is one sample of the target."""
        x = x.detach().to(self.running_mean.dtype)
        w = self.beta
        self.running_mean.mul_(w).add_(x.mean() * (1.0 - w))
        self.running_mean_sq.mul_(w).add_((x**2).mean() * (1.0 - w))
        self.debiasing_term.mul_(w).add_(1.0 - w)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.mean_var()
        return (x - mean) / var.sqrt()

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.mean_var()
        return x * var.sqrt() + mean


class IdentityNorm(nn.Module):
    """Stand-in when `value_norm: false`, so the training loop has one code path."""

    def update(self, x: torch.Tensor) -> None:
        return None

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x
