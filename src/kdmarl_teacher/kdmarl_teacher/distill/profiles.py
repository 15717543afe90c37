"""Sensing profiles, hardware profiles and team configs — and the torch twin of the sensing transform.

- A **sensing profile** names what slices of its observation an agent's student sees. Named profiles
  (``SENSING_PROFILES``) are written against slice names and resolved against a scenario's layout into the
  concrete dict that ``kdmarl_student.sensing.apply_sensing`` takes (and that students.pt / the manifest
  store). A team config may also give a profile inline as a dict in the same vocabulary.
- A **hardware profile** (``config/hardware/NAME.yaml``) is a budget per decision: ``max_flops``,
  ``max_params``, ``max_memory_bytes``, ``max_latency_ms`` at ``control_rate_hz`` with a
  ``sustained_flops_per_s`` to estimate latency. Each file says where its figures come from.
- A **team config** (``config/teams/NAME.yaml``) names the scenario and maps each agent to a sensing and a
  hardware profile, and optionally a ``memory`` kind (issue 11): ``none`` (an MLP on the current sensed
  observation; the default), ``history`` (an MLP with history features appended by the sensing transform:
  by default the deltas of the selected slices; ``history: {mode, slices}`` overrides), ``recurrent`` (a GRU
  student from ``GRU_LADDER``), or a list of kinds tried in order, the first whose ladder fits the budget
  being taken (``[recurrent, history, none]``: memory where the budget allows it). ``load_team`` validates
  everything up front and raises ``ValueError`` naming the file, the agent and the field (unknown profile,
  slice not in the scenario, budget no ladder rung meets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from kdmarl_student.scenarios import ScenarioSpec, scenario_spec
from kdmarl_student.sensing import SLOT_DIM, history_dim, history_plan, resolve_profile, sensed_dim

from kdmarl_teacher.core.config import CONFIG_DIR, load_yaml
from kdmarl_teacher.core.resources import mlp_resources
from kdmarl_teacher.distill.students import GRU_LADDER, LADDER, RungChoice, choose_rung, rung_resources

HARDWARE_DIR = CONFIG_DIR / "hardware"
TEAMS_DIR = CONFIG_DIR / "teams"

# Named sensing profiles, in slice vocabulary. "exclude" drops slices (missing ones are ignored, so a profile
# works across scenarios); "include" keeps only those (all must exist); "nearest" keeps the k closest slots.
SENSING_PROFILES: dict[str, dict[str, Any]] = {
    "full": {},
    "no_velocity": {"exclude": ["self_vel"]},
    "no_other_agents": {"exclude": ["other_agents", "comm"]},
    "nearest1_landmark": {"nearest": {"landmarks": 1}},
    "nearest2_landmarks": {"nearest": {"landmarks": 2}},
    "self_and_landmarks": {"include": ["self_vel", "self_pos", "landmarks"]},
    # SMAX (kdmarl_student.scenarios.smax_agent_layout: allies, enemies, own, unit_type). SMAX's unit slots are
    # 13 features wide (health, relative position, last move, last target, cooldown, type one-hot), not the 2-D
    # position slots "nearest" ranks, and a unit out of sight is all zeros (it would rank nearest); an enemy's
    # slot index is also what "attack_enemy_j" refers to, so reordering enemies would change the actions'
    # meaning. So SMAX profiles drop whole slices instead of keeping the nearest k.
    "no_allies": {"exclude": ["allies"]},  # enemies, own features and own unit type
    "no_unit_type": {"exclude": ["unit_type"]},  # a per-agent student's own type is constant: free to drop
    "enemies_and_own": {"exclude": ["allies", "unit_type"]},  # the smallest input that can still fight
}

MEMORY_KINDS = ("none", "history", "recurrent")
DEFAULT_HISTORY = {"mode": "delta"}  # deltas of every selected slice without "nearest" (kdmarl_student.sensing)

HARDWARE_FIELDS = ("max_flops", "max_params", "max_memory_bytes", "max_latency_ms", "control_rate_hz",
                   "sustained_flops_per_s")


# ----------------------------------------------------------------------------------------------- sensing
def resolve_sensing(profile: str | Mapping, layout: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """Named or inline profile -> the concrete dict of ``kdmarl_student.sensing`` (validated against layout)."""
    if isinstance(profile, str):
        if profile not in SENSING_PROFILES:
            raise ValueError(f"unknown sensing profile {profile!r}: expected one of {sorted(SENSING_PROFILES)}")
        name, spec = profile, SENSING_PROFILES[profile]
    elif isinstance(profile, Mapping):
        name, spec = str(profile.get("name", "custom")), profile
    else:
        raise ValueError(f"sensing profile must be a name or a mapping, got {profile!r}")
    unknown = set(spec) - {"name", "include", "exclude", "slices", "nearest", "history", "description"}
    if unknown:
        raise ValueError(f"sensing profile {name!r}: unknown field(s) {sorted(unknown)}")
    if "include" in spec or "slices" in spec:
        slices = list(spec.get("include", spec.get("slices")))
    else:
        slices = [s for s in layout if s not in set(spec.get("exclude", []))]
    nearest = {k: int(v) for k, v in dict(spec.get("nearest") or {}).items()}
    if "unit_type" in layout and set(nearest) & {"allies", "enemies"}:  # SMAX: see SENSING_PROFILES
        raise ValueError(f"sensing profile {name!r}: field 'nearest': SMAX unit slots are not 2-D positions "
                         "(and enemy j is what attack_enemy_j targets); drop whole slices instead")
    # "nearest" on a slice this scenario lacks (e.g. landmarks for the speaker) is an error: say which.
    concrete = {"name": name, "slices": slices, "nearest": nearest}
    if spec.get("history") is not None:
        concrete["history"] = dict(spec["history"])
    resolve_profile(layout, concrete)  # raises ValueError naming the field
    return concrete


def sensing_index_plan(layout: Mapping[str, Sequence[int]], sensing: Mapping) -> list[tuple[int, int, int | None]]:
    """(start, stop, k or None) per selected slice, in layout order: what both twins execute."""
    return [(start, stop, k) for _, start, stop, k in resolve_profile(layout, sensing)]


def apply_sensing_torch(obs_full: torch.Tensor, layout: Mapping[str, Sequence[int]], sensing: Mapping,
                        previous: torch.Tensor | None = None) -> torch.Tensor:
    """Torch twin of ``kdmarl_student.sensing.apply_sensing``: [..., source_dim] -> [..., input_dim].

    Same plan, same float operations (squared distance x*x + y*y, stable sort, one subtraction per history
    delta), so results are bit-identical to the numpy version (tested). ``previous`` is the previous full
    observation for history features (``None``: an episode start, the current one stands in).
    """
    parts = []
    for start, stop, k in sensing_index_plan(layout, sensing):
        block = obs_full[..., start:stop]
        if k is None:
            parts.append(block)
            continue
        slots = block.reshape(*block.shape[:-1], -1, SLOT_DIM)  # [..., S, 2]
        d2 = slots[..., 0] * slots[..., 0] + slots[..., 1] * slots[..., 1]  # [..., S]
        order = torch.sort(d2, dim=-1, stable=True).indices[..., :k]  # [..., k]
        picked = torch.gather(slots, -2, order[..., None].expand(*order.shape, SLOT_DIM))  # [..., k, 2]
        parts.append(picked.reshape(*block.shape[:-1], k * SLOT_DIM))
    mode, history = history_plan(layout, sensing)
    prev = obs_full if previous is None else previous
    for _, start, stop in history:
        before = prev[..., start:stop]
        parts.append(obs_full[..., start:stop] - before if mode == "delta" else before)
    return torch.cat(parts, dim=-1)


# ---------------------------------------------------------------------------------------------- hardware
def list_hardware_profiles() -> list[str]:
    return sorted(p.stem for p in HARDWARE_DIR.glob("*.yaml"))


def load_hardware(name_or_path: str | Path) -> dict[str, Any]:
    """A hardware profile by name (``config/hardware/NAME.yaml``) or by path; ValueError on unknown/invalid."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = HARDWARE_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown hardware profile {name_or_path!r}: expected one of {list_hardware_profiles()}")
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a hardware profile must be a mapping")
    data.setdefault("name", path.stem)
    for key in HARDWARE_FIELDS:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ValueError(f"{path}: field {key!r} must be a positive number, got {value!r}")
    unknown = set(data) - {*HARDWARE_FIELDS, "name", "class", "description", "fixed_overhead_s"}
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {sorted(unknown)}")
    data["source_file"] = str(path)
    return data


