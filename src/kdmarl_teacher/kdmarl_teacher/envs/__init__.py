"""Batched MPE environments for training: a torch port of mpe2's scenarios and a PettingZoo adapter.

``make_env("simple_spread", num_envs=B, seed=0, device="cpu", dtype=torch.float32, N=3)`` returns B
environments stepped as tensors (the contract: ``envs.contract.BatchedEnv``). A scenario given as an import path
(``"mpe2.simple_spread_v3"``) runs B copies of that PettingZoo ParallelEnv behind the same interface, and
``"smax:<map>"`` (``"smax:3m"``, ``"smax:2s3z"``) B JaxMARL SMAX battles (``envs/smax.py``, imported lazily:
only SMAX pays for jax), and ``"grf:<scenario>"`` B Google Research Football games stepped in worker processes
or Ray actors (``envs/grf.py``; ``workers``, ``backend`` and ``address`` are its stepping options, the rest
scenario parameters).
"""

from __future__ import annotations

from typing import Any

import torch
from kdmarl_student.scenarios import is_grf, is_smax, scenario_spec

from .contract import BatchedEnv
from .core import BatchedMPEEnv, Scenario, WorldState
from .pettingzoo_adapter import PettingZooBatchedEnv
from .registry import SCENARIO_CLASSES


def make_env(
    scenario: str,
    num_envs: int = 1,
    seed: int | None = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    **params: Any,
) -> BatchedEnv:
    """The torch port for a scenario name, the PettingZoo adapter for an import path (contains a dot), or the
    SMAX adapter for ``smax:<map>``, the GRF adapter for ``grf:<scenario>``. Unknown names or parameters raise
    ValueError naming what was expected.
    """
    if is_smax(scenario):
        from .smax import SmaxBatchedEnv  # noqa: PLC0415 (jax only for SMAX)

        return SmaxBatchedEnv(scenario, num_envs, seed=seed, device=device, dtype=dtype, **params)
    if is_grf(scenario):
        from .grf import GrfBatchedEnv  # noqa: PLC0415 (gfootball is an optional extra)

        return GrfBatchedEnv(scenario, num_envs, seed=seed, device=device, dtype=dtype, **params)
    if isinstance(scenario, str) and "." in scenario:
        return PettingZooBatchedEnv(scenario, num_envs, seed=seed, device=device, dtype=dtype, **params)
    spec = scenario_spec(scenario, **params)
    return BatchedMPEEnv(SCENARIO_CLASSES[spec.name](spec), num_envs, seed=seed, device=device, dtype=dtype)


__all__ = ["SCENARIO_CLASSES", "BatchedEnv", "BatchedMPEEnv", "PettingZooBatchedEnv", "Scenario", "WorldState",
           "make_env"]
