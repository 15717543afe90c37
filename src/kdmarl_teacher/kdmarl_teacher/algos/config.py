"""The teacher configurations of `kdmarl train`: `TeacherConfig` (MAPPO) and `QmixConfig` (QMIX), their allowed
ranges, loading (defaults <- YAML <- `--set`) and the shipped YAML of a scenario. The shared machinery (YAML,
overrides, ranges, the `--resume` rule) is `core.config`'s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from kdmarl_teacher.core.config import (
    CONFIG_DIR,
    ENV_PARAM_RANGES,
    MAX_WIDTH,
    Range,
    RunConfig,
    apply_overrides,
    check_device,
    check_ranges,
    load_yaml,
    parse_set,
)


@dataclass
class TeacherConfig(RunConfig):
    """Hyper-parameters of `kdmarl train`. Defaults follow CleanRL's ppo.py and the MAPPO reference code
    (marlbenchmark/on-policy), tuned for throughput on a 2-core CPU (see the shipped YAML files)."""

    resume_may_change: ClassVar[tuple[str, ...]] = ("device", "time_limit_minutes")  # same computation either way

    # --- environment -------------------------------------------------------------------------------------
    scenario: str = "simple_spread"  # kdmarl_teacher.envs scenario name or a PettingZoo import path
    env_params: dict = field(default_factory=dict)  # forwarded to make_env / scenario_spec (N, local_ratio, ...)
    num_envs: int = 256  # B: environments stepped as one batch
    num_steps: int = 25  # T: rollout length per environment per iteration (a multiple of max_cycles for MPE)

    # --- run ---------------------------------------------------------------------------------------------
    seed: int = 1  # seeds torch, the sampling generator and every iteration's env reset
    device: str = "cpu"  # "cpu" or "cuda" (or "cuda:1", ...)
    torch_threads: int = 2  # torch.set_num_threads: intra-op threads on CPU
    total_steps: int = 10_000_000  # budget in joint env steps (one step of one of the B environments)
    time_limit_minutes: float = 0.0  # > 0: also stop after this much wall time (breaks bit-exact resume)
    checkpoint_every: int = 100  # iterations between atomic checkpoints (checkpoint.pt + teacher.pt)
    log_every: int = 1  # iterations between metrics.csv / TensorBoard rows

    # --- optimisation (PPO) ------------------------------------------------------------------------------
    lr: float = 1e-3  # Adam learning rate for actor and critic (one optimizer, as CleanRL)
    anneal_lr: bool = True  # linear decay of lr to 0 over total_steps
    adam_eps: float = 1e-5  # CleanRL / MAPPO use 1e-5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    update_epochs: int = 4  # PPO epochs over each rollout
    num_minibatches: int = 8  # minibatches per epoch (split over environments)
    clip_coef: float = 0.2  # PPO ratio clip
    clip_vloss: bool = True  # clip the value prediction around the old one (MAPPO's use_clipped_value_loss)
    vf_coef: float = 1.0  # value loss weight (loss is in normalized value units)
    ent_coef: float = 0.01  # entropy bonus
    max_grad_norm: float = 10.0  # global grad-norm clip (MAPPO uses 10; CleanRL 0.5 on unnormalized values)
    norm_adv: bool = True  # normalize advantages per minibatch
    value_norm: bool = True  # running mean/std normalization of value targets (MAPPO ValueNorm)
    huber_delta: float = 10.0  # Huber loss threshold on normalized values (MAPPO); <= 0 means plain MSE
    team_reward: bool = False  # train every agent on the team's mean reward (as MAPPO's share_reward); measured
    #                            worse than per-agent rewards on simple_spread (-19.7 vs -17.5 after 1.4M steps)

    # --- networks ----------------------------------------------------------------------------------------
    actor_hidden: list = field(default_factory=lambda: [128, 128])  # hidden widths of the shared actor MLP
    critic_hidden: list = field(default_factory=lambda: [128, 128])  # hidden widths of the centralized critic
    activation: str = "relu"  # "relu" | "tanh"
    input_norm: bool = False  # LayerNorm on the input (MAPPO's use_feature_normalization); it erases the scale
    #                           of MPE's relative positions, so it is off by default
    layer_norm: bool = False  # LayerNorm after every hidden layer (MAPPO's MLPLayer does this)
    critic_time: bool = True  # append t / max_cycles to the critic input: MPE episodes end by a time limit, and a
    #                           time-blind critic cannot tell 20 steps left from 2 (measured: -13.6 vs -17.5
    #                           deterministic return after 1.4M steps on simple_spread)
    use_gru: bool = False  # a GRU after the MLP trunk for actor and critic (MAPPO's recurrent policy)
    gru_hidden: int = 64  # GRU width when use_gru

    def validate(self, origins: Mapping[str, str] | None = None) -> None:
        """Fail early with a message naming the bad key (and, via `origins`, the file or `--set` it came from)."""
        check_ranges(self.to_dict(), RANGES, origins or {}, "config key")
        check_ranges({f"env_params.{k}": v for k, v in self.env_params.items()} if isinstance(self.env_params, dict)
                     else {}, ENV_PARAM_RANGES, origins or {}, "config key")
        check_device(self.device, (origins or {}).get("device"))
        if self.num_envs % self.num_minibatches != 0:
            raise ValueError(f"config key 'num_minibatches' ({self.num_minibatches}) must divide "
                             f"'num_envs' ({self.num_envs}): minibatches are split over environments")
        if self.activation not in ("relu", "tanh"):
            raise ValueError(f"config key 'activation' must be 'relu' or 'tanh', got {self.activation!r}")
        for key in ("actor_hidden", "critic_hidden"):
            widths = getattr(self, key)
            if not isinstance(widths, list) or not widths or not all(
                    isinstance(w, int) and 0 < w <= MAX_WIDTH for w in widths):
                raise ValueError(f"config key '{key}' must be a non-empty list of ints in [1, {MAX_WIDTH}], "
                                 f"got {widths!r}")
        if not isinstance(self.env_params, dict):
            raise ValueError(f"config key 'env_params' must be a mapping, got {self.env_params!r}")


# Allowed ranges, checked at load. Why these bounds: outside them a run diverges (lr > 1 with Adam moves every weight
# by up to lr per step), is meaningless (gamma or lambda > 1 sum returns that grow with the horizon; a negative loss
# coefficient maximises its loss) or exhausts memory (rollout buffers are num_envs x num_steps x N x input width).
RANGES: dict[str, Range] = {
    "num_envs": Range(1, 65_536),
    "num_steps": Range(1, 100_000),
    "seed": Range(0, 2**32 - 1),
    "torch_threads": Range(1, 1024),
    "total_steps": Range(1),
    "time_limit_minutes": Range(0),
    "checkpoint_every": Range(1),
    "log_every": Range(1),
    "lr": Range(0, 1, low_open=True),  # 0 would not learn (and hides a typo)
    "adam_eps": Range(0, 1, low_open=True),
    "gamma": Range(0, 1),
    "gae_lambda": Range(0, 1),
    "update_epochs": Range(1, 1000),
    "num_minibatches": Range(1),  # and it must divide num_envs
    "clip_coef": Range(0, 1, low_open=True),
    "vf_coef": Range(0, 100),
    "ent_coef": Range(0, 1),
    "max_grad_norm": Range(0, low_open=True),
    "gru_hidden": Range(1, MAX_WIDTH),
}


@dataclass
class QmixConfig(RunConfig):
    """Hyper-parameters of `kdmarl train --algo qmix` (config/qmix_<scenario>.yaml). Defaults follow pymarl /
    epymarl's qmix.yaml and JaxMARL's MPE QMIX config where they agree, and were tuned for wall time on a
    2-core CPU where they differ (the shipped YAML files say which). `algo` is always "qmix": it is what tells
    a run's config.yaml (and so `--resume`) which algorithm wrote it."""

    resume_may_change: ClassVar[tuple[str, ...]] = ("device", "time_limit_minutes")

    algo: str = "qmix"
    # --- environment -------------------------------------------------------------------------------------
    scenario: str = "simple_spread"
    env_params: dict = field(default_factory=dict)
    num_envs: int = 64  # B: environments stepped as one batch; each iteration adds B sequences to the buffer
    num_steps: int = 25  # T: steps per stored sequence (= max_cycles on MPE: one whole episode per sequence)
    # --- run ---------------------------------------------------------------------------------------------
    seed: int = 1
    device: str = "cpu"
    torch_threads: int = 1
    total_steps: int = 5_000_000  # joint env steps
    time_limit_minutes: float = 0.0  # > 0: also stop after this much wall time (breaks bit-exact resume)
    checkpoint_every: int = 200  # iterations between checkpoints (checkpoint.pt holds the replay buffer too)
    log_every: int = 1
    eval_every: int = 20  # iterations between greedy evaluations on fixed seeds (logged as greedy_return); 0 off
    eval_envs: int = 64  # episodes of that greedy evaluation
    # --- replay and exploration --------------------------------------------------------------------------
    buffer_size: int = 5000  # sequences kept (FIFO), pymarl's buffer_size
    batch_size: int = 64  # sequences per gradient step
    updates_per_iteration: int = 2  # gradient steps after each iteration's B sequences were added
    learning_starts: int = 10_000  # env steps collected before the first gradient step
    eps_start: float = 1.0
    eps_finish: float = 0.05
    eps_anneal_steps: int = 500_000  # env steps of the linear epsilon schedule
    # --- optimisation ------------------------------------------------------------------------------------
    lr: float = 5e-4
    anneal_lr: bool = False
    adam_eps: float = 1e-5
    gamma: float = 0.99
    td_lambda: float = 0.6  # TD(lambda) targets (pymarl2); 0 gives one-step double-Q targets
    double_q: bool = True  # the online agents pick the next action, the target networks value it
    target_update_interval: int = 200  # gradient steps between target updates (hard copy when target_tau = 1)
    target_tau: float = 1.0  # 1: hard copy every target_update_interval steps; < 1: Polyak every step
    max_grad_norm: float = 10.0
    huber_delta: float = 0.0  # > 0: Huber TD loss with this threshold; 0: MSE (pymarl)
    reward_scale: float = 1.0  # the team reward is multiplied by this for learning (logged returns are not)
    # --- networks ----------------------------------------------------------------------------------------
    agent_hidden: list = field(default_factory=lambda: [128, 128])  # the shared utility network's MLP
    activation: str = "relu"
    input_norm: bool = False  # as the MAPPO teacher: LayerNorm on the input erases MPE's distance scale
    layer_norm: bool = False
    use_gru: bool = False  # a GRU after the MLP trunk (pymarl's RNN agent)
    gru_hidden: int = 64
    mixer_embed: int = 32  # width of the mixing network (pymarl mixing_embed_dim)
    hypernet_hidden: int = 64  # hidden width of the two-layer hypernetworks (pymarl hypernet_embed)
    mixer_time: bool = True  # the mixer's state ends with t / max_cycles (MPE episodes end by a time limit)

    def validate(self, origins: Mapping[str, str] | None = None) -> None:
        """Types and ranges (`QMIX_RANGES`), naming the key and, via `origins`, the file or `--set`."""
        origins = origins or {}
        if self.algo != "qmix":
            raise ValueError(f"config key 'algo' = {self.algo!r}: a QMIX config says algo: qmix")
        check_ranges(self.to_dict(), QMIX_RANGES, origins, "config key")
        check_ranges({f"env_params.{k}": v for k, v in self.env_params.items()} if isinstance(self.env_params, dict)
                     else {}, ENV_PARAM_RANGES, origins, "config key")
        check_device(self.device, origins.get("device"))
        if self.activation not in ("relu", "tanh"):
            raise ValueError(f"config key 'activation' must be 'relu' or 'tanh', got {self.activation!r}")
        widths = self.agent_hidden
        if not isinstance(widths, list) or not widths or not all(isinstance(w, int) and 0 < w <= MAX_WIDTH
                                                                 for w in widths):
            raise ValueError(f"config key 'agent_hidden' must be a non-empty list of ints in [1, {MAX_WIDTH}], "
                             f"got {widths!r}")
        if self.eps_finish > self.eps_start:
            raise ValueError(f"config key 'eps_finish' ({self.eps_finish}) must not exceed 'eps_start' "
                             f"({self.eps_start}): epsilon is annealed down")
        if not isinstance(self.env_params, dict):
            raise ValueError(f"config key 'env_params' must be a mapping, got {self.env_params!r}")


