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
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from kdmarl_student.stats import ci95_half_width

from kdmarl_teacher.checkpoint import Teacher, load_teacher
from kdmarl_teacher.networks import actor_inputs_all, apply_action_mask, sample_actions
from kdmarl_teacher.references import SPREAD_REFERENCES


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


def mean_ci(x: torch.Tensor) -> dict[str, float]:
    """Mean, sample std and 95 % CI half-width of a 1-D sample; the interval is kdmarl_student.stats' (Student t),
    the one bundle evaluation reports too, so teacher and bundle tables agree."""
    x = x.double().cpu()
    n = x.numel()
    mean = float(x.mean())
    std = float(x.std()) if n > 1 else 0.0
    half = ci95_half_width(std, n)
    return {"mean": mean, "ci95": half, "low": mean - half, "high": mean + half, "std": std, "n": n}


def make_eval_env(teacher: Teacher, episodes: int, device: str | torch.device, dtype: torch.dtype = torch.float64
                  ) -> Any:
    """The evaluation env of every teacher-side figure (`kdmarl evaluate`, distill's report): `episodes`
    environments of the scenario the teacher was trained on, float64 (see the module docstring)."""
    from kdmarl_teacher.envs import make_env  # noqa: PLC0415

    params = dict(teacher.config.get("env_params", {}))
    return make_env(teacher.config["scenario"], num_envs=episodes, seed=0, device=device, dtype=dtype, **params)


@torch.no_grad()
def run_episodes(env: Any, policy: str | Callable[[torch.Tensor], torch.Tensor], seeds: list[int],
                 teacher: Teacher | None, generator: torch.Generator) -> dict[str, Any]:
    """One episode per environment from the mpe2 seeds; policy in {"deterministic", "stochastic", "random"}
    (the teacher's or uniform), or a callable obs [E, N, obs_dim_max] float32 -> actions long [E, N] (students).

    Returns team returns [E], per-agent returns [E, N] and the task metrics [E] of the episodes.
    """
    if hasattr(env, "available_actions"):  # SMAX: masks, and battles end at different steps
        return run_masked_episodes(env, policy, seeds, teacher, generator)
    if hasattr(env, "reset_from_mpe2_seeds"):
        obs, _state = env.reset_from_mpe2_seeds(seeds)  # obs [E, N, obs_dim_max]
    else:  # an env without mpe2 seeding (e.g. the PettingZoo adapter): reproducible, but not mpe2's worlds
        obs, _state = env.reset(seed=seeds[0])
    E, N = env.num_envs, env.n_agents
    n_actions = torch.tensor(env.n_actions, device=obs.device)  # [N]
    recurrent = teacher is not None and teacher.actor.recurrent
    h = teacher.actor.initial_state(E * N) if recurrent else None
    while True:
        if callable(policy):
            actions = policy(obs.float())
        elif policy == "random":
            u = torch.rand(E, N, generator=generator, device=obs.device)
            actions = (u * n_actions).long().clamp(max=n_actions - 1)  # uniform over each agent's valid actions
        elif recurrent:  # carry the GRU state through the episode (all E episodes start and end together)
            logits, _, h = teacher.actor.step(actor_inputs_all(obs.float()).reshape(E * N, -1), h)
            logits = logits.view(E, N, -1)
            actions = logits.argmax(-1) if policy == "deterministic" else sample_actions(logits, generator)
        else:
            actions = teacher.act(obs.float(), deterministic=policy == "deterministic", generator=generator)
        obs, _state, _rewards, dones, info = env.step(actions)
        if bool(dones.all()):
            break
        if bool(dones.any()):
            raise RuntimeError("environments of one evaluation batch ended at different steps")
    per_agent = info["episode_returns"].double()  # [E, N]
    return {"team": per_agent.mean(-1), "per_agent": per_agent,
            "metrics": {k: v.double() for k, v in info.get("metrics", {}).items()}}


