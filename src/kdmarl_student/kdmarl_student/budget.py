"""The budget rule, defined once: do a model's figures fit the hardware profile it was built for?

Used when a manifest is written (analytic FLOPs, parameters, memory), when a student node reports (the same
plus its p99 latency measured on the robot) and by the offline side. Pure Python: the manifest reader
imports it, and a manifest check needs neither psutil nor numpy's meters (docs/ARCHITECTURE.md, memory).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Budget field -> the resource it bounds (hardware profiles and manifests use the field names).
BUDGET_FIELDS: tuple[tuple[str, str], ...] = (
    ("max_flops", "flops"), ("max_params", "params"), ("max_memory_bytes", "memory"), ("max_latency_ms", "latency"),
)


def budget_excess(
    budget: Mapping[str, Any] | None, used: Mapping[str, float | None]
) -> tuple[dict[str, bool], dict[str, tuple[float, float]]]:
    """The rule itself: every bounded quantity that has a figure is compared with its limit.

    ``used`` maps ``flops``, ``params``, ``memory``, ``latency`` to figures (None = not known, e.g. latency
    before it was measured or estimated). Returns ``(checks, excess)``: whether each checked quantity fits,
    and for those that do not, ``{budget field: (used, allowed)}``.
    """
    checks: dict[str, bool] = {}
    excess: dict[str, tuple[float, float]] = {}
    for field, name in BUDGET_FIELDS:
        limit, value = (budget or {}).get(field), used.get(name)
        if limit is not None and value is not None:
            checks[name] = float(value) <= float(limit)
            if not checks[name]:
                excess[field] = (float(value), float(limit))
    return checks, excess


def check_budget(
    budget: Mapping[str, Any] | None, resources: Mapping[str, Any], latency_p99_ms: float | None
) -> tuple[bool | None, dict[str, bool]]:
    """Compare the figures of a model with its hardware budget (:func:`budget_excess` on a manifest entry).

    Returns ``(met, checks)``: ``checks`` maps each constrained quantity (``flops``, ``params``,
    ``memory``, ``latency``) to whether it fits; ``met`` is ``None`` when nothing is constrained (no
    budget), and latency counts only when it has been measured.
    """
    checks, _ = budget_excess(budget, {"flops": resources.get("flops_per_decision"), "params": resources.get("params"),
                                       "memory": resources.get("memory_bytes"), "latency": latency_p99_ms})
    if not checks:
        return None, {}
    return all(checks.values()), checks
