"""Teacher checkpoints: atomic writes and `load_teacher`.

`teacher.pt` is a plain dict (only tensors and Python containers, so `torch.load(weights_only=True)` reads it)
holding everything needed to rebuild the teacher without the training code's state:

    format "kdmarl_teacher", version 1
    scenario  {"name", "params", "spec": dataclasses.asdict(ScenarioSpec)}
    config    the resolved TeacherConfig as a dict
    actor     {"kwargs": Actor(**kwargs), "state_dict"}
    critic    {"kwargs": Critic(**kwargs), "state_dict"}
    value_norm {"enabled": bool, "state_dict"}
    global_step, iteration
`checkpoint.pt` (for `--resume`) is the same dict plus "train_state" (optimizer, RNG states, wall time, ...).
A QMIX teacher (`kdmarl_teacher.qmix`) has the same layout with `algo: "qmix"`: "actor" is its shared agent
utility network (an `Actor` whose outputs are Q-values), "mixer" {"kwargs", "state_dict", "time_feature"} its
mixing network, and no critic or value normalizer (files without "algo" are MAPPO teachers).

Why atomic: a run killed while writing must leave the previous checkpoint intact, so the file is written to a
temporary file in the same directory, fsync'ed, then `os.replace`d over the old one. A failed write (disk full)
raises `errors.OutputFileError` naming the file, and a truncated or corrupt file read back raises
`errors.InputFileError` naming it, so `kdmarl` reports either in one line.
"""

from __future__ import annotations

import dataclasses
import io
import math
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from kdmarl_student.atomic import atomic_file

from kdmarl_teacher.config import check_device
from kdmarl_teacher.errors import InputFileError, NonFiniteError, writing
from kdmarl_teacher.networks import (
    Actor,
    Critic,
    actor_input,
    actor_inputs_all,
    apply_action_mask,
    critic_inputs_all,
    sample_actions,
)
from kdmarl_teacher.value_norm import IdentityNorm, ValueNorm

FORMAT = "kdmarl_teacher"
VERSION = 1
TEACHER_FILE = "teacher.pt"


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file next to `path`, fsync, then os.replace (atomic on POSIX).

    Serialized in memory first: torch.save streaming into a file that hits a full disk reports a bare
    RuntimeError ("unexpected pos"), while a plain write reports the OS error, which `writing` names the file in.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with writing(path), atomic_file(path) as handle:
        handle.write(buffer.getbuffer())


def nonfinite_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an Inf (a state_dict's items, named_parameters())."""
    return [name for name, t in named if torch.is_tensor(t) and t.is_floating_point() and not bool(t.isfinite().all())]


def divergence_error(iteration: int, values: Mapping[str, float], modules: Mapping[str, torch.nn.Module],
                     ckpt_path: Path, last_checkpoint: int | None) -> NonFiniteError:
    """The one-line stop of a diverged run: which iteration, which losses / grad norm (`values`) and which weights
    of `modules` are NaN/Inf, and which checkpoint is kept (the run stops before writing a bad one)."""
    losses = ", ".join(f"{k}={v:g}" for k, v in values.items() if not math.isfinite(v))
    parts = [losses] if losses else []
    weights = [f"{name}.{t}" for name, m in modules.items() for t in nonfinite_tensors(m.state_dict().items())]
    if weights:
        more = f" (+{len(weights) - 4} more)" if len(weights) > 4 else ""
        parts.append(f"weights {', '.join(weights[:4])}{more}")
    kept = (f"{ckpt_path} keeps iteration {last_checkpoint}" if last_checkpoint is not None
            else "no checkpoint was written")
    return NonFiniteError(f"iteration {iteration}: non-finite {'; '.join(parts)}; stopped ({kept}): lower lr or "
                          "max_grad_norm, or check the inputs")


def prepare_run_dir(out_dir: str | Path, resume: bool, what: str = "run") -> Path:
    """Create ``out_dir`` and return its ``checkpoint.pt`` path, refusing to start a second run over an
    existing one (nothing is lost) and to ``--resume`` a directory that holds no checkpoint."""
    out = Path(out_dir)
    ckpt_path = out / "checkpoint.pt"
    if resume and not ckpt_path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
    if not resume and ckpt_path.exists():
        raise FileExistsError(f"{out} already holds a {what} (checkpoint.pt); use --resume or another --out")
    out.mkdir(parents=True, exist_ok=True)
    return ckpt_path


def spec_to_dict(spec: Any) -> dict:
    """ScenarioSpec -> plain dict (tuples kept), for the checkpoint and JSON reports."""
    return dataclasses.asdict(spec) if dataclasses.is_dataclass(spec) else dict(spec)


def spec_from_dict(data: dict) -> Any:
    """Rebuild a `kdmarl_student.scenarios.ScenarioSpec` from its dict (the stored copy is authoritative, so
    a checkpoint still loads if the scenario defaults change later)."""
    from kdmarl_student.scenarios import AgentSpec, ScenarioSpec  # noqa: PLC0415 (pure-python, no torch)

    agents = tuple(
        AgentSpec(**{**a, "layout": {k: tuple(v) for k, v in a["layout"].items()},
                     "action_meanings": tuple(a["action_meanings"])})
        for a in data["agents"]
    )
    return ScenarioSpec(**{**data, "agents": agents})


@dataclass
class Teacher:
    """A frozen teacher: parameter-shared actor, centralized critic, value normalizer, scenario and config.

    A QMIX teacher (`algo == "qmix"`) has its agent utility network as `actor` (greedy action = argmax of its
    outputs, exactly as for MAPPO's logits), its monotonic `mixer`, and no critic."""

    actor: Actor
    critic: Critic | None
    value_normalizer: ValueNorm | IdentityNorm
    spec: Any  # kdmarl_student.scenarios.ScenarioSpec
    config: dict
    global_step: int = 0
    algo: str = "mappo"
    mixer: torch.nn.Module | None = None  # QMIX: QMixer, (Q_i [M, N], mixer state [M, S']) -> Q_tot [M]

    @property
    def n_agents(self) -> int:
        return self.actor.n_agents

    def actor_input(self, obs: torch.Tensor, agent_ids: torch.Tensor) -> torch.Tensor:
        """obs [*, obs_dim_max] (zero-padded), agent_ids long [*] -> actor input [*, obs_dim_max + N]."""
        return actor_input(obs, agent_ids, self.n_agents)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True, generator: torch.Generator | None = None,
            mask: torch.Tensor | None = None) -> torch.Tensor:
        """obs [B, N, obs_dim_max] -> actions long [B, N] (argmax, or sampled with the Gumbel-max trick);
        `mask` bool [B, N, A] (SMAX's available actions, `env.available_actions()`) excludes unavailable ones."""
        logits = apply_action_mask(self.actor(actor_inputs_all(obs)), mask)
        return logits.argmax(-1) if deterministic else sample_actions(logits, generator)

    @torch.no_grad()
    def value(self, state: torch.Tensor, t: torch.Tensor | int | None = None) -> torch.Tensor:
        """state [B, state_dim] -> denormalized values [B, N] (one per agent).

        A time-aware critic (`critic.time_feature`, the default) also needs `t`, the number of steps already
        taken in each environment's episode (long [B] or an int; the batched env's `env.t` after step/reset).
        """
        if self.critic is None:
            raise ValueError(f"this is a {self.algo} teacher: it has no critic (its value is the mixer's Q_tot of "
                             "the agents' utilities; see kdmarl_teacher.distill_qmix)")
        time_frac = None
        if self.critic.time_feature:
            if t is None:
                raise ValueError("this teacher's critic is time-aware (config critic_time): pass t, the steps taken "
                                 "in the current episode ([B] or int), e.g. teacher.value(state, env.t)")
            t = torch.as_tensor(t, device=state.device).expand(state.shape[0])
            time_frac = t.to(state.dtype) / float(self.spec.max_cycles)
        return self.value_normalizer.denormalize(self.critic(critic_inputs_all(state, self.n_agents, time_frac)))


