#!/usr/bin/env python3
"""Our teachers against the JaxMARL peers, in the same run on the same machine (issue 26 §1).

For one TASK, the JaxMARL peer (its unmodified baseline script and config, run by the driver of
`../shared/peers/jaxmarl/`, CPU jax in its own venv) trains first, then our teacher with its shipped config,
each for the same wall-time budget; both curves are written to bench/results/peers_<task>.json and drawn in
docs/peers_<task>.png, and the targets are ratios of that one run:

- `qmix_spread`: JaxMARL `qmix_rnn.py` + `ql_rnn_mpe.yaml` (TOTAL_TIMESTEPS 8e6) vs `kdmarl train --algo qmix`
  (config/qmix_simple_spread.yaml), 10 min each. Curves: greedy team return (peer: its test return / 3 agents;
  ours: greedy_return on 64 fixed mpe2 seeds). Targets: ours <= -9.0 deterministic (200 mpe2 seeds 1000-1199)
  within 10 min, and ours ahead of the peer at every wall time at which the peer showed a new figure, its end
  included.
- `smax_3m` (15 min each), `smax_2s3z` (10 min each): JaxMARL `mappo_rnn_smax.py` + its SMAX config
  (TOTAL_TIMESTEPS 3e6, its learning-rate horizon) vs `kdmarl train --scenario smax:<map>`
  (config/mappo_smax.yaml). Curves: training win rate. Targets: our time to 0.9 at most half the peer's; 3m also
  >= 0.95 deterministic win rate (200 battles) within 15 min.

The peer is stopped when its wall time since the end of jax compilation reaches the budget (its CSV is flushed
every logged update); its compilation time is reported separately, as its driver measures it.

    python bench/bench_peers.py qmix_spread                    # about 23 min (peer ~11, ours 10 + evaluation)
    python bench/bench_peers.py smax_3m                        # about 33 min
    python bench/bench_peers.py smax_2s3z                      # about 23 min
    python bench/bench_peers.py smax_5m_vs_6m                  # about 33 min (the harder map; no target yet)
    python bench/bench_peers.py smax_3m --set num_envs=32      # a lever against the peer: peers_smax_3m_lever.json
    python bench/bench_peers.py qmix_spread --quick            # smoke check, ~3 min: *_quick.json, not docs
    python bench/bench_peers.py smax_3m --keep DIR --report-only   # tabulate the runs kept in DIR again

The peer's venv: --peer-venv, else $KDMARL_PEER_VENV, else ./.venv-jaxmarl-peer (create it with
`../shared/peers/jaxmarl/setup_venv.sh PATH`); the drivers: --peer-dir, else $KDMARL_PEER_DIR, else
../shared/peers/jaxmarl next to the checkout. Run on a quiet machine: the figures are wall-clock bound.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DOCS = ROOT / "docs"
COMPILE_LIMIT_S = 900  # the peer's jax compilation took tens of seconds here; 15 min means something is wrong


@dataclass(frozen=True)
class Task:
    """One side-by-side comparison: the peer's driver and arguments, our `kdmarl train` arguments, the budget."""

    name: str
    minutes: float
    peer_script: str  # driver in the peer dir
    peer_args: tuple[str, ...]  # before the CSV path
    peer_label: str
    ours_args: tuple[str, ...]
    ours_label: str
    ours_column: str  # metrics.csv column of our curve
    metric: str
    quick_peer_args: tuple[str, ...]
    quick_ours_sets: tuple[str, ...]


