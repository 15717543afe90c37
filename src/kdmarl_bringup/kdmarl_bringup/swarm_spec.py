"""What a swarm is made of: launch arguments + bundle manifest (+ optional fleet YAML) -> node specs.

``launch/swarm.launch.py`` (real ROS 2 with launch_ros) and the ``kdmarl-swarm`` runner (machines without
the ``ros2`` CLI) both call :func:`swarm_nodes`, so the two ways of starting a swarm cannot drift apart,
and the logic is tested here without launch_ros. This module imports neither rclpy nor launch.

Backends (DESIGN.md section 7, Crazyswarm2's ``backend`` switch behind one topic API):

- ``mpe``: the simulation bridge steps the real mpe2 environment; one student per agent in namespace
  ``/<robot>`` (the agent's name unless a fleet says otherwise). ``use_sim_time`` on; the bridge is the
  ``/clock`` source.
- ``isaac``: Isaac Sim's multi-robot ROS 2 bridge publishes ``/<robot>/odom`` and consumes
  ``/<robot>/cmd_vel``; per robot a robot adapter and a student. ``use_sim_time`` on (Isaac publishes
  ``/clock``).
- ``real``: as ``isaac`` against real robots; wall time.
- ``fake``: as ``real`` with a fake kinematic robot per robot standing in for the simulator (tests, demos).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kdmarl_student.manifest import load_manifest
from kdmarl_student.scenarios import MODES, is_smax

from kdmarl_bringup.drive import CONVERSIONS, DRIVES
from kdmarl_bringup.fleet_updates_spec import load_updates, with_updaters

BACKENDS: tuple[str, ...] = ("mpe", "isaac", "real", "fake")
SIM_TIME_BACKENDS: frozenset[str] = frozenset({"mpe", "isaac"})

# Every launch argument with its default and description: swarm.launch.py declares exactly these.
LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    "bundle": ("", "Bundle directory (manifest.json + agent_*.onnx)."),
    "backend": ("mpe", "mpe (simulation bridge) | isaac (Isaac Sim odom/cmd_vel) | real | fake (kinematic robots)."),
    "mode": ("lockstep", "lockstep (evaluation, mpe only) | realtime (fixed rate, latest action wins)."),
    "rate": ("10.0", "Control rate in Hz (realtime bridge, adapters, student watchdog)."),
    "monitor": ("true", "Start the resource monitor."),
    "log_dir": ("log/swarm", "Directory for the monitor's CSV, summary, PNG and MCAP."),
    "params_file": ("", "Parameters YAML ('/**:' section plus per-robot overrides); default: config/swarm.yaml."),
    "fleet": ("", "Optional fleet YAML mapping robots to agents, with 'enabled' flags."),
    "episodes": ("0", "Episodes the bridge runs before it exits (0 = until shut down)."),
    "seed": ("1000", "Seed of the first episode; episode k uses seed + k (the offline evaluation's convention)."),
    "use_sim_time": ("auto", "auto (true for mpe and isaac) | true | false."),
    "record_mcap": ("false", "Record the run to MCAP in log_dir (monitor)."),
    "drive": ("", "Drive of the robots whose fleet (entry or defaults) sets none: holonomic | diff_drive "
                  "(empty: the params file's, holonomic)."),
}

# The drive fields of a fleet entry (or of its 'defaults'), with their type check: the robot adapter and the fake
# robot declare parameters of these names (kdmarl_bringup.base_io, robot_adapter).
DRIVE_FIELDS: dict[str, str] = {
    "drive": f"one of {DRIVES}",
    "conversion": f"one of {CONVERSIONS}",
    "projection_distance": "a number > 0 (metres)",
    "max_linear": "a number >= 0 (m/s; 0 = no limit)",
    "max_angular": "a number >= 0 (rad/s; 0 = no limit)",
    "max_linear_accel": "a number >= 0 (m/s^2; 0 = no limit)",
    "max_angular_accel": "a number >= 0 (rad/s^2; 0 = no limit)",
    "cmd_vel_stamped": "true or false",
    "cmd_vel_frame_id": "a string (frame of a stamped cmd_vel; empty = <robot>/base_link)",
}
ROBOT_FIELDS: tuple[str, ...] = ("name", "agent", "enabled", "initial_pose", *DRIVE_FIELDS)


@dataclass(frozen=True)
class SwarmArgs:
    """Resolved launch arguments (typed); :func:`parse_args` turns launch strings into this."""

    bundle: str
    backend: str = "mpe"
    mode: str = "lockstep"
    rate: float = 10.0
    monitor: bool = True
    log_dir: str = "log/swarm"
    params_file: str = ""
    fleet: str = ""
    episodes: int = 0
    seed: int = 1000
    use_sim_time: bool | None = None  # None: decided by the backend
    record_mcap: bool = False
    drive: str = ""  # default drive of robots whose fleet entry sets none

    @property
    def sim_time(self) -> bool:
        return self.backend in SIM_TIME_BACKENDS if self.use_sim_time is None else self.use_sim_time


@dataclass(frozen=True)
class Robot:
    """One fleet entry: the robot's namespace, the bundle agent it runs, where it starts (fake backend: [x, y] or
    [x, y, yaw]), and its drive fields (:data:`DRIVE_FIELDS`, only those the fleet sets: the rest are the params
    file's)."""

    name: str
    agent: str
    enabled: bool = True
    initial_pose: tuple[float, ...] = (0.0, 0.0)
    drive: dict[str, Any] = field(default_factory=dict)


@dataclass
class NodeSpec:
    """One node to start, independent of how: launch_ros ``Node`` or a runner subprocess."""

    package: str
    executable: str  # console script (launch_ros)
    module: str  # ``python -m`` module (runner)
    name: str
    namespace: str = ""  # without leading slash; "" = root
    parameters: dict[str, Any] = field(default_factory=dict)  # overrides, applied after the params file
    role: str = ""  # student | bridge | adapter | robot | monitor

    @property
    def fqn(self) -> str:
        """Fully qualified node name, the key of a per-node section in a params YAML."""
        return f"/{self.namespace}/{self.name}" if self.namespace else f"/{self.name}"


def _as_bool(value: str | bool, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"launch argument {name!r} must be true or false, got {value!r}")


def parse_args(values: dict[str, str]) -> SwarmArgs:
    """Launch-argument strings (as LaunchConfiguration gives them) -> SwarmArgs; ValueError names the argument."""
    unknown = sorted(set(values) - set(LAUNCH_ARGUMENTS))
    if unknown:
        raise ValueError(f"unknown launch argument(s) {unknown}; expected a subset of {sorted(LAUNCH_ARGUMENTS)}")
    v = {k: str(values.get(k, default)) for k, (default, _) in LAUNCH_ARGUMENTS.items()}
    if not v["bundle"]:
        raise ValueError("launch argument 'bundle' is required (a directory with manifest.json)")
    if v["backend"] not in BACKENDS:
        raise ValueError(f"launch argument 'backend' must be one of {BACKENDS}, got {v['backend']!r}")
    if v["mode"] not in MODES:
        raise ValueError(f"launch argument 'mode' must be one of {MODES}, got {v['mode']!r}")
    if v["mode"] == "lockstep" and v["backend"] != "mpe":
        raise ValueError("mode 'lockstep' needs backend 'mpe' (robots and Isaac Sim run in realtime)")
    try:
        rate = float(v["rate"])
        episodes = int(v["episodes"])
        seed = int(v["seed"])
    except ValueError as err:
        raise ValueError(f"launch arguments rate/episodes/seed must be numbers: {err}") from None
    if not 0.1 <= rate <= 1000.0:
        raise ValueError(f"launch argument 'rate' must be in [0.1, 1000] Hz, got {rate}")
    if episodes < 0:
        raise ValueError(f"launch argument 'episodes' must be >= 0, got {episodes}")
    if v["drive"] and v["drive"] not in DRIVES:
        raise ValueError(f"launch argument 'drive' must be one of {DRIVES} (or empty), got {v['drive']!r}")
    sim = None if v["use_sim_time"].lower() == "auto" else _as_bool(v["use_sim_time"], "use_sim_time")
    return SwarmArgs(
        bundle=v["bundle"],
        backend=v["backend"],
        mode=v["mode"],
        rate=rate,
        monitor=_as_bool(v["monitor"], "monitor"),
        log_dir=v["log_dir"],
        params_file=v["params_file"],
        fleet=v["fleet"],
        episodes=episodes,
        seed=seed,
        use_sim_time=sim,
        record_mcap=_as_bool(v["record_mcap"], "record_mcap"),
        drive=v["drive"],
    )


def read_manifest(bundle: str | Path) -> dict[str, Any]:
    """The bundle's manifest, read and validated by the runtime's one reader (bounded read, schema, cross-field
    rules; models are not opened: each student node verifies its own). A ``BundleError`` is a ``ValueError``
    naming the file and field."""
    return load_manifest(bundle).data


def manifest_agents(manifest: dict[str, Any]) -> list[str]:
    """Agent names in the bundle, in the environment's order."""
    return [str(a["name"]) for a in manifest["agents"]]


def _drive_fields(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """The drive fields of a fleet entry, type-checked; ValueError names the field and what it must be."""
    out: dict[str, Any] = {}
    for key, expected in DRIVE_FIELDS.items():
        if key not in entry:
            continue
        value = entry[key]
        if key == "drive":
            ok = value in DRIVES
        elif key == "conversion":
            ok = value in CONVERSIONS
        elif key == "cmd_vel_stamped":
            ok = isinstance(value, bool)
        elif key == "cmd_vel_frame_id":
            ok = isinstance(value, str)
        else:
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  and (value > 0 if key == "projection_distance" else value >= 0))
            value = float(value) if ok else value
        if not ok:
            raise ValueError(f"{where}.{key} must be {expected}, got {value!r}")
        out[key] = value
    return out


def load_fleet(path: str | Path, agents: list[str]) -> list[Robot]:
    """Read a fleet YAML (``robots: [{name, agent, enabled, initial_pose, <drive fields>}]``, optional
    ``defaults: {<drive fields>}``) and check it against the bundle.

    Every robot must name a bundle agent, names and agents must be unique; ``enabled: false`` keeps a robot
    in the file without starting its nodes (Crazyswarm2's convention). Drive fields (:data:`DRIVE_FIELDS`) in
    ``defaults`` apply to every robot that does not set them itself; an unknown field is refused (a typo in a
    limit must not silently leave a robot unlimited).
    """
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: fleet file not found") from None
    robots = data.get("robots") if isinstance(data, dict) else None
    if not isinstance(robots, list) or not robots:
        raise ValueError(f"{path}: field 'robots' must be a non-empty list")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict) or set(defaults) - set(DRIVE_FIELDS):
        raise ValueError(f"{path}: field 'defaults' must be a mapping of drive fields {sorted(DRIVE_FIELDS)}, got "
                         f"{defaults!r}")
    defaults = _drive_fields(defaults, f"{path}: defaults")
    out: list[Robot] = []
    for i, entry in enumerate(robots):
        if not isinstance(entry, dict) or "name" not in entry or "agent" not in entry:
            raise ValueError(f"{path}: robots[{i}] needs 'name' and 'agent'")
        unknown = sorted(set(entry) - set(ROBOT_FIELDS))
        if unknown:
            raise ValueError(f"{path}: robots[{i}] has unknown field(s) {unknown}; expected {list(ROBOT_FIELDS)}")
        if entry["agent"] not in agents:
            raise ValueError(f"{path}: robots[{i}].agent {entry['agent']!r} is not in the bundle ({agents})")
        pose = entry.get("initial_pose", [0.0, 0.0])
        if not (isinstance(pose, list) and len(pose) in (2, 3)):
            raise ValueError(f"{path}: robots[{i}].initial_pose must be [x, y] or [x, y, yaw]")
        out.append(Robot(str(entry["name"]), str(entry["agent"]), bool(entry.get("enabled", True)),
                         tuple(float(p) for p in pose),
                         {**defaults, **_drive_fields(entry, f"{path}: robots[{i}]")}))
    for attr in ("name", "agent"):
        values = [getattr(r, attr) for r in out]
        if len(set(values)) != len(values):
            raise ValueError(f"{path}: robot {attr}s must be unique, got {values}")
    return out


