"""The two run configurations, MAPPO teacher (`kdmarl train`) and distillation (`kdmarl distill`): one flat dataclass
each with documented defaults, YAML files, `--set` overrides.

Why flat: every hyper-parameter is one `key: value` line in the run's `config.yaml`, one `--set key=value` on
the command line and one attribute in the training loop, so an ablation is always a single edit. Only
`env_params` is a mapping (it is forwarded verbatim to the scenario, e.g. `N`, `local_ratio`); its entries are
overridden as `--set env_params.N=4`. Unknown keys raise `ValueError` naming the file (or `--set`) and the key,
so a typo never silently trains with a default; so do values outside a key's allowed range (`RANGES`, below the
dataclass: e.g. `lr=1e9` or `gamma=1.5` would train to NaN or to nonsense instead of failing), and a YAML syntax
error names the file and the line (`errors.InputFileError`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kdmarl_student.atomic import atomic_file

from kdmarl_teacher.errors import InputFileError, writing

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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check_resume(self, saved: Mapping[str, Any]) -> None:
        """`--resume`: refuse a config that differs from the checkpoint's `saved` one but in `RESUME_MAY_CHANGE`."""
        check_resume_config(saved, self.to_dict(), RESUME_MAY_CHANGE)


RESUME_MAY_CHANGE = ("device", "time_limit_minutes")  # config keys a teacher --resume may change (same computation)
FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TeacherConfig))


@dataclass(frozen=True)
class Range:
    """The allowed interval of a numeric config key; `None` is unbounded, `*_open` excludes the bound itself."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if math.isnan(value):  # NaN is in no range
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self, key: str) -> str:
        """`0 < lr <= 1`, `num_envs >= 1`: the range as the error message states it."""

        def num(v: float) -> str:
            return str(int(v)) if float(v).is_integer() else f"{v:g}"

        if self.high is None and self.low is not None:
            return f"{key} {'>' if self.low_open else '>='} {num(self.low)}"
        low = "" if self.low is None else f"{num(self.low)} {'<' if self.low_open else '<='} "
        high = "" if self.high is None else f" {'<' if self.high_open else '<='} {num(self.high)}"
        return f"{low}{key}{high}"


# Allowed ranges, checked at load. Why these bounds: outside them a run diverges (lr > 1 with Adam moves every weight
# by up to lr per step), is meaningless (gamma or lambda > 1 sum returns that grow with the horizon; a negative loss
# coefficient maximises its loss) or exhausts memory (rollout buffers are num_envs x num_steps x N x input width).
MAX_WIDTH = 4096  # widest hidden layer accepted (actor_hidden, critic_hidden, gru_hidden)
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
class QmixConfig:
    """Hyper-parameters of `kdmarl train --algo qmix` (config/qmix_<scenario>.yaml). Defaults follow pymarl /
    epymarl's qmix.yaml and JaxMARL's MPE QMIX config where they agree, and were tuned for wall time on a
    2-core CPU where they differ (the shipped YAML files say which). `algo` is always "qmix": it is what tells
    a run's config.yaml (and so `--resume`) which algorithm wrote it."""

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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check_resume(self, saved: Mapping[str, Any]) -> None:
        """`--resume`: refuse a config that differs from the checkpoint's but in `RESUME_MAY_CHANGE`."""
        check_resume_config(saved, self.to_dict(), RESUME_MAY_CHANGE)


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


# Scenario parameters with a range when present in env_params (the scenario checks which ones it accepts): a
# batched env allocates [num_envs, N, obs_dim(N)] tensors, so N = 100 000 would exhaust memory instead of failing.
ENV_PARAM_RANGES: dict[str, Range] = {
    "env_params.N": Range(1, 16),
    "env_params.local_ratio": Range(0, 1),  # a proportion (mpe2 asserts the same)
    "env_params.max_cycles": Range(1, 10_000),
}


def check_ranges(values: Mapping[str, Any], ranges: Mapping[str, Range], origins: Mapping[str, str],
                 what: str) -> None:
    """Raise ValueError for the first key of `ranges` whose value in `values` is not a number in its range;
    the message names the origin (`origins[key]`: a file or `--set`, when known), the key, value and range."""
    for key, allowed in ranges.items():
        if key not in values:
            continue
        value = values[key]
        prefix = f"{origins[key]}: " if key in origins else ""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{prefix}{what} '{key}' expects a number in {allowed.describe(key)}, got {value!r}")
        if value not in allowed:
            raise ValueError(f"{prefix}{what} '{key}' = {value!r} is out of range: expected {allowed.describe(key)}")