TASKS = {
    "qmix_spread": Task(
        "qmix_spread", 10.0, "run_qmix.py", ("8e6",), "JaxMARL QMIX (qmix_rnn.py, ql_rnn_mpe.yaml)",
        ("--algo", "qmix", "--scenario", "simple_spread"), "kdmarl QMIX (config/qmix_simple_spread.yaml)",
        "greedy_return", "greedy team return",
        ("2e5",), ("total_steps=64000", "learning_starts=3200", "eps_anneal_steps=32000", "eval_every=4")),
    "smax_3m": Task(
        "smax_3m", 15.0, "run_mappo.py", ("3m", "3e6"), "JaxMARL MAPPO (mappo_rnn_smax.py, GRU actor)",
        ("--scenario", "smax:3m"), "kdmarl MAPPO (config/mappo_smax.yaml)", "task/won", "training win rate",
        ("3m", "1e5"), ("total_steps=16384", "num_envs=16", "num_steps=32")),
    "smax_2s3z": Task(
        "smax_2s3z", 10.0, "run_mappo.py", ("2s3z", "3e6"), "JaxMARL MAPPO (mappo_rnn_smax.py, GRU actor)",
        ("--scenario", "smax:2s3z"), "kdmarl MAPPO (config/mappo_smax.yaml)", "task/won", "training win rate",
        ("2s3z", "1e5"), ("total_steps=16384", "num_envs=16", "num_steps=32")),
    # the harder map of issue 26 §6 (asymmetric: 5 marines against 6); no target of its own yet
    "smax_5m_vs_6m": Task(
        "smax_5m_vs_6m", 15.0, "run_mappo.py", ("5m_vs_6m", "3e6"), "JaxMARL MAPPO (mappo_rnn_smax.py, GRU actor)",
        ("--scenario", "smax:5m_vs_6m"), "kdmarl MAPPO (config/mappo_smax_5m_vs_6m.yaml)", "task/won",
        "training win rate",
        ("5m_vs_6m", "1e5"), ("total_steps=16384", "num_envs=16", "num_steps=32")),
}
QMIX_TARGET = -9.0
SMAX_LEVEL = 0.9
SMAX_DET_TARGET = {"smax_3m": 0.95}
HALF_TIME_TARGET = ("smax_3m", "smax_2s3z")  # issue 26 §3; other maps report the ratio without a target


def peer_python(venv: Path) -> Path:
    """The peer venv's interpreter, or SystemExit saying how to create it."""
    python = venv / "bin" / "python"
    if not python.is_file():
        raise SystemExit(
            f"peer venv {venv}: no {python}. Create it (CPU jax + jaxmarl 0.2.0, about 1 GB, no torch) with\n"
            f"  ../shared/peers/jaxmarl/setup_venv.sh {venv}\n"
            "or point --peer-venv / KDMARL_PEER_VENV at an existing one.")
    return python


def peer_commit(peer_dir: Path) -> str:
    """The JaxMARL commit the peer's scripts were taken from (its README names it), or '?'."""
    readme = peer_dir / "README.md"
    found = re.search(r"commit `([0-9a-f]{40})`", readme.read_text()) if readme.is_file() else None
    return found.group(1) if found else "?"


def run_peer(python: Path, script: Path, args: list[str], *, csv_out: Path, log: Path,
             minutes: float) -> dict[str, Any]:
    """Run the peer driver; stop it once its training wall time (after compilation) reaches `minutes`.

    The driver prints `COMPILE_S <s>` when jax has compiled the training loop and starts the clock there. Its
    environment is cleaned of this project's Python paths (it has its own venv and no torch)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "AMENT_PREFIX_PATH")}
    env["PYTHONNOUSERSITE"] = "1"
    t0 = time.monotonic()
    t_train, stopped = None, False
    with log.open("w") as fh:
        proc = subprocess.Popen([str(python), str(script), *args, str(csv_out)], stdout=fh, stderr=subprocess.STDOUT,
                                env=env)
        try:
            while proc.poll() is None:
                time.sleep(1.0)
                if t_train is None and "COMPILE_S" in log.read_text():
                    t_train = time.monotonic()
                if t_train is None and time.monotonic() - t0 > COMPILE_LIMIT_S:
                    raise RuntimeError(f"peer {script.name}: no COMPILE_S after {COMPILE_LIMIT_S} s (log {log})")
                if t_train is not None and time.monotonic() - t_train > minutes * 60:
                    stopped = True
                    proc.terminate()
                    proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    if proc.returncode != 0 and not stopped:
        tail = "\n".join(text.splitlines()[-15:])
        raise RuntimeError(f"peer {script.name} exited with {proc.returncode} (log {log}):\n{tail}")
    return {"compile_s": compile_seconds(text), "stopped_at_budget": stopped,
            "wall_s_total": round(time.monotonic() - t0, 1)}


def run_ours(task: Task, run: Path, minutes: float, *, quick: bool, episodes: int,
             sets: list[str]) -> dict[str, Any]:
    """`kdmarl train` with the shipped config (plus `sets`) for `minutes`, then `kdmarl evaluate` (deterministic)."""
    from kdmarl_teacher.cli import main as kdmarl  # noqa: PLC0415

    args = ["train", *task.ours_args, "--out", str(run), "--no-progress", "--set", f"time_limit_minutes={minutes}"]
    for s in [*(task.quick_ours_sets if quick else ()), *sets]:
        args += ["--set", s]
    if kdmarl(args) != 0:
        raise RuntimeError(f"kdmarl {' '.join(args)} failed")
    if kdmarl(["evaluate", str(run), "--episodes", str(episodes)]) != 0:
        raise RuntimeError(f"kdmarl evaluate {run} failed")
    return json.loads((run / "eval.json").read_text())["results"]["deterministic"]


def compile_seconds(log_text: str) -> float | None:
    """The peer driver's jax compilation time (its `COMPILE_S <s>` line), None before it is printed."""
    found = re.search(r"COMPILE_S ([0-9.]+)", log_text)
    return float(found.group(1)) if found else None


