"""Launch a kdmarl swarm: one student per robot in its own namespace, plus bridge or adapters, and the monitor.

    ros2 launch kdmarl_bringup swarm.launch.py bundle:=bundles/spread3
    ros2 launch kdmarl_bringup swarm.launch.py bundle:=bundles/spread3 backend:=isaac mode:=realtime \
        fleet:=config/fleet.yaml
    ros2 launch kdmarl_bringup swarm.launch.py --show-args

The node list comes from ``kdmarl_bringup.swarm_spec.build`` (tested without launch_ros, and shared with
the ``kdmarl-swarm`` runner); this file only turns it into launch actions: per robot a
``GroupAction([PushRosNamespace(robot), Node(...), ...])``, every node with the params file first and its
per-run overrides (bundle, agent, mode, rate, use_sim_time, ...) second.

The simulation bridge decides when a finite run is over: when it exits, the launch shuts down (Ctrl-C
semantics for every other node). It exits 0 by itself after ``episodes:=N``; if it exits otherwise — an
error, a kill, ``episodes:=0`` ending at all, fewer episodes than asked — the launch stops with that reason
as its error and a non-zero exit code. A bad argument is a one-line error and exit code 1, before any node
starts.

Ctrl-C: ``ros2 launch`` learns of SIGINT through its event loop's wakeup fd, but Python's default handler
also raises ``KeyboardInterrupt`` wherever the launch happens to be; a second Ctrl-C that lands inside its
shutdown handler abandons it half done and the launch then waits forever with every node already gone
(the ros2/launch#207 class of hangs; measured here: 1 in 12 runs of a double Ctrl-C). This file therefore
replaces that handler with one that does nothing: the wakeup fd still carries every SIGINT to launch.
"""

from __future__ import annotations

import signal
import threading

from kdmarl_bringup.discovery import swarm_discovery_env
from kdmarl_bringup.swarm_spec import LAUNCH_ARGUMENTS, NodeSpec, SwarmArgs, bridge_problem, build
from launch import LaunchContext, LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    GroupAction,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.events.process import ProcessExited
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, PushRosNamespace


def _node(spec: NodeSpec, params_file: str) -> Node:
    return Node(
        package=spec.package,
        executable=spec.executable,
        name=spec.name,
        parameters=[params_file, spec.parameters],
        output="screen",
        # Colour for the nodes' log lines; the monitor prints a table, sized for 120 columns off a terminal.
        emulate_tty=spec.role != "monitor",
    )


def _on_bridge_exit(args: SwarmArgs, spec: NodeSpec):
    """The handler of the bridge's exit: shut down after a complete finite run, fail on anything else."""

    def handle(event: ProcessExited, context: LaunchContext) -> list | None:
        if context.is_shutdown:  # Ctrl-C or another shutdown already under way: nothing to decide
            return None
        problem = bridge_problem(event.returncode, args.episodes, spec.parameters.get("results_file", ""))
        if problem:
            raise RuntimeError(problem)  # launch logs it, shuts every node down and exits 1
        return [EmitEvent(event=Shutdown(reason=f"sim_bridge finished its {args.episodes} episodes"))]

    return handle


def _swarm(context: LaunchContext) -> list:
    values = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
    args, specs, params_file = build(values)
    by_namespace: dict[str, list] = {}
    # LOCALHOST discovery loses pairs of processes past the 32nd: the swarm's nodes use the whole domain's range
    # (kdmarl_bringup.discovery; an operator's own processes beside the swarm need the same exports).
    actions: list = [SetEnvironmentVariable(name, value)
                     for name, value in swarm_discovery_env(context.environment).items()]
    for spec in specs:
        node = _node(spec, params_file)
        by_namespace.setdefault(spec.namespace, []).append(node)
        if spec.role == "bridge":
            actions.append(RegisterEventHandler(OnProcessExit(target_action=node,
                                                              on_exit=_on_bridge_exit(args, spec))))
    for namespace, nodes in by_namespace.items():
        if namespace:
            actions.append(GroupAction([PushRosNamespace(namespace), *nodes]))
        else:
            actions.extend(nodes)
    return actions


def _no_keyboard_interrupt(signum: int, frame: object) -> None:
    """SIGINT reaches launch through the wakeup fd; raising here as well is what can hang it."""


def generate_launch_description() -> LaunchDescription:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _no_keyboard_interrupt)
    arguments = [DeclareLaunchArgument(name, default_value=default, description=description)
                 for name, (default, description) in LAUNCH_ARGUMENTS.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=_swarm)])