@torch.no_grad()
def run_masked_episodes(env: Any, policy: str | Callable[[torch.Tensor], torch.Tensor], seeds: list[int],
                        teacher: Teacher | None, generator: torch.Generator) -> dict[str, Any]:
    """`run_episodes` for an env with per-step action masks (SMAX): battle b from ``env.reset_from_seeds``
    seed b, stepped until every battle has ended once (each battle's first episode is the one counted; battles
    that ended keep stepping into their next episode, ignored). The teacher's and the random policy pick only
    available actions (``env.available_actions()``); random = uniform over the available ones. A callable
    policy with a ``mask`` parameter (students: ``StudentTeam.act``, a bundle's policies) gets the mask bool
    [E, N, A] too; one without gets the observations only and its actions are stepped as given (SMAX ignores
    unavailable ones)."""
    takes_mask = callable(policy) and "mask" in inspect.signature(policy).parameters
    obs, _state = env.reset_from_seeds(seeds)
    E, N = env.num_envs, env.n_agents
    recurrent = teacher is not None and teacher.actor.recurrent
    h = teacher.actor.initial_state(E * N) if recurrent else None
    finished = torch.zeros(E, dtype=torch.bool, device=obs.device)
    per_agent = torch.zeros(E, N, dtype=torch.float64, device=obs.device)
    metrics: dict[str, torch.Tensor] = {}
    for _ in range(env.spec.max_cycles + 1):
        mask = env.available_actions()  # [E, N, A]
        if callable(policy):
            actions = policy(obs.float(), mask=mask) if takes_mask else policy(obs.float())
        elif policy == "random":
            actions = sample_actions(apply_action_mask(torch.zeros(mask.shape, device=obs.device), mask), generator)
        else:
            if recurrent:
                logits, _, h = teacher.actor.step(actor_inputs_all(obs.float()).reshape(E * N, -1), h)
                logits = logits.view(E, N, -1)
            else:
                logits = teacher.actor(actor_inputs_all(obs.float()))
            logits = apply_action_mask(logits, mask)
            actions = logits.argmax(-1) if policy == "deterministic" else sample_actions(logits, generator)
        obs, _state, _rewards, dones, info = env.step(actions)
        new = dones & ~finished
        if bool(new.any()):
            per_agent[new] = info["episode_returns"][new].double()
            for k, v in info.get("metrics", {}).items():
                metrics.setdefault(k, torch.zeros(E, dtype=torch.float64, device=obs.device))[new] = v[new].double()
            finished |= dones
        if bool(finished.all()):
            break
        if recurrent:
            h = h * (~dones).repeat_interleave(N).float().unsqueeze(-1)
    if not bool(finished.all()):
        raise RuntimeError(f"battles did not end within max_steps + 1 = {env.spec.max_cycles + 1} steps")
    return {"team": per_agent.mean(-1), "per_agent": per_agent, "metrics": metrics}


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
            "team_return": mean_ci(out["team"]),
            "agent_returns": {name: float(out["per_agent"][:, i].mean())
                              for i, name in enumerate(env.spec.agent_names)},
            "metrics": {k: mean_ci(v) for k, v in out["metrics"].items()},
            "episode_team_returns": [round(float(r), 6) for r in out["team"]],
        }
        if "won" in out["metrics"]:  # SMAX: the win rate (fraction of battles won) with its 95 % interval
            results[policy]["win_rate"] = mean_ci(out["metrics"]["won"])
    for policy in ("deterministic", "stochastic"):
        diff = team[policy] - team["random"]
        results[policy]["improvement_over_random"] = mean_ci(diff)  # paired on the same seeds
    if hasattr(env, "reset_from_mpe2_seeds"):
        seeding = "mpe2 reset(seed=s) worlds via reset_from_mpe2_seeds; env port in float64"
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


