"""Drive kinds and velocity limits: a student's world-frame velocity -> what a mobile base accepts (pure math).

No rclpy here: the robot adapter and the fake robots use these functions, and the unit tests check them alone.

Drive kinds (fleet YAML ``drive``):

- ``holonomic``: the world-frame velocity rotated into the base frame, ``linear.x``, ``linear.y`` (Isaac Sim's
  holonomic bases, omni-wheel robots, the MPE point agents).
- ``diff_drive``: a unicycle (``ẋ = v cos θ, ẏ = v sin θ, θ̇ = ω``; TurtleBot, Jackal, anything behind
  ``ros2_controllers``' ``diff_drive_controller``), which takes only ``linear.x = v`` and ``angular.z = ω``.
  The single-integrator (world velocity) -> unicycle conversion is one of the two published in the Robotarium
  simulator, ``robotarium/robotarium_python_simulator``, ``rps/utilities/transformations.py``:

  * ``heading`` (the default; ``create_si_to_uni_dynamics(linear_velocity_gain=1,
    angular_velocity_limit=np.pi)``): ``v = k (cos θ·vx + sin θ·vy)``,
    ``ω = ω_lim · atan2(−sin θ·vx + cos θ·vy, v) / (π/2)``: turn towards the velocity (``ω_lim`` is the
    fleet's ``max_angular``, π rad/s when unset), drive its projection on the heading (backwards when it points
    behind). The base itself is the observed point.
  * ``diffeomorphism`` (``create_si_to_uni_mapping(projection_distance=0.05, angular_velocity_limit=np.pi)``):
    a virtual point ``l`` (``projection_distance``) ahead of the base, ``p = (x + l cos θ, y + l sin θ)``, is a
    single integrator: with ``v = cos θ·vx + sin θ·vy`` and ``ω = (−sin θ·vx + cos θ·vy) / l`` it moves
    exactly at ``(vx, vy)`` (:func:`unicycle_to_point_velocity` is the inverse, ``create_uni_to_si_dynamics``).
    So the adapter observes that point (:func:`control_point`) and the student drives it as it drove an MPE
    agent; only the angular limit (Robotarium clips ω at ``angular_velocity_limit``) bends the path. Exact for a
    kinematic unicycle, but a base whose linear velocity lags the command (MPE's damping, a real base's inertia)
    while its turn rate does not breaks the identity: measured with the trained spread3 students, it covers far
    fewer landmarks than heading tracking (``bench/bench_drive.py``), hence not the default.

Limits (:class:`Limits`, 0 = none): ``|linear| <= max_linear`` (the norm of ``(linear.x, linear.y)``), ``|ω| <=
max_angular``, and between two commands ``|Δlinear| <= max_linear_accel·dt``, ``|Δω| <= max_angular_accel·dt``
with ``dt`` the time since the previous command, at most one control period (a base holds its last command;
a long gap must not allow a jump). :func:`limit_command` enforces them on every command the policy drives;
a *stop* (fleet stop, stale odometry or action, a safe action, shutdown) is an exact zero sent at once, since
braking is what a base's own controller limits (``diff_drive_controller``'s deceleration limits) and a stop
must not wait for a ramp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DRIVES: tuple[str, ...] = ("holonomic", "diff_drive")
CONVERSIONS: tuple[str, ...] = ("heading", "diffeomorphism")  # the first is the default
PROJECTION_DISTANCE_M = 0.05  # Robotarium's default projection distance (create_si_to_uni_mapping)


@dataclass(frozen=True)
class Limits:
    """Velocity and acceleration limits of a base (SI units); 0 means no limit."""

    max_linear: float = 0.0  # m/s, norm of (linear.x, linear.y)
    max_angular: float = 0.0  # rad/s
    max_linear_accel: float = 0.0  # m/s^2
    max_angular_accel: float = 0.0  # rad/s^2

    def __post_init__(self) -> None:
        for name in ("max_linear", "max_angular", "max_linear_accel", "max_angular_accel"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"limit {name} must be a finite number >= 0 (0 = no limit), got {value!r}")


@dataclass(frozen=True)
class BaseCommand:
    """A velocity command in the base frame: what a Twist carries (``linear.x``, ``linear.y``, ``angular.z``)."""

    vx: float = 0.0
    vy: float = 0.0
    wz: float = 0.0

    @property
    def is_zero(self) -> bool:
        return self.vx == 0.0 and self.vy == 0.0 and self.wz == 0.0


ZERO = BaseCommand()


def world_to_base(vx: float, vy: float, yaw: float) -> tuple[float, float]:
    """A world-frame vector in the frame of a base with heading ``yaw``."""
    c, s = math.cos(yaw), math.sin(yaw)
    return c * vx + s * vy, -s * vx + c * vy


def base_to_world(vx: float, vy: float, yaw: float) -> tuple[float, float]:
    """A base-frame vector in the world frame (the inverse of :func:`world_to_base`)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return c * vx - s * vy, s * vx + c * vy


def si_to_unicycle_diffeomorphism(vx: float, vy: float, yaw: float,
                                  projection_distance: float = PROJECTION_DISTANCE_M) -> tuple[float, float]:
    """World velocity of the point ``projection_distance`` ahead -> ``(v, ω)`` (Robotarium's
    ``create_si_to_uni_mapping``, without its ω clip: :func:`limit_command` applies ``max_angular``)."""
    if not projection_distance > 0.0:
        raise ValueError(f"projection_distance must be > 0, got {projection_distance}")
    along, across = world_to_base(vx, vy, yaw)
    return along, across / projection_distance