# Why these bounds: as RANGES; in addition the replay buffer holds buffer_size x (num_steps + 1) x (N x obs + state)
# floats, so a buffer of 10^7 sequences would exhaust memory instead of failing.
QMIX_RANGES: dict[str, Range] = {
    **{k: RANGES[k] for k in ("num_envs", "num_steps", "seed", "torch_threads", "total_steps", "time_limit_minutes",
                              "checkpoint_every", "log_every", "lr", "adam_eps", "gamma", "max_grad_norm",
                              "gru_hidden")},
    "eval_every": Range(0),
    "eval_envs": Range(1, 65_536),
    "buffer_size": Range(1, 1_000_000),
    "batch_size": Range(1, 65_536),
    "updates_per_iteration": Range(0, 1000),
    "learning_starts": Range(0),
    "eps_start": Range(0, 1),
    "eps_finish": Range(0, 1),
    "eps_anneal_steps": Range(1),
    "td_lambda": Range(0, 1),
    "target_update_interval": Range(1),
    "target_tau": Range(0, 1, low_open=True),
    "huber_delta": Range(0),
    "reward_scale": Range(0, 1000, low_open=True),
    "mixer_embed": Range(1, MAX_WIDTH),
    "hypernet_hidden": Range(1, MAX_WIDTH),
}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: TeacherConfig | QmixConfig | None = None) -> TeacherConfig | QmixConfig:
    """Defaults <- YAML file <- `--set` overrides, then validate (types, ranges, device). `base` picks the
    algorithm: a QmixConfig() base reads a QMIX config (`load_qmix_config`), the default a MAPPO one."""
    cfg = base if base is not None else TeacherConfig()
    origins: dict[str, str] = {}
    if path is not None:
        cfg = apply_overrides(cfg, load_yaml(path) or {}, str(path), origins)
    cfg = apply_overrides(cfg, parse_set(overrides), "--set", origins)
    cfg.validate(origins)
    return cfg


