#!/bin/bash
# Source ROS 2 and the kdmarl overlay, then run the command (a node, ros2 launch, or kdmarl-swarm).
set -e
for setup in "/opt/ros/${ROS_DISTRO}/setup.bash" "/opt/ros/${ROS_DISTRO}/install/setup.bash"; do
  if [ -f "$setup" ]; then
    # shellcheck disable=SC1090
    source "$setup"
    break
  fi
done
# shellcheck disable=SC1091
source /opt/kdmarl/ws/install/setup.bash
exec "$@"
