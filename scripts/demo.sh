#!/usr/bin/env bash
# make demo: the whole pipeline on the embedded default (mpe2 simple_spread, N=3, 25 steps):
#   1. train a MAPPO teacher            -> runs/demo/teacher/{teacher.pt, metrics.csv, learning_curve.png, eval.json}
#   2. distill a heterogeneous team     -> runs/demo/students/{students.pt, distill_report.json}
#   3. export the bundle                -> bundles/demo/{manifest.json, agent_*.onnx}   (+ latency table); the
#      manifest carries the team's measured results (200 episodes) and its envelope (50 episodes per perturbation)
#   4. evaluate teacher / students / random from the bundle alone (retention, FLOPs), draw the envelope figure
#   5. run the swarm over ROS 2 (sim bridge + 3 student nodes + monitor) and compare with step 4
# Every stage resumes: an interrupted `make demo` picks up where it stopped. KDMARL_DEMO_FRESH=1 starts over.
# Sizes are set for a 2-core machine (about 12 minutes); scale them with the variables below.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${KDMARL_DEMO_RUNS:-runs/demo}
bundle=${KDMARL_DEMO_BUNDLE:-bundles/demo}
teacher_steps=${KDMARL_DEMO_TEACHER_STEPS:-5000000}
distill_steps=${KDMARL_DEMO_DISTILL_STEPS:-1000000}
team=${KDMARL_DEMO_TEAM:-spread3_hetero}
episodes=${KDMARL_DEMO_ROS_EPISODES:-5}

if [ "${KDMARL_DEMO_FRESH:-0}" = 1 ]; then rm -rf "$runs" "$bundle"; fi
banner() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# resume_flag DIR: "--resume" when DIR holds an unfinished or finished run (resuming a finished run is a no-op).
resume_flag() { [ -f "$1/checkpoint.pt" ] && echo --resume || true; }

banner "1/5 MAPPO teacher on simple_spread ($teacher_steps env steps)"
# One torch thread: on 2 cores, two intra-op threads collapse as soon as anything else runs (measured: 26k
# steps/s quiet, under 1k with one busy neighbour); one thread holds 15-20k either way.
kdmarl train --scenario simple_spread --out "$runs/teacher" --set total_steps="$teacher_steps" \
  --set torch_threads=1 $(resume_flag "$runs/teacher")
kdmarl evaluate "$runs/teacher" --episodes 200
kdmarl report "$runs/teacher"

banner "2/5 KD-MARL distillation: team $team ($distill_steps env steps)"
kdmarl distill --teacher "$runs/teacher" --out "$runs/students" --team "$team" \
  --set total_steps="$distill_steps" $(resume_flag "$runs/students")

banner "3/5 bundle: ONNX per agent, manifest, latency, team results and envelope"
# The bundle carries its measured collaboration profile (issue 25): team results on seeds 1000-1199 and the
# envelope (team return and retention under perturbations, bounded to 120 s); about 25 s on 2 cores.
kdmarl export "$runs/students" --out "$bundle" --force --eval-episodes 200

banner "4/5 teacher / students / random from the bundle alone"
kdmarl evaluate --bundle "$bundle" --episodes 200
kdmarl envelope "$bundle" --from-manifest  # the figure of the envelope the export measured: $bundle/envelope.png

banner "5/5 the swarm over ROS 2: sim bridge + one student node per agent + monitor ($episodes episodes)"
# With the ROS 2 tools (a ROS install, or the overlay the bootstrap builds) the stage is what a ROS engineer
# types; the launch ends by itself after the episodes, then kdmarl-swarm compares with the offline returns.
# Without them, kdmarl-swarm starts the same nodes itself.
if command -v ros2 >/dev/null 2>&1 && python -c "import launch_ros, ros2launch" 2>/dev/null; then
  ros2 launch kdmarl_bringup swarm.launch.py bundle:="$bundle" episodes:="$episodes" log_dir:="$runs/swarm"
  kdmarl-swarm --bundle "$bundle" --episodes "$episodes" --log-dir "$runs/swarm" --report-only --expect-equal
else
  kdmarl-swarm --bundle "$bundle" --episodes "$episodes" --log-dir "$runs/swarm" --expect-equal
fi

banner "done"
echo "teacher:  $runs/teacher  (learning_curve.png, eval.json)"
echo "students: $runs/students (distill_report.json)"
echo "bundle:   $bundle        (manifest.json, agent_*.onnx)"
echo "swarm:    $runs/swarm    (monitor CSV, summary, PNG)"
