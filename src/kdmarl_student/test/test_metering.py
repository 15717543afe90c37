"""Latency ring buffer, process meter and budget checks."""

from __future__ import annotations

import os

import numpy as np
import pytest
from kdmarl_student.budget import check_budget
from kdmarl_student.metering import LatencyMeter, ProcessMeter


def test_ring_buffer_keeps_the_last_window() -> None:
    meter = LatencyMeter(capacity=100)
    assert meter.summary() == {"p50_ms": None, "p99_ms": None, "max_ms": None, "count": 0}
    for _ in range(1000):
        meter.record(1.0)  # old, slow calls fall out of the window
    for value in np.linspace(0.001, 0.1, 100):
        meter.record(float(value))
    summary = meter.summary()
    assert summary["count"] == 100 and meter.total == 1100
    assert summary["max_ms"] == pytest.approx(100.0)
    assert summary["p50_ms"] == pytest.approx(np.percentile(np.linspace(1, 100, 100), 50))
    assert summary["p99_ms"] == pytest.approx(np.percentile(np.linspace(1, 100, 100), 99))


def test_process_meter_reads_this_process() -> None:
    """RSS agrees with /proc and CPU % (per core, since the previous call) with os.times() over a busy loop, both
    read without psutil (on a shared machine the loop may get much less than a core: compared, not assumed)."""
    import time

    meter = ProcessMeter()
    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert abs(meter.rss_bytes() - rss) < 0.1 * rss, (meter.rss_bytes(), rss)
    meter.cpu_percent()
    wall0, cpu0 = time.perf_counter(), os.times()
    while time.perf_counter() < wall0 + 1.0:
        pass
    measured = meter.cpu_percent()
    cpu1, wall1 = os.times(), time.perf_counter()
    expected = 100.0 * (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (wall1 - wall0)
    assert expected > 1.0 and abs(measured - expected) < 5.0 + 0.25 * expected, (measured, expected)


def test_budget_checks() -> None:
    resources = {"flops_per_decision": 1000, "params": 600, "memory_bytes": 4000}
    assert check_budget(None, resources, 0.1) == (None, {})
    assert check_budget({"max_flops": None}, resources, 0.1) == (None, {})
    met, checks = check_budget({"max_flops": 1000, "max_params": 500, "max_latency_ms": 1.0}, resources, 0.5)
    assert met is False and checks == {"flops": True, "params": False, "latency": True}
    met, checks = check_budget({"max_flops": 4000, "max_latency_ms": 1.0}, resources, None)
    assert met is True and checks == {"flops": True}  # latency not measured yet: not judged


def test_budget_excess_names_what_is_over_and_by_how_much() -> None:
    """The one rule behind the manifest's 'met', the node's report and the teacher's ladder."""
    from kdmarl_student.budget import budget_excess

    budget = {"max_flops": 1000, "max_params": 500, "max_memory_bytes": None, "max_latency_ms": 1.0}
    checks, excess = budget_excess(budget, {"flops": 1248, "params": 400, "memory": 10**9, "latency": 2.5})
    assert checks == {"flops": False, "params": True, "latency": False}  # memory is unbounded here
    assert excess == {"max_flops": (1248.0, 1000.0), "max_latency_ms": (2.5, 1.0)}
    assert budget_excess(budget, {"flops": 10, "params": 10, "latency": None}) == ({"flops": True, "params": True}, {})
