"""`kdmarl evaluate runs/NAME`: the teacher on fixed seeds with the metric definitions of DESIGN.md §5.

- Team return of an episode = mean over agents of each agent's summed reward; reported as the mean over the
  episodes with a 95 % confidence interval (Student t, n-1 degrees of freedom).
- The same seeds for every policy: deterministic (argmax), stochastic (sampled, fixed generator seed) and
  uniformly random actions (over each agent's valid actions), so differences are not seed luck.
- Seed s means the start state mpe2 gives for `reset(seed=s)`: the batched port's `reset_from_mpe2_seeds`
  rebuilds those worlds exactly. The port runs in float64 here (it matches mpe2 to ~1e-14; float32 is for
  training), so these figures are the ones an mpe2 rollout of the same policy would give.
- Task figures next to the return (landmarks covered / collisions for simple_spread, goal distance for
  speaker-listener), averaged over the same episodes.

`kdmarl evaluate --bundle bundles/NAME` evaluates a deployable bundle alone (`evaluate_bundle.py`); this module
is the teacher's evaluation and the command line of both, whose tables share `print_table`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from kdmarl_student.stats import mean_ci

from kdmarl_teacher.algos.teacher import Teacher, load_teacher
from kdmarl_teacher.core.episodes import make_eval_env, run_episodes
from kdmarl_teacher.core.networks import actor_inputs_all
from kdmarl_teacher.core.references import SPREAD_REFERENCES
from kdmarl_teacher.evaluation.bundle import evaluate_bundle_report
from kdmarl_teacher.evaluation.tables import print_bundle_agents, print_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", help="run directory (holding teacher.pt) or a teacher.pt file")
    parser.add_argument("--bundle", metavar="DIR",
                        help="evaluate a bundle alone instead (teacher actor, students, random; ONNX on mpe2)")
    parser.add_argument("--episodes", type=int, default=200, help="episodes = seeds (default 200, use >= 100)")
    parser.add_argument("--seed-start", type=int, default=1000, help="first mpe2 seed (default 1000)")
    parser.add_argument("--stochastic", action="store_true",
                        help="also headline the stochastic policy (both are always computed)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--render", metavar="GIF", help="save a GIF of the first episode (deterministic)")
    parser.add_argument("--json", metavar="FILE", help="write the results here (default RUN/eval.json)")










def evaluate(teacher: Teacher, episodes: int = 200, seed_start: int = 1000, device: str = "cpu") -> dict[str, Any]:
    """All three policies on seeds seed_start .. seed_start+episodes-1; a JSON-ready dict."""
    seeds = list(range(seed_start, seed_start + episodes))
    env = make_eval_env(teacher, episodes, device)
    results: dict[str, Any] = {}
    team: dict[str, torch.Tensor] = {}
    for policy in ("deterministic", "stochastic", "random"):
        gen = torch.Generator(device=device)
        gen.manual_seed(seed_start)
        out = run_episodes(env, policy, seeds, teacher, gen)
        team[policy] = out["team"]
        results[policy] = {
            "team_return": mean_ci(out["team"].cpu()),
            "agent_returns": {name: float(out["per_agent"][:, i].mean())
                              for i, name in enumerate(env.spec.agent_names)},
            "metrics": {k: mean_ci(v.cpu()) for k, v in out["metrics"].items()},
            "episode_team_returns": [round(float(r), 6) for r in out["team"]],
        }
        if "won" in out["metrics"]:  # SMAX, GRF: the win rate (fraction of battles won) with its 95 % interval
            results[policy]["win_rate"] = mean_ci(out["metrics"]["won"].cpu())
    for policy in ("deterministic", "stochastic"):
        diff = team[policy] - team["random"]
        results[policy]["improvement_over_random"] = mean_ci(diff.cpu())  # paired on the same seeds
    if hasattr(env, "reset_from_mpe2_seeds"):
        seeding = "mpe2 reset(seed=s) worlds via reset_from_mpe2_seeds; env port in float64"
    elif env.spec.name.startswith("grf:"):
        seeding = "GRF episode s = engine seed s (env.reset_from_seeds); first episode per seed"
    elif hasattr(env, "reset_from_seeds"):
        seeding = "SMAX battle s = JaxMARL reset from PRNGKey(s) (env.reset_from_seeds); first episode per seed"
    else:
        seeding = f"env.reset(seed={seed_start}) (no mpe2 seeding)"
    report: dict[str, Any] = {
        "scenario": env.spec.to_dict(),
        "episodes": episodes,
        "seeds": [seeds[0], seeds[-1]],
        "seeding": seeding,
        "team_return_definition": "per episode, mean over agents of each agent's summed reward (DESIGN.md §5)",
        "teacher_global_step": teacher.global_step,
        "results": results,
    }
    if env.spec.name == "simple_spread" and env.spec.params.get("N") == 3 and env.spec.max_cycles == 25:
        report["references"] = {**SPREAD_REFERENCES, "note": "DESIGN.md §5, seeds 1000-1199, 200 episodes"}
    return report










def render_episode(teacher: Teacher, seed: int, path: str | Path, fps: int = 10) -> float:
    """Roll the deterministic teacher in the REAL mpe2 env from reset(seed) and save a GIF (matplotlib frames,
    no display). Returns the episode's team return in mpe2 (a cross-check of the port's figure)."""
    import imageio.v2 as imageio  # noqa: PLC0415
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from kdmarl_student.scenarios import make_mpe2_env  # noqa: PLC0415

    spec = teacher.spec
    env = make_mpe2_env(spec)
    obs, _ = env.reset(seed=seed)
    world = env.unwrapped.world
    device = teacher.actor.valid_actions.device
    names = spec.agent_names
    total = np.zeros(len(names))
    frames = []

    def frame(t: int) -> np.ndarray:
        fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
        for lm in world.landmarks:
            ax.add_patch(plt.Circle(lm.state.p_pos, lm.size, color=np.clip(lm.color, 0, 1), alpha=0.8))
        for ag in world.agents:
            ax.add_patch(plt.Circle(ag.state.p_pos, ag.size, color=np.clip(ag.color, 0, 1), ec="k"))
        ax.set_xlim(-2, 2)
        ax.set_ylim(-2, 2)
        ax.set_aspect("equal")
        ax.set_title(f"{spec.name} seed {seed} step {t} return {total.mean():.2f}", fontsize=8)
        fig.canvas.draw()
        img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        plt.close(fig)
        return img

    frames.append(frame(0))
    h = teacher.actor.initial_state(len(names))
    for t in range(spec.max_cycles):
        padded = torch.zeros(1, len(names), spec.obs_dim_max, device=device)
        for i, n in enumerate(names):
            padded[0, i, : len(obs[n])] = torch.as_tensor(obs[n], dtype=torch.float32)
        logits, _, h = teacher.actor.step(actor_inputs_all(padded)[0], h)  # [N, A]
        actions = logits.argmax(-1).tolist()
        obs, rewards, _term, _trunc, _ = env.step({n: int(a) for n, a in zip(names, actions, strict=True)})
        total += [rewards[n] for n in names]
        frames.append(frame(t + 1))
        if not obs:
            break
    env.close()
    imageio.mimsave(str(path), frames, duration=1.0 / fps, loop=0)
    return float(total.mean())


def run(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if args.bundle:
        if args.run or args.render:
            raise ValueError("--bundle evaluates a bundle alone: give no run directory and no --render")
        report = evaluate_bundle_report(args.bundle, episodes=args.episodes, seed_start=args.seed_start)
        print_table(report, str(args.bundle))
        print_bundle_agents(report)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
            print(f"wrote {args.json}")
        return 0
    if not args.run:
        raise ValueError("give a run directory (or teacher.pt), or --bundle DIR")
    teacher = load_teacher(args.run, args.device)
    report = evaluate(teacher, episodes=args.episodes, seed_start=args.seed_start, device=args.device)
    report["headline_policy"] = "stochastic" if args.stochastic else "deterministic"
    run_dir = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    print_table(report, str(args.run))
    if args.render:
        ret = render_episode(teacher, args.seed_start, args.render)
        report["render"] = {"path": str(args.render), "seed": args.seed_start, "mpe2_team_return": ret}
        print(f"wrote {args.render} (seed {args.seed_start}, mpe2 team return {ret:.3f})")
    out = Path(args.json) if args.json else run_dir / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
