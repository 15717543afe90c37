#!/usr/bin/env bash
# make bench: every benchmark in dependency order, then the tables of docs/benchmarks.md and the README's headline
# table from bench/results/*.json (scripts/bench_table.py).
# About 8 h 50 min on a quiet 2-core machine (most of it the 5-seed distillation sweeps and SMAX); run on a quiet
# machine: the figures are wall-clock bound. Stages, each with its rough wall time:
#   envs     batched MPE port vs the mpe2 loop                         -> bench/results/envs.json
#   teacher  MAPPO: return after 10 minutes, throughput (+ speaker-listener 5 min) -> teacher.json (about 15 min)
#   distill  kdmarl sweep: 2 more spread teachers, headline rows (3 teams x 5 seeds, spread3_full x 3 teachers),
#            baselines and one-term-off ablations x 5 seeds, spread3_hetero on every seed (1.5 M and 3 M env steps)
#                                                                    -> distill.json, distill_ablation.json,
#                                                                       distill_hetero.json (about 2 h 40 min)
#   ladder   kdmarl sweep: retention vs FLOPs reduction, 6 rungs x 5 seeds -> distill_ladder.json (about 50 min)
#   distill_memory  students with memory: MLP / history / GRU, 3 seeds, horizon 50, partial obs, speaker-listener
#                                                                       -> distill_memory*.json (about 45 min)
#   qmix     QMIX vs MAPPO teachers at 10 min each, value-decomposition distillation (mixer term on/off, 3 seeds),
#            the deployment table                                       -> qmix.json, deployment.json (about 50 min)
#   smax     SMAX adapter vs raw JaxMARL stepping (3m, 2s3z, 3s5z)     -> smax_env.json
#            MAPPO teachers on 3m (15 min), 2s3z, 3s5z (10 min), the harder 5m_vs_6m (35 min, with an entropy
#            bonus)                                                     -> smax_teacher.json (about 1 h 10 min)
#            students on microcontroller budgets (whole battles), 5 seeds, full loss and KL-only, MAPPO from
#            scratch at equal size, on 3m, 2s3z, 3s5z, 5m_vs_6m        -> smax_students.json (about 3 h 30 min)
#   peers    our teachers vs the JaxMARL peers in the same run, one after the other (needs the peer venv: see
#            bench/bench_peers.py): QMIX spread 10 min each, MAPPO SMAX 3m 15 min, 2s3z 10 min, the harder
#            5m_vs_6m 15 min each                                       -> peers_{qmix_spread,smax_3m,smax_2s3z,
#                                                                          smax_5m_vs_6m}.json, docs/peers_*.png
#                                                                          (about 1 h 55 min)
#   sweep    kdmarl sweep's overhead: 4 trials of ~80 s on the local Ray vs one after another, and the
#            scaling table of the benchmark grids on N machines        -> sweep.json, sweep_scaling.json (about 15 min)
#   runtime  teacher (torch, ORT) vs students (ORT) of the distilled bundle -> runtime.json
#   swarm    3/8/16 student processes over ROS 2, lockstep steps/s     -> swarm.json
#   drive    holonomic vs diff-drive fake fleets, trained spread3 students, 30 seeds -> drive.json (about 7 min)
#   fleet_stop  16 robots, one student frozen: latched stop to every robot at zero, 3 runs -> fleet_stop.json (about 2 min)
#   fleet_update  publish -> 16 robots staged (ROS-free updaters over HTTP, 3 runs) and the lockstep swap drill
#            -> fleet_update.json (31 s here); a running 16-robot ROS swarm switched from release 1 to 2 (the
#            confirmed cut-over), then the same with one follower offline across the swap -> fleet_update_swarm.json
#            (4-6 min on this shared machine)
#   memory   one student node, stage by stage                           -> node_memory.json
#   grf      optional (skips without gfootball: bash scripts/setup_grf.sh): GRF env-steps/s vs workers
#            (processes, Ray actors), a MAPPO teacher on academy_3_vs_1_with_keeper for 60 min, evaluated
#            on 100 fixed episodes, and its students (300 k env steps), exported and evaluated as a bundle
#                                                   -> grf.json, grf_teacher.json, grf_students.json (about 85 min)
# Runs are kept under $KDMARL_BENCH_RUNS (default runs/bench) for inspection; KDMARL_BENCH_ONLY="envs swarm"
# runs a subset (later stages need the runs of earlier ones).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${KDMARL_BENCH_RUNS:-runs/bench}
only=" ${KDMARL_BENCH_ONLY:-envs teacher distill ladder distill_memory qmix smax peers sweep runtime swarm drive fleet_stop fleet_update memory grf} "
want() { [[ "$only" == *" $1 "* ]]; }
banner() { printf '\n\033[1m== bench: %s\033[0m\n' "$*"; }