def check_fleet_fits(robots: list[Robot], agents: list[str]) -> None:
    """A fleet is at most the bundle's team: every robot runs a distinct bundle agent (issue 22: a fleet larger than
    the team would start more nodes than the bundle has policies). The manifest's team itself is the scenario's
    (``kdmarl_student.manifest.check_team``, run by :func:`read_manifest`)."""
    if len(robots) > len(agents):
        raise ValueError(f"a fleet of {len(robots)} robots for a team of {len(agents)} agents ({agents}): one robot "
                         "per bundle agent at most")
    unknown = sorted({r.agent for r in robots} - set(agents))
    if unknown:
        raise ValueError(f"fleet robots run agents {unknown} that are not in the bundle ({agents})")
    taken = [r.agent for r in robots]
    if len(set(taken)) != len(taken):
        raise ValueError(f"fleet robots must run distinct agents, got {taken}")


def default_fleet(agents: list[str]) -> list[Robot]:
    """Without a fleet file: one enabled robot per agent, namespaced by the agent's name."""
    return [Robot(a, a) for a in agents]


def _student(args: SwarmArgs, robot: Robot, bundle: str) -> NodeSpec:
    return NodeSpec(
        "kdmarl_student", "student_node", "kdmarl_student.student_node", "student", robot.name,
        {"bundle": bundle, "agent": robot.agent, "mode": args.mode, "control_rate_hz": args.rate,
         "use_sim_time": args.sim_time},
        role="student",
    )