def load_qmix_config(path: str | Path | None = None, overrides: list[str] | None = None) -> QmixConfig:
    """`load_config` for `kdmarl train --algo qmix`: QmixConfig defaults <- YAML <- `--set`."""
    cfg = load_config(path, overrides, base=QmixConfig())
    assert isinstance(cfg, QmixConfig)
    return cfg


def config_algo(path: str | Path) -> str:
    """Which algorithm wrote a run's config.yaml: "qmix" if it says `algo: qmix`, else "mappo" (MAPPO configs
    predate the key and never carry it)."""
    data = load_yaml(path)
    return "qmix" if isinstance(data, dict) and data.get("algo") == "qmix" else "mappo"


def default_config_path(scenario: str, algo: str = "mappo") -> Path | None:
    """The shipped `config/<algo>_<scenario>.yaml` (mappo or qmix), if there is one. A SMAX map (`smax:<map>`)
    takes `config/<algo>_smax_<map>.yaml` where a map needs settings of its own (5m_vs_6m: an entropy bonus),
    else the shared `config/<algo>_smax.yaml`; every GRF scenario (`grf:<scenario>`) shares
    `config/<algo>_grf.yaml` (the command line's --scenario names the map or scenario)."""
    if not isinstance(scenario, str):
        return None
    family, _, member = scenario.partition(":")
    if family == "smax" and member:
        names = [f"smax_{member}", "smax"]  # the map's own config first
    elif family == "grf" and member:
        names = ["grf"]
    else:
        names = [scenario]
    return next((path for path in (CONFIG_DIR / f"{algo}_{name}.yaml" for name in names) if path.is_file()), None)