# -------------------------------------------------------------------------------------------------- teams
@dataclass
class AgentProfile:
    """One agent of a team: its concrete sensing dict, hardware budget, memory kind and the ladder rung that fits."""

    name: str
    role: str
    obs_dim: int
    n_actions: int
    layout: dict[str, tuple[int, int]]
    sensing: dict[str, Any]
    input_dim: int
    hardware: dict[str, Any]
    rung: RungChoice
    memory: str = "none"  # one of MEMORY_KINDS: the kind the budget picked

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "obs_dim": self.obs_dim, "n_actions": self.n_actions,
                "layout": {k: list(v) for k, v in self.layout.items()}, "sensing": self.sensing,
                "input_dim": self.input_dim, "hardware": self.hardware, "rung": self.rung.to_dict(),
                "memory": self.memory}


@dataclass
class TeamConfig:
    name: str
    source_file: str
    spec: ScenarioSpec
    agents: list[AgentProfile] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        """Human-readable choice of each agent's student, with margins (printed by ``kdmarl distill``)."""
        lines = []
        for a in self.agents:
            r = a.rung
            margins = ", ".join(f"{k.removeprefix('max_')} x{v:g}" for k, v in r.margins.items())
            lines.append(f"{a.name}: sensing={a.sensing['name']} ({a.input_dim} inputs) hardware={a.hardware['name']} "
                         f"memory={a.memory} -> {r.label}: {r.resources.flops} FLOPs, {r.resources.params} params, "
                         f"{r.resources.memory_bytes} B (state {r.resources.state_bytes} B); margins {margins}")
        return lines