def check_device(device: Any, origin: str | None = None) -> None:
    """`cpu`, or `cuda` / `cuda:K` on a machine where torch sees that GPU (torch is imported only for cuda)."""
    prefix = f"{origin}: " if origin else ""
    name = str(device)
    if name == "cpu":
        return
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"{prefix}config key 'device' = {device!r} is not a device: expected cpu, cuda or cuda:K")
    import torch  # noqa: PLC0415 (config stays torch-free for CPU runs and tools that only read configs)

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(index or 0) >= count:
        seen = f"{count} CUDA device(s)" if count else "no usable CUDA device (torch.cuda.is_available() is False)"
        raise ValueError(f"{prefix}device {device!r} (config key 'device' or --device): this machine has {seen}; "
                         "expected 'cpu' (--device cpu) or an existing cuda:K")


def load_yaml(path: str | Path) -> Any:
    """`yaml.safe_load` of a file; a syntax error becomes `InputFileError` naming the file and the line."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError as err:
        raise InputFileError(path, f"expected a UTF-8 YAML file ({err.reason})") from err
    return parse_yaml(text, str(path), expected="`key: value` lines of valid YAML", in_file=True)


def parse_yaml(text: str, source: str, expected: str = "a YAML value (number, true/false, [list], ...)",
               in_file: bool = False) -> Any:
    """`yaml.safe_load(text)`; an error names `source` (a file, with the line, or `--set KEY`) and `expected`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        if not in_file:
            raise InputFileError(source, f"invalid YAML {text!r} ({problem}); expected {expected}") from err
        where = f" at column {mark.column + 1}" if mark is not None else ""
        raise InputFileError(source, f"invalid YAML ({problem}{where}); expected {expected}",
                             line=mark.line + 1 if mark is not None else None) from err


def coerce(key: str, value: Any, default: Any, source: str, what: str = "config key") -> Any:
    """Check a value against the default's type (YAML gives ints for floats like `1`, accept those)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{source}: {what} '{key}' expects true/false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
        try:  # YAML 1.1 reads "3e-4" (no dot) as a string
            number = float(value)
        except ValueError:
            raise ValueError(f"{source}: {what} '{key}' expects a number, got {value!r}") from None
        value = number
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if type(default) is not type(value) and not (default is None or value is None):
        raise ValueError(f"{source}: {what} '{key}' expects {type(default).__name__}, got {value!r}")
    return value


def apply_overrides(cfg: TeacherConfig | QmixConfig, values: dict[str, Any], source: str,
                    origins: dict[str, str] | None = None) -> TeacherConfig | QmixConfig:
    """Return a copy of `cfg` (a TeacherConfig or a QmixConfig) with `values` applied; `source` (a file name or
    '--set') goes into errors and, per key, into `origins` (so a range error found later by `validate` still
    names where the value came from)."""
    if not isinstance(values, dict):
        raise ValueError(f"{source}: expected a mapping of config keys, got {type(values).__name__}")
    origins = {} if origins is None else origins
    cls = type(cfg)
    names = tuple(f.name for f in dataclasses.fields(cls))
    defaults = cls()
    data = cfg.to_dict()
    for key, value in values.items():
        if key.startswith("env_params."):
            data["env_params"] = {**data["env_params"], key.split(".", 1)[1]: value}
            origins[key] = source
            continue
        if key not in names:
            raise ValueError(f"{source}: unknown config key '{key}' (known keys: {', '.join(names)})")
        data[key] = coerce(key, value, getattr(defaults, key), source)
        origins[key] = source
        if key == "env_params" and isinstance(value, dict):
            origins.update({f"env_params.{k}": source for k in value})
    return cls(**data)


def check_resume_config(saved: Mapping[str, Any], now: Mapping[str, Any], ignore: Iterable[str]) -> None:
    """`--resume` continues THE run in the directory: refuse a config that differs from the checkpoint's in any key
    but `ignore` (keys that do not change what is computed, e.g. device, time limit), naming the keys."""
    skip = set(ignore)
    diff = sorted(k for k in {*saved, *now} - skip if saved.get(k) != now.get(k))
    if diff:
        raise ValueError(f"--resume: config differs from the checkpoint's in {diff}")


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """`["lr=3e-4", "actor_hidden=[64,64]"]` -> dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set: expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        out[key.strip()] = parse_yaml(raw, f"--set {key.strip()}")
    return out


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


