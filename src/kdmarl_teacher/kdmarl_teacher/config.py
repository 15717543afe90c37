"""MAPPO teacher configuration: one flat dataclass with documented defaults, YAML files, `--set` overrides.

Why flat: every hyper-parameter is one `key: value` line in the run's `config.yaml`, one `--set key=value` on
the command line and one attribute in the training loop, so an ablation is always a single edit. Only
`env_params` is a mapping (it is forwarded verbatim to the scenario, e.g. `N`, `local_ratio`); its entries are
overridden as `--set env_params.N=4`. Unknown keys raise `ValueError` naming the file (or `--set`) and the key,
so a typo never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "config"


@dataclass
class TeacherConfig:
    """Hyper-parameters of `kdmarl train`. Defaults follow CleanRL's ppo.py and the MAPPO reference code
    (marlbenchmark/on-policy), tuned for throughput on a 2-core CPU (see the shipped YAML files)."""

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

    def validate(self) -> None:
        """Fail early with a message naming the bad key."""
        positive = ("num_envs", "num_steps", "total_steps", "update_epochs", "num_minibatches", "checkpoint_every",
                    "log_every", "torch_threads", "gru_hidden")
        for key in positive:
            if int(getattr(self, key)) <= 0:
                raise ValueError(f"config key '{key}' must be > 0, got {getattr(self, key)!r}")
        if self.num_envs % self.num_minibatches != 0:
            raise ValueError(f"config key 'num_minibatches' ({self.num_minibatches}) must divide "
                             f"'num_envs' ({self.num_envs}): minibatches are split over environments")
        if self.activation not in ("relu", "tanh"):
            raise ValueError(f"config key 'activation' must be 'relu' or 'tanh', got {self.activation!r}")
        for key in ("actor_hidden", "critic_hidden"):
            widths = getattr(self, key)
            if not isinstance(widths, list) or not widths or not all(isinstance(w, int) and w > 0 for w in widths):
                raise ValueError(f"config key '{key}' must be a non-empty list of positive ints, got {widths!r}")
        if not isinstance(self.env_params, dict):
            raise ValueError(f"config key 'env_params' must be a mapping, got {self.env_params!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TeacherConfig))


def _coerce(key: str, value: Any, source: str) -> Any:
    """Check a value against the default's type (YAML gives ints for floats like `1`, accept those)."""
    default = getattr(TeacherConfig(), key)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{source}: config key '{key}' expects true/false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
        try:  # YAML 1.1 reads "3e-4" (no dot) as a string
            number = float(value)
        except ValueError:
            raise ValueError(f"{source}: config key '{key}' expects a number, got {value!r}") from None
        value = number
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if type(default) is not type(value) and not (default is None or value is None):
        raise ValueError(f"{source}: config key '{key}' expects {type(default).__name__}, got {value!r}")
    return value


def apply_overrides(cfg: TeacherConfig, values: dict[str, Any], source: str) -> TeacherConfig:
    """Return a copy of `cfg` with `values` applied; `source` (a file name or '--set') goes into errors."""
    if not isinstance(values, dict):
        raise ValueError(f"{source}: expected a mapping of config keys, got {type(values).__name__}")
    data = cfg.to_dict()
    for key, value in values.items():
        if key.startswith("env_params."):
            data["env_params"] = {**data["env_params"], key.split(".", 1)[1]: value}
            continue
        if key not in FIELD_NAMES:
            raise ValueError(f"{source}: unknown config key '{key}' (known keys: {', '.join(FIELD_NAMES)})")
        data[key] = _coerce(key, value, source)
    out = TeacherConfig(**data)
    return out


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """`["lr=3e-4", "actor_hidden=[64,64]"]` -> dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set: expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw)
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: TeacherConfig | None = None) -> TeacherConfig:
    """Defaults <- YAML file <- `--set` overrides, then validate."""
    cfg = base if base is not None else TeacherConfig()
    if path is not None:
        path = Path(path)
        with path.open() as fh:
            values = yaml.safe_load(fh) or {}
        cfg = apply_overrides(cfg, values, str(path))
    cfg = apply_overrides(cfg, parse_set(overrides), "--set")
    cfg.validate()
    return cfg


def default_config_path(scenario: str) -> Path | None:
    """The shipped `config/mappo_<scenario>.yaml`, if there is one."""
    candidate = CONFIG_DIR / f"mappo_{scenario}.yaml"
    return candidate if candidate.is_file() else None


def save_config(cfg: TeacherConfig, path: str | Path) -> None:
    with Path(path).open("w") as fh:
        yaml.safe_dump(cfg.to_dict(), fh, sort_keys=False)