def team_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    path = TEAMS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in TEAMS_DIR.glob("*.yaml"))
        raise ValueError(f"unknown team config {name_or_path!r}: expected a .yaml path or one of {known}")
    return path


def memory_choices(value: Any, where: str) -> list[str]:
    """A team entry's ``memory`` (a kind or a list of kinds in order of preference) -> the list of kinds."""
    kinds = [value] if isinstance(value, str) else value
    if not isinstance(kinds, list) or not kinds or any(k not in MEMORY_KINDS for k in kinds):
        raise ValueError(f"{where}: field 'memory' = {value!r}: expected one of {list(MEMORY_KINDS)} or a list "
                         "of them in order of preference")
    return list(kinds)


def fit_agent(
    sensing: dict[str, Any], layout: Mapping[str, Sequence[int]], n_actions: int, hardware: Mapping, *,
    kinds: list[str], history: Mapping | None, ladder: Sequence[Sequence[int]], max_flops: int | None,
) -> tuple[str, dict[str, Any], int, RungChoice | None]:
    """The first memory kind of ``kinds`` whose ladder has a rung that fits ``hardware``:
    (kind, sensing with history features if any, input width, rung) — the rung None if no kind fits."""
    for choice in kinds:
        # an inline sensing profile that carries its own history features is a history student
        kind = "history" if choice == "none" and sensing.get("history") is not None else choice
        profile = {k: v for k, v in sensing.items() if k != "history"}
        if kind == "history":
            profile["history"] = dict(history or sensing.get("history") or DEFAULT_HISTORY)
            history_plan(layout, profile)  # ValueError naming the history field
        in_dim = sensed_dim(layout, profile)
        state = history_dim(layout, profile)
        if kind == "recurrent":
            rungs = [(t, g) for t, g in GRU_LADDER if max_flops is None
                     or rung_resources(in_dim, n_actions, t, g).flops <= max_flops] or list(GRU_LADDER[:1])
            rung = choose_rung(in_dim, n_actions, hardware, rungs, recurrent=True)
        else:
            rungs = [h for h in ladder if max_flops is None
                     or mlp_resources([in_dim, *h, n_actions]).flops <= max_flops] or [min(ladder, key=sum)]
            rung = choose_rung(in_dim, n_actions, hardware, rungs, state_values=state)
        if rung is not None:
            return kind, profile, in_dim, rung
    return kinds[-1], profile, in_dim, None