def read_back(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """--report-only: how the peer's run ended (peer_info.json, else its compile time from its log) and our
    deterministic evaluation (eval.json)."""
    log, eval_json = out / "peer.log", out / "ours" / "eval.json"
    for path in (log, out / "peer.csv", out / "ours" / "metrics.csv", eval_json):
        if not path.is_file():
            raise SystemExit(f"--report-only: {path} missing (run the bench with --keep {out} first)")
    if (out / "peer_info.json").is_file():  # written by the run itself
        peer_info = json.loads((out / "peer_info.json").read_text())
    else:
        peer_info = {"compile_s": compile_seconds(log.read_text()), "stopped_at_budget": None, "wall_s_total": None}
    return peer_info, json.loads(eval_json.read_text())["results"]["deterministic"]


def run_end(metrics_csv: Path) -> dict[str, Any]:
    """Where our run actually stopped (its last metrics.csv row): the curve's last point can be an evaluation
    up to `eval_every` iterations earlier."""
    with metrics_csv.open() as fh:
        last = list(csv.DictReader(fh))[-1]
    return {"minutes": round(float(last["wall_time"]) / 60, 2), "env_steps": int(last["global_step"]),
            "steps_per_s": round(float(last["sps"]))}


def side_row(curve: Any, who: str, system: str, level: float | None) -> dict[str, Any]:
    from kdmarl_teacher.reports.peers import first_time  # noqa: PLC0415

    last = len(curve.value) - 1
    minutes = curve.minutes[last] if curve.value else None
    row: dict[str, Any] = {
        "who": who, "system": system, "minutes": round(minutes, 2) if minutes is not None else None,
        "env_steps": curve.env_steps[last] if curve.value else None,
        "steps_per_s": round(curve.env_steps[last] / (minutes * 60)) if curve.value and minutes else None,
        "curve_final": round(curve.value[last], 3) if curve.value else None,
        "curve_best": round(max(curve.value), 3) if curve.value else None}
    if level is not None:
        t = first_time(curve, level)
        row[f"minutes_to_{level:g}"] = round(t, 2) if t is not None else None
    return row


def main() -> int:
    from benchlib import write_result  # noqa: PLC0415
    from kdmarl_teacher.reports.peers import (  # noqa: PLC0415
        ahead_at_every_time,
        draw_peers,
        read_ours,
        read_peer_mappo,
        read_peer_qmix,
        steps_per_reading,
    )

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--minutes", type=float, help="wall-time budget of each side (default: the task's)")
    parser.add_argument("--peer-venv", default=os.environ.get("KDMARL_PEER_VENV", str(ROOT / ".venv-jaxmarl-peer")))
    parser.add_argument("--peer-dir",
                        default=os.environ.get("KDMARL_PEER_DIR", str(ROOT.parent / "shared" / "peers" / "jaxmarl")))
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override our shipped config (a lever measured against the peer; named in the row)")
    parser.add_argument("--episodes", type=int, default=200, help="our deterministic evaluation (fixed seeds)")
    parser.add_argument("--keep", help="keep the runs and the peer's CSV/log here (default: temporary)")
    parser.add_argument("--quick", action="store_true", help="smoke check: tiny budgets, *_quick.json, no docs figure")
    parser.add_argument("--report-only", action="store_true",
                        help="with --keep: tabulate the runs there again (peer.csv/.log, ours/metrics.csv, "
                             "ours/eval.json), train nothing")
    args = parser.parse_args()
    if args.report_only and not args.keep:
        parser.error("--report-only needs --keep DIR (the directory of an earlier run)")
    task = TASKS[args.task]
    python = None if args.report_only else peer_python(Path(args.peer_venv))  # --report-only runs no peer
    peer_dir = Path(args.peer_dir)
    script = peer_dir / task.peer_script
    if not script.is_file():
        raise SystemExit(f"peer dir {peer_dir}: no {task.peer_script} (--peer-dir / KDMARL_PEER_DIR)")
    minutes = args.minutes or (1.0 if args.quick else task.minutes)
    episodes = 16 if args.quick else args.episodes
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix=f"bench_peers_{task.name}_"))
    out.mkdir(parents=True, exist_ok=True)
    t_bench = time.time()

    peer_csv, peer_log = out / "peer.csv", out / "peer.log"
    peer_args = list(task.quick_peer_args if args.quick else task.peer_args)
    if args.report_only:
        peer_info, det = read_back(out)
        today = dt.datetime.fromtimestamp(peer_csv.stat().st_mtime, dt.timezone.utc).date().isoformat()  # ran then
    else:
        today = dt.datetime.now(dt.timezone.utc).date().isoformat()  # the day both sides run
        print(f"peer: {python} {script} {' '.join(peer_args)} -> {peer_csv} ({minutes:g} min)", flush=True)
        peer_info = run_peer(python, script, peer_args, csv_out=peer_csv, log=peer_log, minutes=minutes)
        (out / "peer_info.json").write_text(json.dumps(peer_info) + "\n")  # for --report-only
        print(f"ours: kdmarl train {' '.join(task.ours_args)} ({minutes:g} min)", flush=True)
        det = run_ours(task, out / "ours", minutes, quick=args.quick, episodes=episodes, sets=args.sets)

    qmix = task.name.startswith("qmix")
    peer = (read_peer_qmix(peer_csv, 3, task.peer_label) if qmix else read_peer_mappo(peer_csv, task.peer_label))
    ours_label = task.ours_label + (f" + {' '.join(args.sets)}" if args.sets else "")
    window = 0 if qmix else steps_per_reading(peer)  # ours read over as much play as one peer update
    ours = read_ours(out / "ours" / "metrics.csv", task.ours_column, ours_label, task.metric, window_steps=window)
    level = None if qmix else SMAX_LEVEL
    peer_row = {**side_row(peer, "peer", f"{task.peer_label} @ JaxMARL {peer_commit(peer_dir)[:9]}", level),
                "compile_s": peer_info["compile_s"], "peer_args": " ".join(peer_args)}
    ours_row = {**side_row(ours, "ours", ours_label, level), **run_end(out / "ours" / "metrics.csv")}
    same_run = f"both measured in this run, {today}, one after the other"
    targets = []
    if qmix:
        ours_row.update(det_return=round(det["team_return"]["mean"], 3), det_ci95=round(det["team_return"]["ci95"], 3))
        cmp = ahead_at_every_time(ours, peer)
        end = cmp["at_peer_end"] or {}
        targets.append({
            "what": f"QMIX on spread: our deterministic team return ({episodes} mpe2 seeds) within {minutes:g} min",
            "target": f">= {QMIX_TARGET}",
            "reached": f"ours {ours_row['det_return']} ± {ours_row['det_ci95']} after {ours_row['minutes']} min "
                       f"({ours_row['env_steps']} env steps); peer's greedy {peer_row['curve_final']} at its end "
                       f"({peer_row['minutes']} min, {peer_row['env_steps']} env steps); {same_run}",
            "met": bool(ours_row["det_return"] >= QMIX_TARGET and (ours_row["minutes"] or 1e9) <= minutes * 1.01)})
        targets.append({
            "what": "QMIX on spread: ours ahead of JaxMARL's QMIX at every equal wall time, the peer's end included "
                    "(greedy team return)",
            "target": "behind at none of the peer's test points",
            "reached": f"behind at {cmp['behind']} of {cmp['compared']} (worst margin {cmp['worst_margin']}); at the "
                       f"peer's end ({end.get('minutes')} min) ours {end.get('ours')} vs peer {end.get('peer')}; "
                       f"{same_run}",
            "met": bool(cmp["compared"] > 0 and cmp["behind"] == 0)})
        extra: dict[str, Any] = {"comparison": cmp}
        levels = [(QMIX_TARGET, f"target {QMIX_TARGET}")]
    else:
        won = det.get("metrics", {}).get("won", {})
        ours_row.update(det_win_rate=round(won.get("mean", float("nan")), 3),
                        det_win_ci95=round(won.get("ci95", float("nan")), 3))
        key = f"minutes_to_{SMAX_LEVEL:g}"
        t_ours, t_peer = ours_row[key], peer_row[key]
        ratio = round(t_ours / t_peer, 3) if t_ours is not None and t_peer else None
        if task.name in HALF_TIME_TARGET:
            targets.append({
                "what": f"{task.name}: time to {SMAX_LEVEL} training win rate, ours / JaxMARL MAPPO's",
                "target": "<= 0.5",
                "reached": f"{ratio} (ours {t_ours} min, {ours_row['env_steps']} env steps in {ours_row['minutes']} "
                           f"min; peer {t_peer} min, best {peer_row['curve_best']}); {same_run}",
                "met": bool(ratio is not None and ratio <= 0.5)})
        if task.name in SMAX_DET_TARGET:
            goal = SMAX_DET_TARGET[task.name]
            targets.append({
                "what": f"{task.name}: our deterministic win rate ({episodes} battles) within {minutes:g} min",
                "target": f">= {goal}",
                "reached": f"ours {ours_row['det_win_rate']} ± {ours_row['det_win_ci95']} after "
                           f"{ours_row['minutes']} min; peer's training win rate {peer_row['curve_final']} at its end "
                           f"({peer_row['minutes']} min); {same_run}",
                "met": bool(ours_row["det_win_rate"] >= goal and (ours_row["minutes"] or 1e9) <= minutes * 1.01)})
        extra = {"ratio_to_0.9": ratio}
        levels = [(SMAX_LEVEL, str(SMAX_LEVEL))]
    notes = [
        f"peer: {script} {' '.join(peer_args)} in {args.peer_venv} (CPU jax, both cores); its wall time starts after "
        f"jax compiled its training loop ({peer_info['compile_s']} s, not counted); stopped at the budget: "
        f"{'not recorded' if peer_info['stopped_at_budget'] is None else peer_info['stopped_at_budget']}",
        "ours: the shipped config with time_limit_minutes = the budget (torch_threads 1); wall time from the start "
        "of the run, in-training evaluations included",
        "ahead/behind compares step curves: each side's latest figure at the wall times at which the peer showed a "
        "new one" if qmix else f"training win rate: battles finished in an update (peer) / in the trailing "
        f"iterations that make up one peer update's {window} env steps (ours; episode-weighted), so both readings "
        "average the same amount of play",
        "peer's spread return: its test return summed over 3 agents / 3, on JaxMARL's 26-step episodes (ours: 25 "
        "mpe2 steps), greedy over 512 test episodes; ours: greedy on 64 fixed mpe2 seeds every 20 iterations"
        if qmix else "deterministic win rate: our greedy policy on battles from PRNGKey(1000..1199)",
        f"bench wall time {round((time.time() - t_bench) / 60, 1)} min; run the peer and ours on a quiet machine: "
        "the machines of this kind differ by up to 1.5x"]
    if args.quick:
        notes.insert(0, "QUICK smoke run: tiny budgets; figures are not the benchmark")
    if args.report_only:
        notes.insert(0, f"tabulated again with --report-only from the runs under {out} (trained "
                        f"{today}, "
                        "one after the other; the bench wall time below is the tabulation's)")
    # a lever run (--set) never replaces the shipped config's result
    name = f"peers_{task.name}" + ("_lever" if args.sets else "") + ("_quick" if args.quick else "")
    title = f"{task.ours_label} vs {task.peer_label}: {task.metric} against wall time, same run"
    path = write_result(
        name, title=title, rows=[ours_row, peer_row], targets=targets, notes=notes,
        columns=["who", "system", "minutes", "env_steps", "steps_per_s", "curve_final", "curve_best",
                 *((f"minutes_to_{SMAX_LEVEL:g}", "det_win_rate", "det_win_ci95") if not qmix
                   else ("det_return", "det_ci95")), "compile_s"],
        extra={**extra, "curves": [ours.to_dict(), peer.to_dict()], "levels": levels,
               "caption": f"{same_run}; {platform_line()}", "peer": peer_info})
    fig = (out if args.quick else DOCS) / f"{name}.png"
    print(f"wrote {draw_peers(path, fig)}")
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return 0


def platform_line() -> str:
    from benchlib import machine_info  # noqa: PLC0415

    m = machine_info()
    return f"{m.get('cpu')}, {m.get('cores')} cores"


if __name__ == "__main__":
    sys.exit(main())
