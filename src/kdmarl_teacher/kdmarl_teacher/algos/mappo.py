"""MAPPO teacher training (`kdmarl train`), CleanRL style: the whole algorithm in one readable function.

CTDE as in DESIGN.md §4: a parameter-shared actor on each agent's padded observation + agent one-hot, a
centralized critic on the global state + agent one-hot, GAE, clipped PPO, value normalization, entropy bonus,
grad-norm clipping, orthogonal init, linear lr annealing. B environments step as one tensor batch
(`kdmarl_teacher.envs`); every agent of every environment is one PPO sample.

Determinism and `--resume`: all randomness after network init comes from ONE `torch.Generator` (action sampling,
minibatch permutations) and from the environment, which is reset at the start of every iteration with a seed
derived from (seed, iteration). So the state at an iteration boundary is fully described by the networks,
optimizer, value normalizer, generator state and iteration counter, and `checkpoint.pt` stores exactly those:
an interrupted-and-resumed run reproduces the uninterrupted one bit for bit. (Resetting per iteration costs
nothing on MPE: episodes have a fixed length, so with `num_steps` a multiple of `max_cycles` every iteration
holds whole episodes; otherwise the cut episodes are bootstrapped with the critic, i.e. treated as truncated.)

Divergence: every minibatch's losses and gradient norm are checked before the optimizer step, and all weights after
each iteration; the first NaN/Inf stops the run with `errors.NonFiniteError` naming the iteration and what went
non-finite, BEFORE anything is checkpointed, so checkpoint.pt and teacher.pt keep the last good iteration.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdmarl_teacher import envs
from kdmarl_teacher.algos.config import TeacherConfig
from kdmarl_teacher.algos.teacher import TEACHER_FILE, teacher_payload
from kdmarl_teacher.core.losses import gae
from kdmarl_teacher.core.networks import (
    Actor,
    Critic,
    actor_inputs_all,
    apply_action_mask,
    critic_inputs_all,
    sample_actions,
)
from kdmarl_teacher.core.training_run import SEED_STRIDE, TrainingRun, anneal_lr, optimizer_to_cpu
from kdmarl_teacher.core.value_norm import IdentityNorm, ValueNorm


def make_env(cfg: TeacherConfig, device: torch.device, num_envs: int | None = None, seed: int | None = None) -> Any:
    """The run's batched environments (`envs.contract.BatchedEnv`), float32 for training."""
    return envs.make_env(cfg.scenario, num_envs=num_envs or cfg.num_envs, seed=cfg.seed if seed is None else seed,
                     device=device, dtype=torch.float32, **cfg.env_params)


def value_loss_fn(new_v: torch.Tensor, old_v: torch.Tensor, target: torch.Tensor, clip: float | None,
                  huber_delta: float) -> torch.Tensor:
    """MAPPO's value loss, all in normalized units: optionally clipped around the old prediction, Huber or MSE."""

    def err(pred: torch.Tensor) -> torch.Tensor:
        if huber_delta > 0:
            return nn.functional.huber_loss(pred, target, delta=huber_delta, reduction="none")
        return 0.5 * (pred - target) ** 2

    loss = err(new_v)
    if clip is not None:
        clipped = old_v + (new_v - old_v).clamp(-clip, clip)
        loss = torch.max(loss, err(clipped))
    return loss.mean()


def build_networks(cfg: TeacherConfig, env: Any) -> tuple[dict, dict]:
    """Constructor kwargs of actor and critic (stored in teacher.pt so load_teacher can rebuild them)."""
    common = {"activation": cfg.activation, "input_norm": cfg.input_norm, "layer_norm": cfg.layer_norm,
              "use_gru": cfg.use_gru, "gru_hidden": cfg.gru_hidden}
    actor_kwargs = {"obs_dim_max": int(env.obs_dim_max), "n_agents": int(env.n_agents),
                    "n_actions": [int(a) for a in env.n_actions], "hidden": list(cfg.actor_hidden), **common}
    critic_kwargs = {"state_dim": int(env.state_dim), "n_agents": int(env.n_agents),
                     "hidden": list(cfg.critic_hidden), "time_feature": bool(cfg.critic_time), **common}
    return actor_kwargs, critic_kwargs


