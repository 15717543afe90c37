"""Self-measurement of a running policy: latency percentiles, process CPU and memory.

These are the figures a student node publishes (``ResourceUsage`` at 1 Hz and ``/diagnostics``). Latency
is kept in a fixed-size ring buffer so the percentiles describe the recent past at constant memory, and
is timed with a steady clock (``time.perf_counter``), never with sim time, which jumps on reset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psutil


class LatencyMeter:
    """Ring buffer of the last ``capacity`` durations (seconds) with p50/p99/max in milliseconds."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._buffer = np.zeros(capacity, dtype=np.float64)
        self._next = 0
        self._filled = 0
        self.total = 0  # every call ever recorded, for rates

    def record(self, seconds: float) -> None:
        self._buffer[self._next] = seconds
        self._next = (self._next + 1) % self._buffer.size
        self._filled = min(self._filled + 1, self._buffer.size)
        self.total += 1

    def __len__(self) -> int:
        return self._filled

    def reset(self) -> None:
        self._next = self._filled = self.total = 0

    def summary(self) -> dict[str, float | int | None]:
        """p50/p99/max over the window in ms (``None`` before the first call) and the window size."""
        if self._filled == 0:
            return {"p50_ms": None, "p99_ms": None, "max_ms": None, "count": 0}
        window = self._buffer[: self._filled] * 1e3
        p50, p99 = np.percentile(window, [50.0, 99.0])
        return {"p50_ms": float(p50), "p99_ms": float(p99), "max_ms": float(window.max()), "count": self._filled}


class ProcessMeter:
    """CPU % and resident memory of this process (psutil).

    ``cpu_percent`` is measured between successive calls (psutil's semantics), so the first call
    primes it; it is per core (100 % = one core busy), which is what matters for a one-thread policy.
    """

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)

    def cpu_percent(self) -> float:
        return float(self._process.cpu_percent(None))

    def rss_bytes(self) -> int:
        return int(self._process.memory_info().rss)


@dataclass(frozen=True)
class ResourceSnapshot:
    """What a node reports about itself; field names follow ``kdmarl_msgs/ResourceUsage`` where it can."""

    agent: str
    decisions: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    cpu_percent: float
    rss_bytes: int
    flops_per_decision: int
    params: int
    memory_bytes: int
    budget_met: bool | None
    budget_checks: dict[str, bool]
    rejected_observations: int
    provider: str
    non_finite_outputs: int = 0  # decisions refused because the model returned NaN/Inf logits
