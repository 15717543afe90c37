"""QMIX teacher training (`kdmarl train --algo qmix`), CleanRL style: the whole algorithm in one readable file.

Value decomposition (Rashid et al. 2018) as pymarl / epymarl (`q_learner.py`, `modules/mixers/qmix.py`) and
JaxMARL's `baselines/QLearning/qmix_rnn.py` do it, on this project's batched environments:

- **Agent utilities**: ONE network shared by all agents (`networks.Actor`: padded observation + agent one-hot,
  MLP or MLP+GRU, invalid actions masked to `MASKED_LOGIT`), whose outputs are read as Q_i(o_i, a) instead of
  logits. That is the deployed part: each agent acts on argmax_a Q_i(o_i, a) of its own observation, so
  `kdmarl evaluate`, `kdmarl export` (teacher_actor.onnx) and the distillation rollouts use it unchanged.
- **Mixer** (`QMixer`, training only): Q_tot = w2 . elu(W1^T Q + b1) + V(s), with W1, b1, w2, V produced by
  hypernetworks from the global state (plus t / max_cycles: MPE episodes end by a time limit, so the value of a
  state depends on the steps left, as for the MAPPO critic). |W1| and |w2| make Q_tot monotonic in every Q_i,
  so the argmax of Q_tot is the tuple of per-agent argmaxes: decentralized greedy execution is exact.
- **Episode replay buffer** (`ReplayBuffer`): every iteration the B environments run `num_steps` steps from a
  fresh reset (one whole episode each on MPE) and the B sequences are appended FIFO; gradient steps sample
  whole sequences uniformly, so the GRU can be unrolled and TD(lambda) targets computed along time.
- **Targets**: target copies of agent network and mixer (hard copy every `target_update_interval` gradient steps,
  or Polyak with `target_tau` < 1); double Q (the online agents choose a', the targets value it); TD(lambda)
  returns over the sequence (pymarl2's `build_td_lambda_targets`; lambda = 0 is one-step Q-learning), cut where
  an episode ends (`done`: no bootstrap into the next episode).
- **Exploration**: epsilon-greedy over each agent's *valid* actions, epsilon annealed linearly over env steps.
- **Action masks** (SMAX: ``env.available_actions()``): stored with each step, applied when acting (greedy and
  random choices only among available actions) and when choosing the double-Q next action; MPE has none and
  takes no mask path (its runs are unchanged).
- MSE (or Huber) TD loss on the team reward (the mean over agents of their rewards: the team return of DESIGN.md
  §5 per step), Adam, global grad-norm clipping.

Determinism and `--resume`: as for MAPPO, every draw after network init comes from ONE `torch.Generator`
(exploration, replay sampling) and from the environment, which is reset at the start of every iteration with a
seed derived from (seed, iteration); `checkpoint.pt` holds networks, target networks, optimizer, generator,
the replay buffer and the counters, so an interrupted-and-resumed run reproduces the uninterrupted one bit for
bit. `teacher.pt` holds what `load_teacher` needs (agent network, mixer) and says `algo: "qmix"`.

Divergence: the loss and gradient norm of every gradient step and all weights after each iteration are checked;
the first NaN/Inf stops the run (`errors.NonFiniteError`) before anything is checkpointed.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdmarl_teacher import envs
from kdmarl_teacher.algos.config import QmixConfig
from kdmarl_teacher.algos.mixer import QMixer, mixer_state
from kdmarl_teacher.algos.teacher import TEACHER_FILE, cpu_state, teacher_payload
from kdmarl_teacher.core.episodes import run_episodes
from kdmarl_teacher.core.networks import Actor, actor_inputs_all, apply_action_mask
from kdmarl_teacher.core.training_run import SEED_STRIDE, TrainingRun, anneal_lr, optimizer_to_cpu

ALGO = "qmix"
STAT_KEYS = ("td_loss", "q_tot", "target_mean", "td_abs_error", "grad_norm")  # metrics.csv columns of an update
GREEDY_EVAL_SEED = 10_000  # mpe2 seeds of the in-training greedy evaluation (distinct from the 1000-1199 report seeds)


# ---- the mixer -------------------------------------------------------------------------------------------------






# ---- replay, exploration, targets ------------------------------------------------------------------------------
class ReplayBuffer:
    """FIFO buffer of fixed-length sequences of T transitions of the whole team (pymarl's EpisodeBatch, with
    auto-reset environments instead of padding): per sequence

        obs    [T+1, N, D]  padded observations, the last one after the last step (the bootstrap's input)
        state  [T+1, S']    mixer states (global state + time feature), aligned with obs
        start  [T+1]        bool: obs[t] is the first of an episode (a GRU's state is reset there)
        action [T, N]       long, the joint action taken at t
        reward [T]          team reward of step t
        done   [T]          bool: the episode ended with step t (obs[t+1] belongs to the next episode)
        avail  [T+1, N, A]  bool: the actions available at obs[t] (only for an env with action masks, `n_actions`)

    Episode boundaries inside a sequence are carried by `done` (targets are not bootstrapped across them) and
    `start` (recurrent states are reset); every stored step is a real transition, so no padding mask is needed.
    Sampling draws from the run's generator (resume-exact)."""

    FIELDS = ("obs", "state", "start", "action", "reward", "done")

    def __init__(self, capacity: int, T: int, N: int, obs_dim: int, state_dim: int, *, device: torch.device,
                 n_actions: int | None = None) -> None:
        self.capacity, self.size, self.pos = int(capacity), 0, 0
        self.fields = (*self.FIELDS, "avail") if n_actions else self.FIELDS
        self.data = {
            "obs": torch.zeros(capacity, T + 1, N, obs_dim, device=device),
            "state": torch.zeros(capacity, T + 1, state_dim, device=device),
            "start": torch.zeros(capacity, T + 1, dtype=torch.bool, device=device),
            "action": torch.zeros(capacity, T, N, dtype=torch.long, device=device),
            "reward": torch.zeros(capacity, T, device=device),
            "done": torch.zeros(capacity, T, dtype=torch.bool, device=device),
        }
        if n_actions:
            self.data["avail"] = torch.zeros(capacity, T + 1, N, n_actions, dtype=torch.bool, device=device)

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        """Append B sequences (each field [B, ...]), overwriting the oldest once full."""
        n = batch["reward"].shape[0]
        idx = (self.pos + torch.arange(n, device=batch["reward"].device)) % self.capacity
        for key in self.fields:
            self.data[key][idx] = batch[key]
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """n sequences drawn uniformly with replacement (as flashbax / pymarl sample episodes)."""
        idx = torch.randint(self.size, (n,), generator=generator, device=generator.device)
        return {k: v[idx] for k, v in self.data.items()}

    def state_dict(self) -> dict[str, Any]:
        """Only the filled rows, on CPU (a checkpoint early in a run stays small)."""
        return {"size": self.size, "pos": self.pos,
                "data": {k: v[: self.size].detach().to("cpu").clone() for k, v in self.data.items()}}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.size, self.pos = int(sd["size"]), int(sd["pos"])
        for k, v in sd["data"].items():
            self.data[k][: self.size] = v.to(self.data[k].device)


def epsilon_at(cfg: QmixConfig, env_steps: int) -> float:
    """Linear schedule eps_start -> eps_finish over the first `eps_anneal_steps` env steps, then constant."""
    frac = min(1.0, env_steps / cfg.eps_anneal_steps)
    return cfg.eps_start + frac * (cfg.eps_finish - cfg.eps_start)


def epsilon_greedy(q: torch.Tensor, eps: float, n_actions: torch.Tensor, generator: torch.Generator,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """q [M, A_max] (invalid actions already masked), n_actions long [M] (agent i's valid actions are
    0..n_i-1) -> long [M]: with probability eps a uniform *valid* action, else argmax_a q. With an env's action
    mask (bool [M, A_max]: SMAX's available actions, already applied to q) the random action is uniform over
    the available ones (argmax of uniform noise on them)."""
    greedy = q.argmax(-1)
    u = torch.rand(q.shape[0], generator=generator, device=q.device)
    if mask is None:
        r = torch.rand(q.shape[0], generator=generator, device=q.device)
        random_action = (r * n_actions).long().clamp(max=n_actions - 1)
    else:
        noise = torch.rand(q.shape, generator=generator, device=q.device)
        random_action = noise.masked_fill(~mask, -1.0).argmax(-1)
    return torch.where(u < eps, random_action, greedy)


def td_lambda_targets(rewards: torch.Tensor, dones: torch.Tensor, q_next: torch.Tensor, gamma: float,
                      lam: float) -> torch.Tensor:
    """TD(lambda) targets along sequences (pymarl2's build_td_lambda_targets, with auto-reset boundaries).

    rewards [b, T], dones bool [b, T] (the episode ended with step t), q_next [b, T]: the target Q_tot of the
    state after step t. G_t = r_t + gamma (1 - done_t) [(1 - lam) q_next_t + lam G_{t+1}], and at the last step
    of a sequence G = r + gamma (1 - done) q_next (it bootstraps fully). lam = 0 gives one-step targets. -> [b, T]
    """
    T = rewards.shape[1]
    out = torch.zeros_like(rewards)
    g = q_next[:, T - 1]
    for t in reversed(range(T)):
        cont = (~dones[:, t]).to(rewards.dtype)
        blend = q_next[:, t] if t == T - 1 else (1 - lam) * q_next[:, t] + lam * g
        g = rewards[:, t] + gamma * cont * blend
        out[:, t] = g
    return out


@torch.no_grad()
def update_target(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target (tau = 1: a hard copy)."""
    for t, o in zip(target.state_dict().values(), online.state_dict().values(), strict=True):
        if t.is_floating_point():
            t.mul_(1.0 - tau).add_(o, alpha=tau) if tau < 1.0 else t.copy_(o)
        else:
            t.copy_(o)


def agent_q_sequences(agent: Actor, obs: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Utilities over sequences: obs [b, L, N, D], start bool [b, L] -> Q [b, L, N, A_max] (invalid masked).
    A recurrent agent is unrolled from a zero state, reset where an episode starts (every sequence begins at
    an environment reset, so the zero state is exact)."""
    b, L, N, _ = obs.shape
    x = actor_inputs_all(obs.reshape(b * L, N, -1)).reshape(b, L, N, -1)  # [b, L, N, Da]
    if not agent.recurrent:
        return agent(x)
    h = agent.initial_state(b * N)
    out = []
    for t in range(L):
        keep = (~start[:, t]).repeat_interleave(N).to(h.dtype).unsqueeze(-1)  # [b*N, 1]
        q, _, h = agent.step(x[:, t].reshape(b * N, -1), h * keep)
        out.append(q.view(b, N, -1))
    return torch.stack(out, dim=1)


def qmix_loss(cfg: QmixConfig, batch: dict[str, torch.Tensor], agent: Actor, mixer: QMixer, *, target_agent: Actor,
              target_mixer: QMixer) -> tuple[torch.Tensor, dict[str, float]]:
    """The TD loss of one sampled batch of b sequences (pymarl's QLearner.train): Q_tot of the taken joint
    actions against double-Q TD(lambda) targets from the target networks. Returns (loss, stats)."""
    obs, state, start = batch["obs"], batch["state"], batch["start"]  # [b, T+1, N, D], [b, T+1, S'], [b, T+1]
    b, T1, N, _ = obs.shape
    T = T1 - 1
    q = agent_q_sequences(agent, obs, start)  # [b, T+1, N, A]
    chosen = q[:, :T].gather(-1, batch["action"].unsqueeze(-1)).squeeze(-1)  # [b, T, N]
    q_tot = mixer(chosen.reshape(b * T, N), state[:, :T].reshape(b * T, -1)).view(b, T)
    with torch.no_grad():
        q_tgt = agent_q_sequences(target_agent, obs, start)[:, 1:]  # [b, T, N, A]
        chooser = q[:, 1:] if cfg.double_q else q_tgt  # masked actions are -1e8: never chosen
        chooser = apply_action_mask(chooser, batch["avail"][:, 1:] if "avail" in batch else None)
        next_q = q_tgt.gather(-1, chooser.argmax(-1, keepdim=True)).squeeze(-1)  # [b, T, N]
        q_tot_next = target_mixer(next_q.reshape(b * T, N), state[:, 1:].reshape(b * T, -1)).view(b, T)
        targets = td_lambda_targets(batch["reward"] * cfg.reward_scale, batch["done"], q_tot_next, cfg.gamma,
                                    cfg.td_lambda)
    err = q_tot - targets
    loss = nn.functional.huber_loss(q_tot, targets, delta=cfg.huber_delta) if cfg.huber_delta > 0 else (err**2).mean()
    return loss, {"td_loss": float(loss.detach()), "q_tot": float(q_tot.detach().mean()),
                  "target_mean": float(targets.mean()), "td_abs_error": float(err.detach().abs().mean())}


# ---- networks and checkpoints -----------------------------------------------------------------------------------
def build_networks(cfg: QmixConfig, env: Any) -> tuple[dict, dict]:
    """Constructor kwargs of the agent network (a `networks.Actor`) and of the mixer (stored in teacher.pt)."""
    agent_kwargs = {"obs_dim_max": int(env.obs_dim_max), "n_agents": int(env.n_agents),
                    "n_actions": [int(a) for a in env.n_actions], "hidden": list(cfg.agent_hidden),
                    "activation": cfg.activation, "input_norm": cfg.input_norm, "layer_norm": cfg.layer_norm,
                    "use_gru": cfg.use_gru, "gru_hidden": cfg.gru_hidden}
    mixer_kwargs = {"state_dim": int(env.state_dim) + int(cfg.mixer_time), "n_agents": int(env.n_agents),
                    "embed": cfg.mixer_embed, "hypernet_hidden": cfg.hypernet_hidden}
    return agent_kwargs, mixer_kwargs


# ---- training ---------------------------------------------------------------------------------------------------
def train(cfg: QmixConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
          stop_after_iterations: int | None = None) -> Path:
    """Train a QMIX teacher; writes config.yaml, metrics.csv, tb/, checkpoint.pt and teacher.pt in `out_dir`.

    `stop_after_iterations` stops as if interrupted after that many iterations (the resume test). Returns the
    path of teacher.pt."""
    cfg.validate()
    out = Path(out_dir)
    run = TrainingRun(out, resume=resume, checkpoint_every=cfg.checkpoint_every, torch_threads=cfg.torch_threads,
                      seed=cfg.seed)
    teacher_path, device = out / TEACHER_FILE, torch.device(cfg.device)
    env = envs.make_env(cfg.scenario, num_envs=cfg.num_envs, seed=cfg.seed, device=device, dtype=torch.float32,
                   **cfg.env_params)
    B, T, N = cfg.num_envs, cfg.num_steps, int(env.n_agents)
    max_cycles = int(env.spec.max_cycles)
    n_actions = torch.tensor(env.n_actions, device=device).repeat(B)  # [B*N], agent-major within an env

    agent_kwargs, mixer_kwargs = build_networks(cfg, env)
    agent = Actor(**agent_kwargs).to(device)
    mixer = QMixer(**mixer_kwargs).to(device)
    target_agent, target_mixer = copy.deepcopy(agent), copy.deepcopy(mixer)
    for p in (*target_agent.parameters(), *target_mixer.parameters()):
        p.requires_grad_(False)
    params = [*agent.parameters(), *mixer.parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    masked = env.available_actions() is not None  # SMAX: per-step action masks; MPE: none (unchanged path)
    A = int(agent.n_actions_max)
    buffer = ReplayBuffer(cfg.buffer_size, T, N, int(env.obs_dim_max), mixer_kwargs["state_dim"], device=device,
                          n_actions=A if masked else None)

    steps_per_iter = B * T
    num_iterations = max(1, cfg.total_steps // steps_per_iter)
    start_iteration, wall_offset, grad_steps = 0, 0.0, 0
    if resume:
        ckpt = run.load("cpu")
        cfg.check_resume(ckpt["config"])
        agent.load_state_dict(ckpt["actor"]["state_dict"])
        mixer.load_state_dict(ckpt["mixer"]["state_dict"])
        ts = ckpt["train_state"]
        target_agent.load_state_dict(ts["target_actor"])
        target_mixer.load_state_dict(ts["target_mixer"])
        optimizer.load_state_dict(ts["optimizer"])
        buffer.load_state_dict(ts["buffer"])
        gen.set_state(ts["generator"].to(gen.get_state().device))
        torch.set_rng_state(ts["torch_rng"])
        start_iteration, wall_offset, grad_steps = int(ckpt["iteration"]), float(ts["wall_time"]), int(ts["grad_steps"])
    eval_env = None
    if cfg.eval_every:
        eval_env = envs.make_env(cfg.scenario, num_envs=cfg.eval_envs, seed=0, device=device, dtype=torch.float32,
                            **cfg.env_params)

    run.start(cfg, "config.yaml", start_iteration=start_iteration, resume_step=start_iteration * steps_per_iter,
              wall_before=wall_offset, progress=progress, bar_total=num_iterations * steps_per_iter,
              bar_initial=start_iteration * steps_per_iter, desc=f"train qmix {cfg.scenario}", unit="step",
              unit_scale=True)
    run.watch({"agent": agent, "mixer": mixer})
    last_return, last_greedy = float("nan"), float("nan")

    def checkpoint(iteration_done: int) -> None:
        payload = teacher_payload(cfg.to_dict(), env.spec, actor=agent, actor_kwargs=agent_kwargs, mixer=mixer,
                                  mixer_kwargs=mixer_kwargs, mixer_time=cfg.mixer_time,
                                  global_step=iteration_done * steps_per_iter, iteration=iteration_done)
        train_state = {"optimizer": optimizer_to_cpu(optimizer.state_dict()), "generator": gen.get_state().cpu(),
                       "torch_rng": torch.get_rng_state(), "wall_time": run.wall(),
                       "target_actor": cpu_state(target_agent), "target_mixer": cpu_state(target_mixer),
                       "buffer": buffer.state_dict(), "grad_steps": grad_steps}
        run.save(iteration_done, {run.ckpt_path: {**payload, "train_state": train_state}, teacher_path: payload})

    def greedy(obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return apply_action_mask(agent(actor_inputs_all(obs)), mask).argmax(-1)

    seq = {"obs": torch.zeros(B, T + 1, N, int(env.obs_dim_max), device=device),
           "state": torch.zeros(B, T + 1, mixer_kwargs["state_dim"], device=device),
           "start": torch.zeros(B, T + 1, dtype=torch.bool, device=device),
           "action": torch.zeros(B, T, N, dtype=torch.long, device=device),
           "reward": torch.zeros(B, T, device=device), "done": torch.zeros(B, T, dtype=torch.bool, device=device)}
    if masked:
        seq["avail"] = torch.zeros(B, T + 1, N, A, dtype=torch.bool, device=device)
    t_feature = (lambda: env.t) if cfg.mixer_time else (lambda: None)  # steps taken, per env
    iteration = start_iteration
    for iteration in range(start_iteration, num_iterations):
        it_t0 = time.perf_counter()
        if cfg.anneal_lr:
            anneal_lr(optimizer, cfg.lr, iteration, num_iterations)
        eps = epsilon_at(cfg, iteration * steps_per_iter)

        # ---- rollout: epsilon-greedy agents, B sequences of T steps ------------------------------------------
        ep_returns: list[torch.Tensor] = []
        ep_metrics: dict[str, list[torch.Tensor]] = {}
        with torch.no_grad():
            obs, state = env.reset(seed=cfg.seed * SEED_STRIDE + iteration)  # [B, N, D], [B, S]
            starting = torch.ones(B, dtype=torch.bool, device=device)
            h = agent.initial_state(B * N)
            for t in range(T):
                seq["obs"][:, t], seq["state"][:, t] = obs, mixer_state(state, t_feature(), max_cycles)
                seq["start"][:, t] = starting
                h = h * (~starting).repeat_interleave(N).to(h.dtype).unsqueeze(-1)
                q, _, h = agent.step(actor_inputs_all(obs).reshape(B * N, -1), h)  # [B*N, A]
                avail = None
                if masked:
                    seq["avail"][:, t] = env.available_actions()  # [B, N, A] of the state acted in
                    avail = seq["avail"][:, t].reshape(B * N, -1)
                    q = apply_action_mask(q, avail)
                action = epsilon_greedy(q, eps, n_actions, gen, avail).view(B, N)
                obs, state, reward, done, info = env.step(action)
                seq["action"][:, t], seq["reward"][:, t], seq["done"][:, t] = action, reward.float().mean(-1), done
                if bool(done.any()):
                    ep_returns.append(info["episode_returns"][done].float().mean(-1))
                    for key, v in info.get("metrics", {}).items():
                        ep_metrics.setdefault(key, []).append(v[done].float())
                starting = done
            seq["obs"][:, T], seq["state"][:, T] = obs, mixer_state(state, t_feature(), max_cycles)
            seq["start"][:, T] = starting
            if masked:
                seq["avail"][:, T] = env.available_actions()
            buffer.add(seq)

        # ---- gradient steps on sampled sequences -------------------------------------------------------------
        stats = dict.fromkeys(STAT_KEYS, float("nan"))  # every column from the first row on (before learning_starts)
        global_step = (iteration + 1) * steps_per_iter
        if global_step >= cfg.learning_starts and buffer.size >= 1:
            for _ in range(cfg.updates_per_iteration):
                loss, stats = qmix_loss(cfg, buffer.sample(cfg.batch_size, gen), agent, mixer,
                                        target_agent=target_agent, target_mixer=target_mixer)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                stats["grad_norm"] = float(grad_norm)
                run.check_finite(iteration + 1, stats)
                optimizer.step()
                grad_steps += 1
                if cfg.target_tau < 1.0:
                    update_target(target_agent, agent, cfg.target_tau)
                    update_target(target_mixer, mixer, cfg.target_tau)
                elif grad_steps % cfg.target_update_interval == 0:
                    update_target(target_agent, agent, 1.0)
                    update_target(target_mixer, mixer, 1.0)
        run.check_weights(iteration + 1, stats)

        # ---- logging ------------------------------------------------------------------------------------------
        now = time.perf_counter()
        wall = run.wall()
        if ep_returns:
            last_return = float(torch.cat(ep_returns).mean())
        row: dict[str, Any] = {"greedy_return": float("nan")}
        if eval_env is not None and ((iteration + 1) % cfg.eval_every == 0 or iteration + 1 == num_iterations):
            seeds = list(range(GREEDY_EVAL_SEED, GREEDY_EVAL_SEED + cfg.eval_envs))
            with torch.no_grad():
                ev = run_episodes(eval_env, greedy, seeds, None, torch.Generator(device=device))
            last_greedy = float(ev["team"].mean())
            row["greedy_return"] = last_greedy
        if (iteration + 1) % cfg.log_every == 0 or iteration + 1 == num_iterations:
            row = {"iteration": iteration + 1, "global_step": global_step, "wall_time": round(wall, 3),
                   "sps": round(global_step / max(wall, 1e-9), 1),
                   "sps_iter": round(steps_per_iter / max(now - it_t0, 1e-9), 1),
                   "episodes": int(sum(len(r) for r in ep_returns)), "train_return": last_return,
                   "epsilon": eps, "grad_steps": grad_steps, "buffer_size": buffer.size,
                   "lr": optimizer.param_groups[0]["lr"], **stats, **row}
            for key, vals in ep_metrics.items():
                row[f"task/{key}"] = float(torch.cat(vals).mean())
            run.log_row(row)
        run.advance(steps_per_iter, eps=f"{eps:.2f}", ret=f"{last_return:.2f}", greedy=f"{last_greedy:.2f}")

        if run.end_iteration(iteration + 1, last=num_iterations, stop_after=stop_after_iterations,
                             time_limit_minutes=cfg.time_limit_minutes, checkpoint=checkpoint):
            break

    run.close()
    return teacher_path


# ---- `kdmarl train --algo qmix` ------------------------------------------------------------------------------------