def swarm_nodes(args: SwarmArgs, manifest: dict[str, Any], fleet: list[Robot] | None = None) -> list[NodeSpec]:
    """The nodes of one swarm: per enabled robot a student (+ adapter, + fake robot), and bridge and monitor.

    The order is the start order the runner uses: monitor first (so it sees everything), then robots,
    adapters and students, the bridge last (it waits for the students anyway).
    """
    agents = manifest_agents(manifest)
    scenario = str(manifest.get("scenario", {}).get("name", ""))
    if is_smax(scenario) and args.backend != "mpe":
        raise ValueError(f"backend {args.backend!r} is MPE-only (robot adapters and fake robots drive simple_spread "
                         f"kinematics); the bundle's scenario {scenario} is a SMAX battle: use backend 'mpe' (the "
                         "simulation bridge steps SMAX)")
    robots = fleet if fleet is not None else default_fleet(agents)
    check_fleet_fits(robots, agents)
    enabled = [r for r in robots if r.enabled]
    if not enabled:
        raise ValueError("no enabled robot: the fleet disables every robot")
    bundle = str(Path(args.bundle).resolve())
    by_agent = {r.agent: r for r in robots}
    specs: list[NodeSpec] = []
    if args.monitor:
        specs.append(NodeSpec(
            "kdmarl_bringup", "monitor", "kdmarl_bringup.monitor", "monitor", "",
            # live: false: a redrawn table floods a launch log (8 749 of 8 776 lines of one run); the monitor
            # logs a status line instead and prints its table once, at the end.
            # In realtime the monitor also watches the bundle's envelope (lockstep waits for every action, so
            # delays and drops there say nothing about the conditions the bundle was measured under).
            {"log_dir": str(Path(args.log_dir).resolve()), "record_mcap": args.record_mcap, "live": "false",
             "use_sim_time": args.sim_time, **({"bundle": bundle} if args.mode == "realtime" else {})},
            role="monitor",
        ))
    for robot in enabled:
        drive = {"drive": args.drive, **robot.drive} if args.drive else dict(robot.drive)
        # The fake robot is the base: it takes the drive kind, limits and cmd_vel type, not the adapter's conversion.
        base = {k: v for k, v in drive.items() if k not in ("conversion", "projection_distance", "cmd_vel_frame_id")}
        if args.backend == "fake":
            specs.append(NodeSpec(
                "kdmarl_bringup", "fake_robot", "kdmarl_bringup.fake_robot", "fake_robot", robot.name,
                {"initial_pose": list(robot.initial_pose), "use_sim_time": False, **base},
                role="robot",
            ))
        if args.backend in ("isaac", "real", "fake"):
            # Peers in the bundle's agent order: the student's observation lists the other agents that way.
            peers = [by_agent[a].name if a in by_agent else a for a in agents if a != robot.agent]
            specs.append(NodeSpec(
                "kdmarl_bringup", "robot_adapter", "kdmarl_bringup.robot_adapter", "robot_adapter", robot.name,
                {"bundle": bundle, "agent": robot.agent, "peers": peers, "rate_hz": args.rate,
                 "use_sim_time": args.sim_time, **drive},
                role="adapter",
            ))
        specs.append(_student(args, robot, bundle))
    if args.backend == "mpe":
        specs.append(NodeSpec(
            "kdmarl_bringup", "sim_bridge", "kdmarl_bringup.sim_bridge", "sim_bridge", "",
            {"bundle": bundle, "mode": args.mode, "rate_hz": args.rate, "episodes": args.episodes,
             "seed": args.seed, "agents": [r.agent for r in enabled],
             "namespaces": [r.name for r in enabled], "publish_clock": args.sim_time,
             "episode_subscribers": 1 if args.monitor else 0,
             "results_file": str(Path(args.log_dir).resolve() / "bridge_results.json"),
             "use_sim_time": False},
            role="bridge",
        ))
    return specs


