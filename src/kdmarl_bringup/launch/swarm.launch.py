"""Launch a kdmarl swarm: one student per robot in its own namespace, plus bridge or adapters, and the monitor.

    ros2 launch kdmarl_bringup swarm.launch.py bundle:=bundles/spread3
    ros2 launch kdmarl_bringup swarm.launch.py bundle:=bundles/spread3 backend:=isaac mode:=realtime \
        fleet:=config/fleet.yaml
    ros2 launch kdmarl_bringup swarm.launch.py --show-args

The node list comes from ``kdmarl_bringup.swarm_spec.build`` (tested without launch_ros, and shared with
the ``kdmarl-swarm`` runner); this file only turns it into launch actions: per robot a
``GroupAction([PushRosNamespace(robot), Node(...), ...])``, every node with the params file first and its
per-run overrides (bundle, agent, mode, rate, use_sim_time, ...) second.
"""

from __future__ import annotations

from kdmarl_bringup.swarm_spec import LAUNCH_ARGUMENTS, build
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, PushRosNamespace


def _node(spec, params_file: str) -> Node:
    return Node(
        package=spec.package,
        executable=spec.executable,
        name=spec.name,
        parameters=[params_file, spec.parameters],
        output="screen",
        emulate_tty=True,
    )


def _swarm(context: LaunchContext) -> list:
    values = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
    _, specs, params_file = build(values)
    by_namespace: dict[str, list] = {}
    for spec in specs:
        by_namespace.setdefault(spec.namespace, []).append(_node(spec, params_file))
    actions: list = []
    for namespace, nodes in by_namespace.items():
        if namespace:
            actions.append(GroupAction([PushRosNamespace(namespace), *nodes]))
        else:
            actions.extend(nodes)
    return actions


def generate_launch_description() -> LaunchDescription:
    arguments = [DeclareLaunchArgument(name, default_value=default, description=description)
                 for name, (default, description) in LAUNCH_ARGUMENTS.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=_swarm)])