def unicycle_to_point_velocity(v: float, w: float, yaw: float,
                               projection_distance: float = PROJECTION_DISTANCE_M) -> tuple[float, float]:
    """``(v, ω)`` -> world velocity of the point ``projection_distance`` ahead (Robotarium's
    ``create_uni_to_si_dynamics``; the inverse of :func:`si_to_unicycle_diffeomorphism`)."""
    return base_to_world(v, projection_distance * w, yaw)


def si_to_unicycle_heading(vx: float, vy: float, yaw: float, angular_velocity_limit: float = math.pi,
                           linear_velocity_gain: float = 1.0) -> tuple[float, float]:
    """World velocity -> ``(v, ω)`` by heading tracking (Robotarium's ``create_si_to_uni_dynamics``)."""
    along, across = world_to_base(vx, vy, yaw)
    v = linear_velocity_gain * along
    return v, angular_velocity_limit * math.atan2(across, v) / (math.pi / 2)


def control_point(x: float, y: float, yaw: float, projection_distance: float) -> tuple[float, float]:
    """The point ``projection_distance`` ahead of the base (Robotarium's ``uni_to_si_states``)."""
    return x + projection_distance * math.cos(yaw), y + projection_distance * math.sin(yaw)


def point_velocity(vx_base: float, vy_base: float, wz: float, yaw: float, projection_distance: float
                   ) -> tuple[float, float]:
    """World velocity of the point ``projection_distance`` ahead of a base moving with a base-frame twist
    (rigid body: ``v + ω × r`` with ``r = (l, 0)``); ``projection_distance`` 0 gives the base's own velocity."""
    return base_to_world(vx_base, vy_base + wz * projection_distance, yaw)


def _shrink(x: float, y: float, limit: float) -> tuple[float, float]:
    """``(x, y)`` scaled down to norm <= ``limit`` (exactly: never above it after rounding)."""
    norm = math.hypot(x, y)
    if norm <= limit:
        return x, y
    scale = limit / norm
    while math.hypot(x * scale, y * scale) > limit:
        scale = math.nextafter(scale, 0.0)
    return x * scale, y * scale


def _clip(value: float, limit: float) -> float:
    return max(-limit, min(limit, value))


def limit_command(desired: BaseCommand, previous: BaseCommand, dt: float, limits: Limits,
                  period: float) -> BaseCommand:
    """``desired`` within the velocity limits and, relative to ``previous`` sent ``dt`` seconds ago, within the
    acceleration limits (``dt`` capped at ``period``). A ``previous`` within the velocity limits stays so: the
    result lies between it and the clipped ``desired``. Non-finite input gives zero."""
    if not all(math.isfinite(v) for v in (desired.vx, desired.vy, desired.wz)):
        return ZERO
    vx, vy, wz = desired.vx, desired.vy, desired.wz
    if limits.max_linear > 0.0:
        vx, vy = _shrink(vx, vy, limits.max_linear)
    if limits.max_angular > 0.0:
        wz = _clip(wz, limits.max_angular)
    step = max(0.0, min(dt, period))
    if limits.max_linear_accel > 0.0:
        dx, dy = _shrink(vx - previous.vx, vy - previous.vy, limits.max_linear_accel * step)
        vx, vy = previous.vx + dx, previous.vy + dy
        if limits.max_linear > 0.0:  # rounding of previous + delta, or limits lowered at run time
            vx, vy = _shrink(vx, vy, limits.max_linear)
    if limits.max_angular_accel > 0.0:
        wz = previous.wz + _clip(wz - previous.wz, limits.max_angular_accel * step)
        if limits.max_angular > 0.0:
            wz = _clip(wz, limits.max_angular)
    return BaseCommand(vx, vy, wz)


def world_velocity_to_command(vx: float, vy: float, yaw: float, drive: str, *, conversion: str = "heading",
                              projection_distance: float = PROJECTION_DISTANCE_M,
                              angular_velocity_limit: float = math.pi) -> BaseCommand:
    """A desired world-frame velocity -> the base command of a ``drive`` (before limits)."""
    if drive == "holonomic":
        return BaseCommand(*world_to_base(vx, vy, yaw))
    if drive != "diff_drive":
        raise ValueError(f"drive must be one of {DRIVES}, got {drive!r}")
    if conversion == "diffeomorphism":
        v, w = si_to_unicycle_diffeomorphism(vx, vy, yaw, projection_distance)
    elif conversion == "heading":
        v, w = si_to_unicycle_heading(vx, vy, yaw, angular_velocity_limit)
    else:
        raise ValueError(f"conversion must be one of {CONVERSIONS}, got {conversion!r}")
    return BaseCommand(v, 0.0, w)


def unicycle_step(pose: tuple[float, float, float], v: float, w: float, dt: float) -> tuple[float, float, float]:
    """Exact integration of ``ẋ = v cos θ, ẏ = v sin θ, θ̇ = ω`` over ``dt`` at constant ``(v, ω)`` from
    ``pose = (x, y, θ)``."""
    x, y, yaw = pose
    if abs(w) < 1e-9:
        return x + v * math.cos(yaw) * dt, y + v * math.sin(yaw) * dt, yaw
    new_yaw = yaw + w * dt
    r = v / w
    return (x + r * (math.sin(new_yaw) - math.sin(yaw)), y - r * (math.cos(new_yaw) - math.cos(yaw)),
            math.atan2(math.sin(new_yaw), math.cos(new_yaw)))
