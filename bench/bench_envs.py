#!/usr/bin/env python3
"""Joint env-steps/s of the batched torch MPE port against mpe2's parallel env stepped in a Python loop.

A "joint env-step" advances one environment by one step (all its agents act). The port steps B
environments per call; the baseline steps B mpe2 ``parallel_env`` copies one after the other, which is how
training would have to use mpe2. Both take pre-drawn uniformly random actions (sampling is not timed) and
reset finished episodes (the port auto-resets; the loop calls ``reset()``).

    python bench/bench_envs.py [--quick] [--threads 1] [--seconds 2]

Writes bench/results/envs.json (figures, command, machine, date, torch version) through benchlib.
This is a benchmark, not a test: the figures depend on the machine and on its load.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

from benchlib import write_result  # noqa: E402
from kdmarl_student.scenarios import make_mpe2_env  # noqa: E402
from kdmarl_teacher.envs import make_env  # noqa: E402

SCENARIOS = {"simple_spread": {"N": 3}, "simple_speaker_listener": {}, "simple_reference": {}}
BATCH_SIZES = (1, 64, 1024)


def time_loop(step, min_seconds: float, min_calls: int) -> tuple[int, float]:
    """Call step(i) until both min_seconds and min_calls are reached; returns (calls, seconds)."""
    calls, start = 0, time.perf_counter()
    while True:
        step(calls)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and calls >= min_calls:
            return calls, elapsed


def bench_port(name: str, params: dict, B: int, dtype: torch.dtype, seconds: float) -> float:
    env = make_env(name, num_envs=B, seed=0, dtype=dtype, **params)
    gen = torch.Generator().manual_seed(0)
    pool = [torch.stack([torch.randint(0, n, (B,), generator=gen) for n in env.n_actions], dim=1) for _ in range(64)]
    for i in range(30):  # warm-up (allocator, first auto-reset)
        env.step(pool[i % 64])
    calls, elapsed = time_loop(lambda i: env.step(pool[i % 64]), seconds, 10)
    return calls * B / elapsed


def bench_mpe2_loop(name: str, params: dict, B: int, seconds: float) -> float:
    port = make_env(name, num_envs=1, **params)
    envs = [make_mpe2_env(port.spec) for _ in range(B)]
    for b, e in enumerate(envs):
        e.reset(seed=b)
    rng = np.random.default_rng(0)
    pool = [[{n: int(rng.integers(0, k)) for n, k in zip(port.agent_names, port.n_actions, strict=True)}
             for _ in range(B)] for _ in range(16)]

    def step(i: int) -> None:
        actions = pool[i % 16]
        for b, e in enumerate(envs):
            if not e.agents:
                e.reset()
            e.step(actions[b])

    step(0)
    calls, elapsed = time_loop(step, seconds, 2)
    return calls * B / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="simple_spread only, 0.3 s per figure")
    parser.add_argument("--seconds", type=float, default=None, help="minimum timing per figure (default 2, quick 0.3)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: mpe2 uses one core)")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else (0.3 if args.quick else 2.0)
    torch.set_num_threads(args.threads)
    scenarios = {"simple_spread": SCENARIOS["simple_spread"]} if args.quick else SCENARIOS

    rows, targets = [], []
    for name, params in scenarios.items():
        mpe2_rates = {B: bench_mpe2_loop(name, params, B, seconds) for B in BATCH_SIZES}
        for B in BATCH_SIZES:
            port32 = bench_port(name, params, B, torch.float32, seconds)
            port64 = bench_port(name, params, B, torch.float64, seconds)
            row = {
                "scenario": name,
                "B": B,
                "mpe2 loop (steps/s)": round(mpe2_rates[B]),
                "port float32 (steps/s)": round(port32),
                "port float64 (steps/s)": round(port64),
                "speed-up float32": round(port32 / mpe2_rates[B], 1),
            }
            rows.append(row)
            print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        if name == "simple_spread":
            speedup = next(r["speed-up float32"] for r in rows if r["scenario"] == name and r["B"] == 1024)
            targets.append({"what": "port vs mpe2 loop at B = 1024 (simple_spread, float32)", "target": ">= 100x",
                            "reached": f"{speedup}x", "met": speedup >= 100})
    write_result(
        "envs",
        title="Batched MPE port vs mpe2 (joint env-steps/s, CPU)",
        columns=["scenario", "B", "mpe2 loop (steps/s)", "port float32 (steps/s)", "port float64 (steps/s)",
                 "speed-up float32"],
        rows=rows,
        targets=targets,
        notes=[
            f"torch intra-op threads: {args.threads}; mpe2 parallel_env copies stepped one after another in Python.",
            "Random actions drawn in advance; auto-reset (port) and reset() (mpe2) included.",
            "float64 is the parity mode (bitwise mpe2 physics, correctly rounded sqrt); float32 is for training.",
            "Absolute figures move with the load on the machine; the ratio is the figure.",
        ],
        extra={"seconds_per_figure": seconds, "torch_version": torch.__version__, "torch_threads": args.threads},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