def bridge_problem(returncode: int | None, episodes: int, results_file: str | Path) -> str:
    """Why a bridge's exit is a failure ("" when it ran every episode asked of it and exited 0).

    Shared by ``swarm.launch.py`` and the ``kdmarl-swarm`` runner, so both judge a run the same way: a bridge
    that exits early exits 0 too when it was only stopped, so the episodes in its results file decide.
    """
    if returncode != 0:
        return f"sim_bridge exited with code {returncode} (see its log)"
    if episodes == 0:
        return "sim_bridge exited although episodes:=0 asks it to run until shut down"
    try:
        done = len(json.loads(Path(results_file).read_text())["episodes"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"sim_bridge exited without a readable results file {results_file}"
    if done < episodes:
        return f"sim_bridge stopped after {done} of {episodes} episodes"
    return ""


def default_params_file() -> str:
    """config/swarm.yaml next to this module when running from the source tree, else the installed share."""
    source = Path(__file__).resolve().parents[1] / "config" / "swarm.yaml"
    if source.is_file():
        return str(source)
    try:
        from ament_index_python.packages import get_package_share_directory  # noqa: PLC0415  optional

        return str(Path(get_package_share_directory("kdmarl_bringup")) / "config" / "swarm.yaml")
    except (ImportError, LookupError, ValueError):
        return str(source)


def build(values: dict[str, str]) -> tuple[SwarmArgs, list[NodeSpec], str]:
    """Launch strings -> (args, node specs, params file): everything swarm.launch.py and the runner need."""
    args = parse_args(values)
    manifest = read_manifest(args.bundle)
    fleet = load_fleet(args.fleet, manifest_agents(manifest)) if args.fleet else None
    params_file = args.params_file or default_params_file()
    if not Path(params_file).is_file():
        raise ValueError(f"params file {params_file!r} not found")
    specs = swarm_nodes(args, manifest, fleet)
    if args.fleet and fleet is not None:  # the fleet YAML's opt-in updates section (fleet_updates_spec)
        specs = with_updaters(specs, load_updates(args.fleet, [r.name for r in fleet]), NodeSpec)
    return args, specs, params_file
