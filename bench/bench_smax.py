#!/usr/bin/env python3
"""SMAX adapter throughput against raw JaxMARL stepping at the same B (issue 12 §2: the adapter's overhead).

Both step B `HeuristicEnemySMAX` battles with uniformly random *valid* actions, compile excluded:
- raw: one `jax.jit` of (avail masks, categorical sample over them, `vmap(env.step)`), the state kept in jax;
- adapter: `make_env("smax:<map>", num_envs=B)` as the MAPPO teacher uses it (masks to torch, masked sampling
  in torch, `env.step`, observations/state/rewards/masks back to torch by DLPack).
A "joint env-step" advances one battle by one step (all allies act).

    python bench/bench_smax.py [--maps 3m 2s3z 3s5z] [--batch 256] [--seconds 4] [--quick]

Writes bench/results/smax_env.json through benchlib. A benchmark, not a test: figures move with the load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def raw_steps_per_s(env, batch: int, seconds: float) -> float:
    """Joint env-steps/s of raw JaxMARL: sampling and stepping in one jitted function."""
    import jax  # noqa: PLC0415 (jax only for SMAX)
    import jax.numpy as jnp  # noqa: PLC0415

    raw, agents = env.raw, env.raw.agents

    def step(carry):
        key, state = carry
        key, k_act, k_step = jax.random.split(key, 3)
        avail = jax.vmap(raw.get_avail_actions)(state)
        logits = jnp.stack([jnp.log(avail[a].astype(jnp.float32)) for a in agents], axis=1)  # [B, N, A]
        acts = jax.random.categorical(k_act, logits)
        _, state, _, _, _ = jax.vmap(raw.step)(jax.random.split(k_step, batch), state,
                                               {a: acts[:, i] for i, a in enumerate(agents)})
        return key, state

    fn = jax.jit(step)
    _, state = jax.vmap(raw.reset)(jax.random.split(jax.random.PRNGKey(0), batch))
    carry = fn(fn((jax.random.PRNGKey(1), state)))  # compile: reset's and step's state types differ
    jax.block_until_ready(carry)
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        carry = fn(carry)
        calls += 1
    jax.block_until_ready(carry)
    return calls * batch / (time.perf_counter() - t0)


def adapter_steps_per_s(env, seconds: float) -> float:
    """Joint env-steps/s of the adapter with masked sampling in torch, as in MAPPO's rollout."""
    import torch  # noqa: PLC0415
    from kdmarl_teacher.core.networks import apply_action_mask, sample_actions  # noqa: PLC0415

    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        mask = env.available_actions()
        env.step(sample_actions(apply_action_mask(torch.zeros(mask.shape), mask), gen))

    step(), step()  # compile
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        calls += 1
    return calls * env.num_envs / (time.perf_counter() - t0)


def main() -> int:
    import torch  # noqa: PLC0415
    from benchlib import write_result  # noqa: PLC0415
    from kdmarl_teacher.envs import make_env  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--maps", nargs="+", default=["3m", "2s3z", "3s5z"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--quick", action="store_true", help="smoke check: 3m only, 1 s per measurement")
    args = parser.parse_args()
    if args.quick:
        args.maps, args.seconds = ["3m"], 1.0
    torch.set_num_threads(1)
    rows = []
    for name in args.maps:
        env = make_env(f"smax:{name}", num_envs=args.batch, seed=0)
        raw = raw_steps_per_s(env, args.batch, args.seconds)
        adapted = adapter_steps_per_s(env, args.seconds)
        spec = env.spec
        rows.append({"map": name, "B": args.batch, "agents": spec.n_agents, "obs_dim": spec.agents[0].obs_dim,
                     "state_dim": spec.state_dim, "actions": spec.agents[0].n_actions,
                     "raw_jaxmarl_steps_per_s": round(raw), "adapter_steps_per_s": round(adapted),
                     "adapter_vs_raw": round(adapted / raw, 3), "compile_counts": str(env.compile_counts())})
        print(rows[-1])
    write_result("smax_env" + ("_quick" if args.quick else ""),
                 title="SMAX adapter vs raw JaxMARL stepping (joint env-steps/s, CPU jax, random valid actions)",
                 columns=["map", "B", "agents", "obs_dim", "state_dim", "actions", "raw_jaxmarl_steps_per_s",
                          "adapter_steps_per_s", "adapter_vs_raw", "compile_counts"],
                 rows=rows,
                 notes=["raw: sampling over the masks and vmap(env.step) in one jax.jit, state kept in jax; adapter: "
                        "make_env('smax:<map>') with masks and masked sampling in torch, DLPack both ways",
                        "compile excluded (two warm-up calls each); compile_counts: jitted reset/step compilations "
                        "of the adapter after the run (1 each = no recompilation)",
                        "torch intra-op threads 1; jax on CPU with its default threads; the machine is shared"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