def build_teacher(payload: dict, device: str | torch.device = "cpu") -> Teacher:
    """Rebuild networks from a checkpoint dict (see module docstring)."""
    if payload.get("format") != FORMAT:
        raise ValueError(f"not a kdmarl teacher checkpoint (format={payload.get('format')!r})")
    if payload.get("version") != VERSION:
        raise ValueError(f"unsupported teacher checkpoint version {payload.get('version')!r}, expected {VERSION}")
    actor = Actor(**payload["actor"]["kwargs"])
    actor.load_state_dict(payload["actor"]["state_dict"])
    spec = spec_from_dict(payload["scenario"]["spec"])
    if payload.get("algo", "mappo") == "qmix":
        from kdmarl_teacher.qmix import QMixer  # noqa: PLC0415 (qmix imports this module)

        mixer = QMixer(**payload["mixer"]["kwargs"])
        mixer.load_state_dict(payload["mixer"]["state_dict"])
        for module in (actor, mixer):
            module.to(device)
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)
        return Teacher(actor, None, IdentityNorm().to(device), spec, payload["config"],
                       int(payload.get("global_step", 0)), algo="qmix", mixer=mixer)
    critic = Critic(**payload["critic"]["kwargs"])
    critic.load_state_dict(payload["critic"]["state_dict"])
    norm: ValueNorm | IdentityNorm = ValueNorm() if payload["value_norm"]["enabled"] else IdentityNorm()
    norm.load_state_dict(payload["value_norm"]["state_dict"])
    for module in (actor, critic, norm):
        module.to(device)
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
    return Teacher(actor, critic, norm, spec, payload["config"], int(payload.get("global_step", 0)))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """torch.load (weights_only) of checkpoint.pt, teacher.pt or students.pt; a truncated or corrupt file raises
    InputFileError naming it (torch reports EOFError, OSError or RuntimeError, none of which names the file)."""
    path = Path(path)
    check_device(device)  # else torch's "cannot deserialize on CUDA" would read as a corrupt file below
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except (EOFError, OSError, RuntimeError, pickle.UnpicklingError) as err:
        detail = " ".join(str(err).split(". ")[0].split()) or type(err).__name__
        raise InputFileError(path, f"expected a complete torch.save checkpoint; the file is truncated or corrupt "
                             f"({detail})") from err
    if not isinstance(payload, dict):
        raise InputFileError(path, f"expected a checkpoint dict, got {type(payload).__name__}")
    return payload


def teacher_path(path: str | Path) -> Path:
    """A run directory -> its teacher.pt; a file path unchanged (every `--teacher RUN_OR_FILE` goes through here)."""
    path = Path(path)
    return path / TEACHER_FILE if path.is_dir() else path


def load_teacher(path: str | Path, device: str | torch.device = "cpu") -> Teacher:
    """Load `teacher.pt` (or a run directory containing one) as a frozen `Teacher` on `device`."""
    return build_teacher(load_checkpoint(teacher_path(path), device), device)
