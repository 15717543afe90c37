"""The student ladder: largest rung that fits every budget field; students expose forward and embed."""

import pytest
import torch
from kdmarl_teacher.distill.profiles import load_hardware
from kdmarl_teacher.distill.students import LADDER, StudentMLP, budget_violations, build_student, choose_rung


def test_largest_rung_that_fits() -> None:
    budget = {"max_flops": 1280, "max_params": 2000, "max_memory_bytes": 8192}
    choice = choose_rung(18, 5, budget)
    assert choice is not None and choice.hidden == (16, 16)
    assert choice.resources.flops <= 1280 and choice.margins["max_flops"] >= 1.0
    assert choice.rejected_larger and "max_flops" in choice.rejected_larger[0]["exceeds"]
    # Every larger rung violates the budget.
    bigger = [h for h in LADDER if StudentMLP(18, h, 5).resources().flops > choice.resources.flops]
    assert all(budget_violations(StudentMLP(18, h, 5).resources(), budget) for h in bigger)


def test_memory_and_latency_bind_too() -> None:
    assert choose_rung(18, 5, {"max_flops": 1e9, "max_memory_bytes": 3000}).hidden == (16, 16)
    lat = choose_rung(18, 5, {"max_latency_ms": 0.001, "sustained_flops_per_s": 1e9})  # 1000 FLOPs
    assert lat is not None and lat.resources.flops <= 1000
    assert choose_rung(18, 5, {"max_flops": 10}) is None


def test_shipped_hardware_profiles_span_two_orders() -> None:
    flops = sorted(load_hardware(n)["max_flops"] for n in ("mcu_cortex_m4", "jetson_nano", "jetson_orin"))
    assert flops[-1] / flops[0] >= 90
    hidden = [choose_rung(18, 5, load_hardware(n)).hidden for n in ("mcu_cortex_m4", "jetson_nano", "jetson_orin")]
    assert len(set(hidden)) == 3


def test_student_forward_embed_and_rebuild() -> None:
    s = StudentMLP(14, (16, 16), 5)
    x = torch.randn(7, 14)
    assert s(x).shape == (7, 5) and s.embed(x).shape == (7, 16)
    clone = build_student(s.arch())
    clone.load_state_dict(s.state_dict())
    torch.testing.assert_close(clone(x), s(x))
    with pytest.raises(ValueError):
        StudentMLP(14, (), 5)