def load_team(
    name_or_path: str | Path, ladder: Sequence[Sequence[int]] = LADDER, max_flops: int | None = None,
    memory: str | None = None,
) -> TeamConfig:
    """Load and validate a team config; pick each agent's memory kind and rung. ``max_flops`` caps the ladder
    (e.g. at the teacher actor's FLOPs: a student is never larger than its teacher). ``memory`` overrides
    every agent's ``memory`` field (e.g. a benchmark comparing the kinds on one team)."""
    path = team_path(name_or_path)
    where = str(path)
    try:
        data = load_yaml(path) or {}  # a YAML syntax error: InputFileError naming the file and the line
    except OSError as err:
        raise ValueError(f"{where}: cannot read team config: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{where}: a team config must be a mapping")
    unknown = set(data) - {"scenario", "params", "agents", "default", "description"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
    if "scenario" not in data:
        raise ValueError(f"{where}: field 'scenario' is missing")
    try:
        spec = scenario_spec(data["scenario"], **(data.get("params") or {}))
    except ValueError as err:
        raise ValueError(f"{where}: field 'scenario'/'params': {err}") from err
    entries = data.get("agents") or {}
    default = data.get("default") or {}
    if not isinstance(entries, dict):
        raise ValueError(f"{where}: field 'agents' must map agent names to {{sensing, hardware}}")
    extra = sorted(set(entries) - set(spec.agent_names))
    if extra:
        raise ValueError(f"{where}: agent(s) {extra} not in {spec.name} (agents: {list(spec.agent_names)})")
    team = TeamConfig(name=path.stem, source_file=where, spec=spec)
    for agent in spec.agents:
        entry = {**default, **(entries.get(agent.name) or {})}
        unknown = set(entry) - {"sensing", "hardware", "memory", "history"}
        if unknown:
            raise ValueError(f"{where}: agent {agent.name}: unknown field(s) {sorted(unknown)}")
        for key in ("sensing", "hardware"):
            if key not in entry:
                raise ValueError(f"{where}: agent {agent.name}: field '{key}' is missing")
        try:
            sensing = resolve_sensing(entry["sensing"], agent.layout)
        except ValueError as err:
            raise ValueError(f"{where}: agent {agent.name}: field 'sensing': {err}") from err
        try:
            hardware = entry["hardware"]
            hardware = dict(hardware) if isinstance(hardware, Mapping) else load_hardware(hardware)
            hardware.setdefault("name", "inline")
        except ValueError as err:
            raise ValueError(f"{where}: agent {agent.name}: field 'hardware': {err}") from err
        kinds = memory_choices(memory if memory else entry.get("memory", "none"), f"{where}: agent {agent.name}")
        history = entry.get("history")
        if history is not None and not isinstance(history, Mapping):
            raise ValueError(f"{where}: agent {agent.name}: field 'history' must be a mapping {{mode, slices}}")
        try:
            kind, sensing, in_dim, rung = fit_agent(sensing, agent.layout, agent.n_actions, hardware, kinds=kinds,
                                                    history=history, ladder=ladder, max_flops=max_flops)
        except ValueError as err:
            raise ValueError(f"{where}: agent {agent.name}: field 'history': {err}") from err
        if rung is None:
            raise ValueError(
                f"{where}: agent {agent.name}: field 'hardware': no student architecture of memory kind(s) {kinds} "
                f"fits budget {hardware['name']!r} ({ {k: hardware.get(k) for k in HARDWARE_FIELDS[:4]} }) "
                f"with {in_dim} inputs and {agent.n_actions} actions; smallest MLP rung is "
                f"{list(min(ladder, key=sum))}, smallest recurrent rung gru{GRU_LADDER[0][1]}"
            )
        team.agents.append(AgentProfile(agent.name, agent.role, agent.obs_dim, agent.n_actions, dict(agent.layout),
                                        sensing, in_dim, hardware, rung, kind))
    return team