def run_student_episodes(env: Any, students: Any, seeds: list[int], generator: torch.Generator) -> dict[str, Any]:
    """`run_episodes` for a student team: its memory is reset for the episodes about to start."""
    students.begin(len(seeds))
    return run_episodes(env, students.act, seeds, None, generator)


@torch.no_grad()
def evaluate_students(teacher: Teacher, students: Any, *, episodes: int, seed: int, device: str = "cpu"
                      ) -> dict[str, dict[str, Any]]:
    """Greedy teacher, greedy students (distill's ``StudentTeam``: ``begin(E)`` starts the episodes, resetting
    students with memory, and ``act`` steps them) and uniform random on the same mpe2 seeds
    [seed, seed + episodes): distill_report.json's figures.

    Same environment (`make_eval_env`) and the same teacher/random episodes as `evaluate` (`run_episodes`), so the
    figures agree with `kdmarl evaluate`. Team return = mean over agents of each agent's episode sum (DESIGN.md
    §5), with a 95 % CI.
    """
    env = make_eval_env(teacher, episodes, device)
    seeds = list(range(seed, seed + episodes))
    gen = torch.Generator(device=device).manual_seed(seed)
    runs = {"teacher": run_episodes(env, "deterministic", seeds, teacher, gen),
            "random": run_episodes(env, "random", seeds, None, gen),
            "students": run_student_episodes(env, students, seeds, gen)}
    out = {}
    for name, r in runs.items():
        stats = mean_ci(r["team"])
        out[name] = {"team_return": stats["mean"], "ci95": stats["ci95"], "episodes": episodes,
                     "seeds": [seed, seed + episodes - 1],
                     **{k: float(v.mean()) for k, v in r["metrics"].items()}}
        if "won" in r["metrics"]:  # SMAX: the win rate with its 95 % interval, as `evaluate` reports it
            wins = mean_ci(r["metrics"]["won"])
            out[name].update(win_rate=wins["mean"], win_rate_ci95=wins["ci95"])
    return out


def console() -> Any:
    """A rich console; piped output (logs, `make demo`) gets 120 columns instead of rich's 80."""
    from rich.console import Console  # noqa: PLC0415

    return Console() if sys.stdout.isatty() else Console(width=120)


def print_table(report: dict[str, Any], run: str) -> None:
    from rich.table import Table  # noqa: PLC0415

    res = report["results"]
    metric_names = sorted({k for r in res.values() for k in r["metrics"]})
    wins = any("win_rate" in r for r in res.values())  # SMAX
    seed_kind = "seeds" if str(report.get("seeding", "")).startswith("SMAX") else "mpe2 seeds"
    table = Table(title=f"{run}: {report['scenario']['name']}, {report['episodes']} episodes, "
                        f"{seed_kind} {report['seeds'][0]}-{report['seeds'][1]}")
    table.add_column("policy")
    table.add_column("team return (95% CI)", justify="right")
    if wins:
        table.add_column("win rate (95% CI)", justify="right")
    for m in metric_names:
        table.add_column(m, justify="right")
    for policy, r in res.items():
        tr = r["team_return"]
        cells = [f"{tr['mean']:.3f} ± {tr['ci95']:.3f}"]
        if wins:
            wr = r.get("win_rate")
            cells.append(f"{wr['mean']:.3f} ± {wr['ci95']:.3f}" if wr else "-")
        cells += [f"{r['metrics'][m]['mean']:.3f}" if m in r["metrics"] else "-" for m in metric_names]
        table.add_row(policy, *cells)
    for name, value in report.get("references", {}).items():
        if isinstance(value, float):
            table.add_row(f"[dim]ref: {name}[/dim]", f"[dim]{value:.2f}[/dim]",
                          *["" for _ in range(len(metric_names) + int(wins))])
    console().print(table)


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
        from kdmarl_teacher.evaluate_bundle import evaluate_bundle_report, print_bundle_agents  # noqa: PLC0415

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
