"""The drive math alone (issue 24): the single-integrator -> unicycle conversions, the limiter, the unicycle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from kdmarl_bringup.drive import (
    ZERO,
    BaseCommand,
    Limits,
    control_point,
    limit_command,
    point_velocity,
    si_to_unicycle_diffeomorphism,
    si_to_unicycle_heading,
    unicycle_step,
    unicycle_to_point_velocity,
    world_velocity_to_command,
)


def test_diffeomorphism_inverse_moves_the_point_at_the_asked_velocity() -> None:
    """(vx, vy) -> (v, ω) -> velocity of the point l ahead gives (vx, vy) back, for any heading."""
    rng = np.random.default_rng(0)
    for _ in range(1000):
        vx, vy, yaw = rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(-math.pi, math.pi)
        ell = rng.uniform(0.01, 0.5)
        v, w = si_to_unicycle_diffeomorphism(vx, vy, yaw, ell)
        assert unicycle_to_point_velocity(v, w, yaw, ell) == pytest.approx((vx, vy), abs=1e-12)
        # the same through the rigid-body velocity of the point (what the adapter observes from odometry)
        assert point_velocity(v, 0.0, w, yaw, ell) == pytest.approx((vx, vy), abs=1e-12)
    with pytest.raises(ValueError, match="projection_distance"):
        si_to_unicycle_diffeomorphism(1.0, 0.0, 0.0, 0.0)


def test_diffeomorphism_matches_robotarium_formula_and_drives_a_unicycle_point_exactly() -> None:
    """v = cos θ vx + sin θ vy, ω = (−sin θ vx + cos θ vy)/l; integrating the unicycle, the point follows the
    single integrator (small steps, so only the integration error remains)."""
    yaw, ell = 0.7, 0.05
    v, w = si_to_unicycle_diffeomorphism(0.3, -0.2, yaw, ell)
    assert v == pytest.approx(math.cos(yaw) * 0.3 + math.sin(yaw) * -0.2)
    assert w == pytest.approx((-math.sin(yaw) * 0.3 + math.cos(yaw) * -0.2) / ell)
    pose = (0.0, 0.0, yaw)
    start = np.array(control_point(*pose, ell))
    for _ in range(2000):  # 1 s at dt 0.5 ms
        v, w = si_to_unicycle_diffeomorphism(0.3, -0.2, pose[2], ell)
        pose = unicycle_step(pose, v, w, 0.0005)
    assert np.array(control_point(*pose, ell)) - start == pytest.approx([0.3, -0.2], abs=1e-3)


def test_heading_tracking_turns_towards_and_drives_along() -> None:
    v, w = si_to_unicycle_heading(1.0, 0.0, 0.0, angular_velocity_limit=2.0)
    assert (v, w) == pytest.approx((1.0, 0.0))
    v, w = si_to_unicycle_heading(0.0, 1.0, 0.0, angular_velocity_limit=2.0)  # 90° to the left
    assert v == pytest.approx(0.0, abs=1e-12) and w == pytest.approx(2.0)
    v, w = si_to_unicycle_heading(0.0, -1.0, 0.0, angular_velocity_limit=2.0)
    assert w == pytest.approx(-2.0)


def test_unicycle_step_is_exact_on_a_circle() -> None:
    pose = (1.0, 0.0, math.pi / 2)  # on the unit circle, heading counter-clockwise
    for _ in range(10):
        pose = unicycle_step(pose, 1.0, 1.0, math.pi / 20)  # a quarter turn in 10 steps
    assert pose == pytest.approx((0.0, 1.0, math.pi), abs=1e-12)
    assert unicycle_step((0.0, 0.0, 0.0), 2.0, 0.0, 0.5) == pytest.approx((1.0, 0.0, 0.0))


@pytest.mark.parametrize("drive", ["holonomic", "diff_drive"])
def test_limits_are_never_exceeded_under_random_commands(drive: str) -> None:
    """Random desired velocities, headings, time steps and limits: every output within the velocity limits, and
    within the acceleration limits of the previous output (dt capped at the period). Velocity limits hold exactly;
    a change is checked to 1e-12 (the rounding of out - previous, far below any base's resolution)."""
    rng = np.random.default_rng(1)
    for trial in range(200):
        limits = Limits(*rng.uniform(0.05, 3.0, size=4))
        period = rng.uniform(0.01, 0.2)
        prev, checked = ZERO, 0
        for _ in range(200):
            vx, vy = rng.normal(0, 5, size=2)
            if trial % 7 == 0:
                vx = vy = float(rng.choice([0.0, 1e9, -1e9]))
            desired = world_velocity_to_command(vx, vy, rng.uniform(-4, 4), drive,
                                                conversion=("diffeomorphism", "heading")[trial % 2])
            dt = float(rng.choice([rng.uniform(0, period), rng.uniform(period, 5.0)]))
            out = limit_command(desired, prev, dt, limits, period)
            step = min(dt, period)
            assert math.hypot(out.vx, out.vy) <= limits.max_linear
            assert abs(out.wz) <= limits.max_angular
            assert math.hypot(out.vx - prev.vx, out.vy - prev.vy) <= limits.max_linear_accel * step + 1e-12
            assert abs(out.wz - prev.wz) <= limits.max_angular_accel * step + 1e-12
            if drive == "diff_drive":
                assert out.vy == 0.0
            prev, checked = out, checked + 1
        assert checked == 200


def test_limits_pass_what_is_within_them_and_zero_means_none() -> None:
    cmd = BaseCommand(0.5, 0.0, 0.5)
    assert limit_command(cmd, ZERO, 0.1, Limits(1.0, 1.0, 10.0, 10.0), 0.1) == cmd
    assert limit_command(BaseCommand(50.0, 0.0, -80.0), ZERO, 0.1, Limits(), 0.1) == BaseCommand(50.0, 0.0, -80.0)
    out = limit_command(BaseCommand(3.0, 4.0, 0.0), ZERO, 0.1, Limits(max_linear=1.0), 0.1)
    assert (out.vx, out.vy) == pytest.approx((0.6, 0.8))  # direction kept
    assert limit_command(BaseCommand(math.nan, 0.0, 0.0), cmd, 0.1, Limits(), 0.1) == ZERO
    with pytest.raises(ValueError, match="max_linear"):
        Limits(max_linear=-1.0)
