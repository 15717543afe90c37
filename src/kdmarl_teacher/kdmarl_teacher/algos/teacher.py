"""teacher.pt, the one module that writes it (`teacher_payload`, for MAPPO, QMIX and benchmarks) and reads it
(`load_teacher` -> a frozen `Teacher`).

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
A QMIX teacher (`kdmarl_teacher.algos.qmix`) has the same layout with `algo: "qmix"`: "actor" is its shared agent
utility network (an `Actor` whose outputs are Q-values), "mixer" {"kwargs", "state_dict", "time_feature"} its
mixing network, and no critic or value normalizer (files without "algo" are MAPPO teachers).

The file is written atomically and read back with an error naming it (`core.run_files`: a run killed while
writing leaves the previous checkpoint intact; a truncated file is `errors.InputFileError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdmarl_teacher.algos.mixer import QMixer
from kdmarl_teacher.core.networks import (
    Actor,
    Critic,
    actor_input,
    actor_inputs_all,
    apply_action_mask,
    critic_inputs_all,
    sample_actions,
)
from kdmarl_teacher.core.run_files import load_checkpoint, spec_from_dict, spec_to_dict
from kdmarl_teacher.core.value_norm import IdentityNorm, ValueNorm

FORMAT = "kdmarl_teacher"
VERSION = 1
TEACHER_FILE = "teacher.pt"














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
                             "the agents' utilities; see kdmarl_teacher.distill.qmix_recipe)")
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




def teacher_path(path: str | Path) -> Path:
    """A run directory -> its teacher.pt; a file path unchanged (every `--teacher RUN_OR_FILE` goes through here)."""
    path = Path(path)
    return path / TEACHER_FILE if path.is_dir() else path


def load_teacher(path: str | Path, device: str | torch.device = "cpu") -> Teacher:
    """Load `teacher.pt` (or a run directory containing one) as a frozen `Teacher` on `device`."""
    return build_teacher(load_checkpoint(teacher_path(path), device), device)


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's state_dict cloned to CPU: a checkpoint never depends on the device it was trained on."""
    return {k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}


def teacher_payload(config: dict, spec: Any, *, actor: torch.nn.Module, actor_kwargs: dict, global_step: int,
                    iteration: int, critic: torch.nn.Module | None = None, critic_kwargs: dict | None = None,
                    value_norm: torch.nn.Module | None = None, value_norm_enabled: bool = False,
                    mixer: torch.nn.Module | None = None, mixer_kwargs: dict | None = None,
                    mixer_time: bool = False) -> dict:
    """The teacher.pt dict (module docstring), the one place it is written: a MAPPO teacher passes its critic
    and value normalizer, a QMIX teacher its mixer (then the file says `algo: "qmix"`)."""
    payload: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    if mixer is not None:
        payload["algo"] = "qmix"
    payload.update({
        "scenario": {"name": spec.name, "params": dict(spec.params), "spec": spec_to_dict(spec)},
        "config": config,
        "actor": {"kwargs": actor_kwargs, "state_dict": cpu_state(actor)},
    })
    if critic is not None:
        assert value_norm is not None
        payload["critic"] = {"kwargs": critic_kwargs, "state_dict": cpu_state(critic)}
        payload["value_norm"] = {"enabled": bool(value_norm_enabled), "state_dict": cpu_state(value_norm)}
    if mixer is not None:
        payload["mixer"] = {"kwargs": mixer_kwargs, "state_dict": cpu_state(mixer), "time_feature": bool(mixer_time)}
    payload.update({"global_step": int(global_step), "iteration": int(iteration)})
    return payload