# ------------------------------------------------------------------------------ the distill config
TERMS = ("pg", "kl", "ce", "relation", "role")
QMIX_TERMS = ("kl", "ce", "util", "mixer")  # the value-decomposition recipe's terms (distill_qmix.py)
ALL_TERMS = (*TERMS, "util", "mixer")  # every term with a use_/w_ pair (and a --no-TERM flag)


@dataclass
class DistillConfig:
    """Hyper-parameters of `kdmarl distill` (YAML: config/distill.yaml; `--set key=value` overrides). Allowed
    ranges: `DISTILL_RANGES` below the class; values outside them are refused at load."""

    team: str = "spread3_full"  # config/teams/NAME.yaml or a path
    seed: int = 1
    device: str = "cpu"
    torch_threads: int = 1
    num_envs: int = 128  # B
    num_steps: int = 25  # T per iteration (= max_cycles: one whole episode per env, reset with a fresh seed)
    total_steps: int = 1_500_000  # joint env steps of student rollouts
    time_limit_minutes: float = 0.0  # > 0: stop after this wall time too
    lr: float = 3e-3
    anneal_lr: bool = True
    update_epochs: int = 4
    num_minibatches: int = 4
    max_grad_norm: float = 1.0
    # --- loss terms: weight and switch -------------------------------------------------------------------
    use_pg: bool = True
    w_pg: float = 0.1
    use_kl: bool = True
    w_kl: float = 1.0
    use_ce: bool = True
    w_ce: float = 0.1
    use_relation: bool = True
    w_relation: float = 0.5
    use_role: bool = True
    w_role: float = 0.1
    temperature: float = 2.0  # softening of the KL term (scaled by T²)
    # --- value-decomposition recipe (a QMIX teacher; distill_qmix.py): terms kl, ce, util, mixer -------------
    use_util: bool = True  # regression of the student's utilities on the teacher's Q_i (valid actions only)
    w_util: float = 0.1
    use_mixer: bool = True  # mixer distillation: a training-only student mixer reproduces the teacher's Q_tot
    w_mixer: float = 0.1
    q_temperature: float = 0.02  # T_q: QMIX utilities are compared in units of T_q (softmax(Q_i / T_q) for KL,
    #                              CE and the students' sampling; Q / T_q for the regression): about the teacher's
    #                              gap between its best two actions (0.02 on simple_spread)
    student_mixer_embed: int = 8  # width of the student mixer (training only, dropped at export)
    clip_coef: float = 0.2
    gamma: float = 0.99
    gae_lambda: float = 0.95
    norm_adv: bool = True
    ent_coef: float = 0.0
    n_roles: int = 4  # k of the k-means on teacher embeddings
    rel_dim: int = 32  # common width of the students' relation projections
    # --- students with memory (issue 11) -------------------------------------------------------------------
    memory: str = ""  # "" = each agent's team-config choice; none / history / recurrent forces one kind on all
    chunk_len: int = 0  # truncated BPTT length of recurrent students; 0 = num_steps (whole rollouts)
    # --- resource-aware option (group lasso + prune + fine-tune) ---------------------------------------------
    resource_aware: bool = False
    ra_width_mult: float = 2.0
    ra_lambda: float = 1e-3
    ra_prune_at: float = 0.6  # fraction of total_steps
    # --- evaluation and bookkeeping ----------------------------------------------------------------------
    eval_episodes: int = 200
    eval_seed: int = 1000  # mpe2 seeds eval_seed ... eval_seed + eval_episodes - 1 (DESIGN.md §5)
    checkpoint_every: int = 20
    log_every: int = 1

    def validate(self, origins: dict[str, str] | None = None) -> None:
        """Types and ranges (`DISTILL_RANGES`), naming the key and, via `origins`, the file or `--set`."""
        check_ranges(dataclasses.asdict(self), DISTILL_RANGES, origins or {}, "distill config key")
        check_device(self.device, (origins or {}).get("device"))
        if self.num_envs * self.num_steps % self.num_minibatches:
            raise ValueError("distill config key 'num_minibatches' must divide num_envs * num_steps")
        if self.memory not in ("", "none", "history", "recurrent"):
            raise ValueError(f"distill config key 'memory' = {self.memory!r}: expected '' (the team's choice), "
                             "'none', 'history' or 'recurrent'")
        if self.chunk_len and self.num_steps % self.chunk_len:
            raise ValueError(f"distill config key 'chunk_len' ({self.chunk_len}) must divide num_steps "
                             f"({self.num_steps}), or be 0 (= num_steps)")

    def sequence_length(self, recurrent: bool) -> int:
        """Steps per training sequence: 1 for stateless students (independent samples), else the BPTT chunk."""
        return (self.chunk_len or self.num_steps) if recurrent else 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check_resume(self, saved: Mapping[str, Any]) -> None:
        """`--resume`: refuse a config that differs from the checkpoint's `saved` one but in
        `DISTILL_RESUME_MAY_CHANGE` (a resumed run may be extended or moved, not changed)."""
        check_resume_config(saved, self.to_dict(), DISTILL_RESUME_MAY_CHANGE)

    def terms(self, names: tuple[str, ...] = TERMS) -> dict[str, float]:
        """Active terms and weights (of the MAPPO recipe, or `QMIX_TERMS` for the value-decomposition one)."""
        return {t: float(getattr(self, f"w_{t}")) for t in names if getattr(self, f"use_{t}")}