if want envs; then banner envs; python bench/bench_envs.py; fi
if want teacher; then
  banner "teacher (10 min simple_spread + 5 min speaker-listener)"
  rm -rf "$runs/teacher"
  python bench/bench_teacher.py --keep "$runs/teacher" --speaker-listener 5
fi
if want distill; then
  banner "distill (targets, baselines, ablations)"
  rm -rf "$runs/distill"
  python bench/bench_distill.py --teacher-spread "$runs/teacher/spread" --teacher-sl "$runs/teacher/sl" \
    --only main,ablation,hetero --keep "$runs/distill"
fi
if want ladder; then
  banner "ladder (retention vs FLOPs reduction)"
  rm -rf "$runs/ladder"
  python bench/bench_ladder.py --teacher "$runs/teacher/spread" --keep "$runs/ladder"
fi
if want distill_memory; then
  banner "distill_memory (students with memory: MLP vs history features vs recurrent)"
  rm -rf "$runs/distill_memory"
  python bench/bench_memory.py --teacher "$runs/teacher/spread" --teacher-sl "$runs/teacher/sl" --keep "$runs/distill_memory"
fi
if want qmix; then
  banner "qmix (QMIX teacher, value-decomposition distillation, deployment table)"
  rm -rf "$runs/qmix"
  python bench/bench_qmix.py --keep "$runs/qmix"
fi
if want smax; then
  banner "smax (adapter vs raw JaxMARL; MAPPO teachers within a wall-time budget)"
  python bench/bench_smax.py
  rm -rf "$runs/smax"
  python bench/bench_smax_teacher.py --maps 3m:15 2s3z:10 3s5z:10 5m_vs_6m:35 --keep "$runs/smax"
  python bench/bench_smax_students.py --teacher-3m "$runs/smax/mappo_3m" --teacher-2s3z "$runs/smax/mappo_2s3z" \
    --teacher-3s5z "$runs/smax/mappo_3s5z" --teacher-5m_vs_6m "$runs/smax/mappo_5m_vs_6m" --keep "$runs/smax"
fi
if want peers; then
  banner "peers (JaxMARL QMIX and MAPPO vs ours, same run; peer venv: \${KDMARL_PEER_VENV:-.venv-jaxmarl-peer})"
  if [ -x "${KDMARL_PEER_VENV:-.venv-jaxmarl-peer}/bin/python" ]; then
    for task in qmix_spread smax_3m smax_2s3z smax_5m_vs_6m; do
      rm -rf "$runs/peers_$task"
      python bench/bench_peers.py "$task" --keep "$runs/peers_$task"
    done
  else
    echo "skipped: no peer venv at ${KDMARL_PEER_VENV:-.venv-jaxmarl-peer}; create it with" \
      "../shared/peers/jaxmarl/setup_venv.sh .venv-jaxmarl-peer (or set KDMARL_PEER_VENV)"
  fi
fi
if want sweep; then
  banner "sweep (kdmarl sweep on the local Ray vs sequential; scaling on paper)"
  rm -rf "$runs/sweep"
  python bench/bench_sweep.py --teacher "$runs/teacher/spread" --keep "$runs/sweep"
fi
if want runtime; then
  banner "runtime (bundle of the distilled spread team)"
  kdmarl export "$runs/distill/kdmarl_full" --out "$runs/bundle" --force --eval-episodes 0
  python bench/bench_runtime.py --run "$runs/teacher/spread" --bundle "$runs/bundle"
fi
if want swarm; then banner swarm; python bench/bench_swarm.py; fi
if want drive; then banner "drive (holonomic vs diff-drive fleets)"; python bench/bench_drive.py; fi
if want fleet_stop; then banner "fleet_stop (16 robots, one student frozen)"; python bench/bench_fleet_stop.py; fi
if want fleet_update; then
  banner "fleet_update (16 robots: publish to staged; the swap in a running ROS swarm, one follower offline)"
  python bench/bench_fleet_update.py --robots 16
  python bench/bench_fleet_update.py --swarm --robots 16
fi
if want memory; then banner "student node memory"; python bench/bench_node_memory.py; fi
if want grf; then
  banner "grf (Google Research Football: stepping vs workers, MAPPO on 3v1; optional)"
  python bench/bench_grf.py --minutes 60 --student-steps 300000 --keep "$runs/grf"
fi
kdmarl report --bench bench/results --out-dir docs     # docs/distill_pareto.png, docs/distill_ablation.png
python scripts/bench_table.py
