"""The budget rule, defined once: do a model's figures fit the hardware profile it was built for?

Used when a manifest is written (analytic FLOPs, parameters, memory), when a student node reports (the same
plus its p99 latency measured on the robot) and by the offline side. Pure Python: the manifest reader
imports it, and a manifest check needs neither psutil nor numpy's meters (docs/ARCHITECTURE.md, memory).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def check_budget(
    budget: Mapping[str, Any] | None, resources: Mapping[str, Any], latency_p99_ms: float | None
) -> tuple[bool | None, dict[str, bool]]:
    """Compare the figures of a model with its hardware budget.

    Returns ``(met, checks)``: ``checks`` maps each constrained quantity (``flops``, ``params``,
    ``memory``, ``latency``) to whether it fits; ``met`` is ``None`` when nothing is constrained (no
    budget), and latency counts only when it has been measured.
    """
    if not budget:
        return None, {}
    checks: dict[str, bool] = {}
    pairs = (
        ("flops", "max_flops", resources.get("flops_per_decision")),
        ("params", "max_params", resources.get("params")),
        ("memory", "max_memory_bytes", resources.get("memory_bytes")),
        ("latency", "max_latency_ms", latency_p99_ms),
    )
    for name, key, value in pairs:
        limit = budget.get(key)
        if limit is not None and value is not None:
            checks[name] = float(value) <= float(limit)
    if not checks:
        return None, {}
    return all(checks.values()), checks