# Allowed ranges, checked at load (as RANGES for the teacher): outside them a run diverges
# (lr > 1), means nothing (gamma, lambda > 1; a negative loss weight maximises its loss) or exhausts memory.
DISTILL_RANGES: dict[str, Range] = {
    "seed": Range(0, 2**32 - 1),
    "torch_threads": Range(1, 1024),
    "num_envs": Range(1, 65_536),
    "num_steps": Range(1, 100_000),
    "total_steps": Range(1),
    "time_limit_minutes": Range(0),
    "lr": Range(0, 1, low_open=True),
    "update_epochs": Range(1, 1000),
    "num_minibatches": Range(1),  # and it must divide num_envs * num_steps
    "chunk_len": Range(0, 100_000),  # and it must divide num_steps
    "max_grad_norm": Range(0, low_open=True),
    **{f"w_{t}": Range(0, 100) for t in ALL_TERMS},  # loss weights; switch a term off with use_<term>: false
    "temperature": Range(0, 100, low_open=True),
    "q_temperature": Range(0, 100, low_open=True),
    "student_mixer_embed": Range(1, 4096),
    "clip_coef": Range(0, 1, low_open=True),
    "gamma": Range(0, 1),
    "gae_lambda": Range(0, 1),
    "ent_coef": Range(0, 1),
    "n_roles": Range(1, 64),
    "rel_dim": Range(1, 4096),
    "ra_width_mult": Range(1, 16),
    "ra_lambda": Range(0, 1),
    "ra_prune_at": Range(0, 1, high_open=True),  # at 1 the prune point is never reached
    "eval_episodes": Range(1, 100_000),
    "eval_seed": Range(0, 2**32 - 1),
    "checkpoint_every": Range(1),
    "log_every": Range(1),
}
DISTILL_RESUME_MAY_CHANGE = ("device", "time_limit_minutes", "total_steps")  # a --resume may extend the run


def load_distill_config(path: str | Path | None, overrides: list[str] | None = None) -> DistillConfig:
    """Defaults <- YAML <- `--set key=value` (YAML-parsed values); unknown keys, wrong types and values out of
    range raise ValueError naming the source (the file or `--set`) and the key."""
    cfg = DistillConfig()
    defaults = dataclasses.asdict(cfg)
    origins: dict[str, str] = {}

    def apply(values: Any, source: str) -> None:
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a mapping of distill config keys, got {type(values).__name__}")
        for key, value in values.items():
            if key not in defaults:
                raise ValueError(f"{source}: unknown distill config key {key!r}")
            setattr(cfg, key, coerce(key, value, defaults[key], source, what="distill config key"))
            origins[key] = source

    if path is not None:
        apply(load_yaml(path) or {}, str(path))
    apply(parse_set(overrides), "--set")
    cfg.validate(origins)
    return cfg


def default_config_path(scenario: str, algo: str = "mappo") -> Path | None:
    """The shipped `config/<algo>_<scenario>.yaml` (mappo or qmix), if there is one; every SMAX map
    (`smax:<map>`) shares `config/<algo>_smax.yaml` (the command line's --scenario names the map)."""
    name = "smax" if isinstance(scenario, str) and scenario.startswith("smax:") else scenario
    candidate = CONFIG_DIR / f"{algo}_{name}.yaml"
    return candidate if candidate.is_file() else None


def save_config(cfg: TeacherConfig | QmixConfig | DistillConfig, path: str | Path) -> None:
    """The run's resolved config (config.yaml, distill_config.yaml), written atomically (a write error names
    the file)."""
    with writing(path), atomic_file(path) as fh:
        fh.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