def train(cfg: TeacherConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
          stop_after_iterations: int | None = None) -> Path:
    """Train a MAPPO teacher; writes config.yaml, metrics.csv, tb/, checkpoint.pt and teacher.pt in `out_dir`.

    `stop_after_iterations` stops early as if the run were interrupted after that many iterations (the tests
    use it to check that `resume=True` continues bit-exactly). Returns the path of teacher.pt.
    """
    cfg.validate()
    out = Path(out_dir)
    run = TrainingRun(out, resume=resume, checkpoint_every=cfg.checkpoint_every, torch_threads=cfg.torch_threads,
                      seed=cfg.seed)
    teacher_path, device = out / TEACHER_FILE, torch.device(cfg.device)
    env = make_env(cfg, device)
    B, T, N = cfg.num_envs, cfg.num_steps, int(env.n_agents)

    # ---- networks, value normalizer, optimizer -----------------------------------------------------------------
    actor_kwargs, critic_kwargs = build_networks(cfg, env)
    actor = Actor(**actor_kwargs).to(device)
    critic = Critic(**critic_kwargs).to(device)
    norm: nn.Module = (ValueNorm() if cfg.value_norm else IdentityNorm()).to(device)
    params = [*actor.parameters(), *critic.parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)

    steps_per_iter = B * T
    num_iterations = max(1, cfg.total_steps // steps_per_iter)
    start_iteration, wall_offset = 0, 0.0
    if resume:
        ckpt = run.load("cpu")
        cfg.check_resume(ckpt["config"])
        actor.load_state_dict(ckpt["actor"]["state_dict"])
        critic.load_state_dict(ckpt["critic"]["state_dict"])
        norm.load_state_dict(ckpt["value_norm"]["state_dict"])
        ts = ckpt["train_state"]
        optimizer.load_state_dict(ts["optimizer"])
        gen.set_state(ts["generator"].to(gen.get_state().device))
        torch.set_rng_state(ts["torch_rng"])
        start_iteration, wall_offset = int(ckpt["iteration"]), float(ts["wall_time"])

    # ---- rollout storage ---------------------------------------------------------------------------------------
    Da, Dc = actor.in_dim, critic.in_dim
    x_buf = torch.zeros(T, B, N, Da, device=device)  # actor inputs
    c_buf = torch.zeros(T, B, N, Dc, device=device)  # critic inputs
    act_buf = torch.zeros(T, B, N, dtype=torch.long, device=device)
    logp_buf = torch.zeros(T, B, N, device=device)
    val_buf = torch.zeros(T, B, N, device=device)  # critic outputs, NORMALIZED units
    rew_buf = torch.zeros(T, B, N, device=device)
    done_buf = torch.zeros(T, B, dtype=torch.bool, device=device)  # episode ended with step t
    start_buf = torch.zeros(T, B, dtype=torch.bool, device=device)  # step t starts an episode (GRU reset)
    recurrent = actor.recurrent
    # Environments with per-step action masks (SMAX: env.available_actions()); MPE has none and takes no mask
    # path at all (its computation stays bit-identical). Masked logits are used to sample AND in the loss.
    masked = env.available_actions() is not None
    mask_buf = torch.zeros(T, B, N, actor.n_actions_max, dtype=torch.bool, device=device) if masked else None

    run.start(cfg, "config.yaml", start_iteration=start_iteration, resume_step=start_iteration * B * T,
              wall_before=wall_offset, progress=progress, bar_total=num_iterations * steps_per_iter,
              bar_initial=start_iteration * steps_per_iter, desc=f"train {cfg.scenario}", unit="step",
              unit_scale=True)
    run.watch({"actor": actor, "critic": critic, "value_norm": norm})
    last_return = float("nan")

    def checkpoint(iteration_done: int) -> None:
        payload = teacher_payload(cfg.to_dict(), env.spec, actor=actor, actor_kwargs=actor_kwargs,
                                  critic=critic, critic_kwargs=critic_kwargs, value_norm=norm,
                                  value_norm_enabled=cfg.value_norm, global_step=iteration_done * steps_per_iter,
                                  iteration=iteration_done)
        train_state = {"optimizer": optimizer_to_cpu(optimizer.state_dict()), "generator": gen.get_state().cpu(),
                       "torch_rng": torch.get_rng_state(), "wall_time": run.wall()}
        run.save(iteration_done, {run.ckpt_path: {**payload, "train_state": train_state}, teacher_path: payload})

    iteration = start_iteration
    for iteration in range(start_iteration, num_iterations):
        it_t0 = time.perf_counter()
        if cfg.anneal_lr:
            anneal_lr(optimizer, cfg.lr, iteration, num_iterations)

        # ---- rollout ----------------------------------------------------------------------------------------
        obs, state = env.reset(seed=cfg.seed * SEED_STRIDE + iteration)  # obs [B, N, Do], state [B, S]
        h_a = actor.initial_state(B * N)
        h_c = critic.initial_state(B * N)
        starting = torch.ones(B, dtype=torch.bool, device=device)
        ep_t = torch.zeros(B, device=device)  # steps taken in each environment's current episode
        max_cycles = float(env.spec.max_cycles)
        ep_returns: list[torch.Tensor] = []  # team return per finished episode
        ep_metrics: dict[str, list[torch.Tensor]] = {}
        with torch.no_grad():
            for t in range(T):
                x = actor_inputs_all(obs.float())  # [B, N, Da]
                c = critic_inputs_all(state.float(), N, ep_t / max_cycles if cfg.critic_time else None)  # [B, N, Dc]
                if recurrent:
                    keep = (~starting).repeat_interleave(N).float().unsqueeze(-1)  # [B*N, 1]
                    h_a, h_c = h_a * keep, h_c * keep
                logits, _, h_a = actor.step(x.reshape(B * N, Da), h_a)  # [B*N, A]
                if mask_buf is not None:
                    mask_buf[t] = env.available_actions()  # [B, N, A] of the state the action is taken in
                    logits = apply_action_mask(logits, mask_buf[t].reshape(B * N, -1))
                value, h_c = critic.step(c.reshape(B * N, Dc), h_c)  # [B*N]
                action = sample_actions(logits, gen)  # [B*N]
                logp = torch.log_softmax(logits, -1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
                x_buf[t], c_buf[t], start_buf[t] = x, c, starting
                act_buf[t], logp_buf[t], val_buf[t] = action.view(B, N), logp.view(B, N), value.view(B, N)
                obs, state, reward, done, info = env.step(action.view(B, N))
                reward = reward.float()  # [B, N]
                if cfg.team_reward:
                    reward = reward.mean(-1, keepdim=True).expand(B, N)
                rew_buf[t], done_buf[t] = reward, done
                if bool(done.any()):
                    ep_returns.append(info["episode_returns"][done].float().mean(-1))  # [n_done]
                    for key, v in info.get("metrics", {}).items():
                        ep_metrics.setdefault(key, []).append(v[done].float())
                starting = done
                ep_t = torch.where(done, 0.0, ep_t + 1.0)
            # bootstrap value of the observation after the last step (only used where the episode was cut)
            if recurrent:
                keep = (~starting).repeat_interleave(N).float().unsqueeze(-1)
                h_c = h_c * keep
            c_next = critic_inputs_all(state.float(), N, ep_t / max_cycles if cfg.critic_time else None)
            next_v, _ = critic.step(c_next.reshape(B * N, Dc), h_c)
            values = norm.denormalize(val_buf)  # [T, B, N]
            advantages, returns = gae(rew_buf, values, norm.denormalize(next_v.view(B, N)), done_buf,
                                      gamma=cfg.gamma, lam=cfg.gae_lambda)
            norm.update(returns)  # MAPPO updates ValueNorm with the targets before regressing them

        # ---- PPO update (minibatches are sets of environments: whole sequences, as the GRU needs) --------------
        mb_envs = B // cfg.num_minibatches
        target_n = norm.normalize(returns)  # [T, B, N]
        clipfracs, kls = [], []
        stats: dict[str, float] = {}
        for _epoch in range(cfg.update_epochs):
            perm = torch.randperm(B, generator=gen, device=device)
            for k in range(cfg.num_minibatches):
                idx = perm[k * mb_envs:(k + 1) * mb_envs]
                if recurrent:
                    new_logits_l, new_v_l = [], []
                    ha = actor.initial_state(mb_envs * N)
                    hc = critic.initial_state(mb_envs * N)
                    for t in range(T):
                        keep = (~start_buf[t, idx]).repeat_interleave(N).float().unsqueeze(-1)
                        lg, _, ha = actor.step(x_buf[t, idx].reshape(-1, Da), ha * keep)
                        vv, hc = critic.step(c_buf[t, idx].reshape(-1, Dc), hc * keep)
                        new_logits_l.append(lg)
                        new_v_l.append(vv)
                    new_logits = torch.stack(new_logits_l)  # [T, mb*N, A]
                    new_v = torch.stack(new_v_l).reshape(-1)  # [T*mb*N]
                    new_logits = new_logits.reshape(-1, new_logits.shape[-1])
                else:
                    new_logits = actor(x_buf[:, idx].reshape(-1, Da))  # [T*mb*N, A]
                    new_v = critic(c_buf[:, idx].reshape(-1, Dc))  # [T*mb*N]
                if mask_buf is not None:  # same layout as new_logits: [T, mb, N] flattened
                    new_logits = apply_action_mask(new_logits, mask_buf[:, idx].reshape(-1, new_logits.shape[-1]))
                logp_all = torch.log_softmax(new_logits, -1)
                mb_act = act_buf[:, idx].reshape(-1)
                new_logp = logp_all.gather(-1, mb_act.unsqueeze(-1)).squeeze(-1)
                entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
                log_ratio = new_logp - logp_buf[:, idx].reshape(-1)
                ratio = log_ratio.exp()
                with torch.no_grad():
                    kls.append(((ratio - 1) - log_ratio).mean())  # CleanRL's approx_kl (k3 estimator)
                    clipfracs.append(((ratio - 1.0).abs() > cfg.clip_coef).float().mean())
                mb_adv = advantages[:, idx].reshape(-1)
                if cfg.norm_adv:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(-mb_adv * ratio, -mb_adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
                v_loss = value_loss_fn(new_v, val_buf[:, idx].reshape(-1), target_n[:, idx].reshape(-1),
                                       cfg.clip_coef if cfg.clip_vloss else None, cfg.huber_delta)
                loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                stats = {"pg_loss": pg_loss.item(), "v_loss": v_loss.item(), "entropy": entropy.item(),
                         "grad_norm": grad_norm.item()}
                run.check_finite(iteration + 1, stats)  # stop before the step spreads NaN into the weights
                optimizer.step()
        run.check_weights(iteration + 1, stats)

        # ---- logging ------------------------------------------------------------------------------------------
        global_step = (iteration + 1) * steps_per_iter
        now = time.perf_counter()
        wall = run.wall()
        if ep_returns:
            last_return = float(torch.cat(ep_returns).mean())
        if (iteration + 1) % cfg.log_every == 0 or iteration + 1 == num_iterations:
            with torch.no_grad():
                var_y = returns.var()
                explained_var = float(1 - (returns - values).var() / var_y) if var_y > 0 else float("nan")
            row: dict[str, Any] = {
                "iteration": iteration + 1, "global_step": global_step, "wall_time": round(wall, 3),
                "sps": round(global_step / max(wall, 1e-9), 1),  # cumulative, updates included
                "sps_iter": round(steps_per_iter / max(now - it_t0, 1e-9), 1),
                "episodes": int(sum(len(r) for r in ep_returns)),
                "train_return": last_return,
                **stats,
                "approx_kl": float(torch.stack(kls).mean()), "clipfrac": float(torch.stack(clipfracs).mean()),
                "explained_var": explained_var, "lr": optimizer.param_groups[0]["lr"],
                "value_mean": float(values.mean()),
            }
            for key, vals in ep_metrics.items():
                row[f"task/{key}"] = float(torch.cat(vals).mean())
            run.log_row(row)
        run.advance(steps_per_iter, sps=f"{steps_per_iter / max(now - it_t0, 1e-9):,.0f}", ret=f"{last_return:.2f}")

        if run.end_iteration(iteration + 1, last=num_iterations, stop_after=stop_after_iterations,
                             time_limit_minutes=cfg.time_limit_minutes, checkpoint=checkpoint):
            break

    run.close()
    return teacher_path


# ---- `kdmarl train` ---------------------------------------------------------------------------------------------




