"""Validation of a parsed manifest: schema version, JSON Schema, and the cross-field rules the schema cannot say.

:func:`validate_manifest_data` is the one validator, used by the reader (:func:`kdmarl_student.manifest.load_manifest`)
and by every writer (:func:`kdmarl_student.manifest_build.dump_manifest`), so an exporter can never ship a manifest
its own runtime refuses. In order: a supported ``schema_version`` (checked first, so an old runtime says "unknown
schema_version" instead of a confusing schema error); the JSON Schema (draft 2020-12, ``schema/manifest.schema.json``,
jsonschema imported on first use); fields that need a newer version (memory: 1.1, action masks: 1.2); unique agent
names; the team is the scenario's (:func:`check_team`); per agent: slices inside the observation, the sensing profile
fits the layout and gives ``input_dim``, meanings match ``n_actions``, the safe action is an action and always
available under a mask, and ``memory`` agrees with the sensing and names its own graph tensors.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdmarl_student.errors import BundleError
from kdmarl_student.manifest_json import field_name
from kdmarl_student.scenarios import is_smax, scenario_spec
from kdmarl_student.sensing import history_dim, sensed_dim

SCHEMA_VERSION = "1.1"  # what writers write; 1.1 added agents[].memory (issue 11)
MASK_SCHEMA_VERSION = "1.2"  # 1.2 added agents[].action.mask (issue 12, SMAX); written only by manifests with one
PROFILE_SCHEMA_VERSION = "1.3"  # 1.3 added the measured collaboration profile and agents[].communication (issue 25)
SUPPORTED_SCHEMA_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "1.2", "1.3")  # what this runtime reads
PROFILE_TEAM_FIELDS = ("retention_ci95", "protocol")  # team fields that need 1.3
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "manifest.schema.json"
STATE_BYTES_PER_VALUE = 4  # a student's state is float32
MEMORY_KINDS = ("history", "recurrent")
RESET_EVENTS = ("episode_start", "step_backwards", "activate", "stale")  # when a runtime resets a state
INITIAL_STATES = {"history": "current_observation", "recurrent": "zeros"}


@functools.cache
def manifest_schema() -> dict[str, Any]:
    """The JSON Schema every manifest is validated against (read once per process)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.cache
def _schema_validator() -> Any:
    """The draft 2020-12 validator of :func:`manifest_schema`, built once per process (imports jsonschema)."""
    import jsonschema  # noqa: PLC0415  lazy: a process that never validates a manifest never maps it

    return jsonschema.Draft202012Validator(manifest_schema())


def _check_agent(manifest_path: Path, index: int, agent: Mapping[str, Any]) -> None:
    """Cross-field rules of one agent entry that JSON Schema cannot express."""
    prefix = f"agents[{index}]"
    obs = agent["observation"]
    source_dim = int(obs["source_dim"])
    for name, (start, stop) in obs["layout"].items():
        if not 0 <= start <= stop <= source_dim:
            raise BundleError(manifest_path, f"{prefix}.observation.layout.{name}",
                              f"0 <= start <= stop <= source_dim ({source_dim}); got [{start}, {stop}]")
    try:
        width = sensed_dim(obs["layout"], obs["sensing"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(manifest_path, f"{prefix}.observation.sensing",
                          f"a profile that fits the layout: {exc}") from exc
    if width != int(obs["input_dim"]):
        raise BundleError(manifest_path, f"{prefix}.observation.input_dim",
                          f"{width} (the width the sensing profile selects); got {obs['input_dim']}")
    action = agent["action"]
    if len(action["meanings"]) != int(action["n_actions"]):
        raise BundleError(manifest_path, f"{prefix}.action.meanings",
                          f"{action['n_actions']} meanings (one per action); got {len(action['meanings'])}")
    if int(action["safe_action"]) >= int(action["n_actions"]):
        raise BundleError(manifest_path, f"{prefix}.action.safe_action",
                          f"an action index below n_actions ({action['n_actions']}); got {action['safe_action']}")
    mask = action.get("mask")
    if mask is not None and int(mask["always_available"]) != int(action["safe_action"]):
        raise BundleError(manifest_path, f"{prefix}.action.mask.always_available",
                          f"the safe action {action['safe_action']} (what a refused input falls back to must always "
                          f"be allowed); got {mask['always_available']}")
    _check_memory(manifest_path, prefix, agent)


def _check_memory(manifest_path: Path, prefix: str, agent: Mapping[str, Any]) -> None:
    """An agent's ``memory`` agrees with its sensing and its model entry (schema 1.1; the schema checked types).

    History features in the sensing profile need a ``history`` memory entry whose ``state_dim`` is the number
    of history features (and a ``history`` entry needs them); a ``recurrent`` entry names state input/output
    tensors distinct from the observation and the logits. ``state_bytes`` is ``4 * state_dim`` (float32) and
    every runtime resets at an episode start.
    """
    obs, memory = agent["observation"], agent.get("memory")
    field_name = f"{prefix}.memory"
    history = history_dim(obs["layout"], obs["sensing"])
    if memory is None:
        if history:
            raise BundleError(manifest_path, field_name,
                              f"a memory entry of kind 'history' with state_dim {history}: the sensing profile "
                              "has history features, so the runtime must keep the previous observation")
        return
    kind, state_dim = memory["kind"], int(memory["state_dim"])
    if kind == "history":
        if not history:
            raise BundleError(manifest_path, f"{field_name}.kind",
                              "'recurrent' or no memory: kind 'history' needs history features in "
                              f"{prefix}.observation.sensing, which has none")
        if state_dim != history:
            raise BundleError(manifest_path, f"{field_name}.state_dim",
                              f"{history} (the history features of {prefix}.observation.sensing); got {state_dim}")
    else:
        if history:
            raise BundleError(manifest_path, f"{field_name}.kind",
                              "'history': the sensing profile has history features, and a student keeps one "
                              f"kind of memory; got {kind!r}")
        model = agent["model"]
        for key in ("state_input", "state_output"):
            if memory[key] in (model["input_name"], model["output_name"]):
                raise BundleError(manifest_path, f"{field_name}.{key}",
                                  f"a tensor name other than the observation input and the logits output "
                                  f"({model['input_name']!r}, {model['output_name']!r}); got {memory[key]!r}")
        if memory["state_input"] == memory["state_output"]:
            raise BundleError(manifest_path, f"{field_name}.state_output",
                              f"a name other than state_input ({memory['state_input']!r})")
    if int(memory["state_bytes"]) != STATE_BYTES_PER_VALUE * state_dim:
        raise BundleError(manifest_path, f"{field_name}.state_bytes",
                          f"{STATE_BYTES_PER_VALUE * state_dim} (float32 x state_dim {state_dim}); "
                          f"got {memory['state_bytes']}")
    if memory["initial_state"] != INITIAL_STATES[kind]:
        raise BundleError(manifest_path, f"{field_name}.initial_state",
                          f"{INITIAL_STATES[kind]!r} for kind {kind!r}; got {memory['initial_state']!r}")
    if "episode_start" not in memory["reset_on"]:
        raise BundleError(manifest_path, f"{field_name}.reset_on",
                          "a list holding 'episode_start' (offline evaluation, the bridge and training all reset "
                          f"there); got {memory['reset_on']}")


def _schema_error_field(error: Any) -> str:
    """The field a schema error is about; for an unknown key, the key itself (``agents[0].model.url``)."""
    parts = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        unknown = sorted(k for k in error.instance if k not in known)
        if unknown:
            parts.append(unknown[0])
    return field_name(parts) or "(root)"


def validate_manifest_data(data: Any, manifest_path: Path) -> None:
    """Schema version, JSON Schema, then cross-field rules; raises ``BundleError`` on the first failure."""
    if not isinstance(data, dict):
        raise BundleError(manifest_path, "", f"a JSON object; got {type(data).__name__}")
    version = data.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise BundleError(manifest_path, "schema_version",
                          f"one of {list(SUPPORTED_SCHEMA_VERSIONS)} (this runtime's); got {version!r}")
    from jsonschema.exceptions import best_match  # noqa: PLC0415  (imported by _schema_validator already)

    error = best_match(_schema_validator().iter_errors(data))
    if error is not None:
        raise BundleError(manifest_path, _schema_error_field(error), f"schema: {error.message}")
    if version == "1.0":  # 1.0 runtimes know no memory: a 1.0 manifest cannot carry one
        for index, agent in enumerate(data["agents"]):
            if "memory" in agent:
                raise BundleError(manifest_path, f"agents[{index}].memory",
                                  "schema_version '1.1' for a memory entry (a 1.0 runtime would not keep the state)")
    if version in ("1.0", "1.1"):  # action masks came with 1.2: an older runtime would ignore the mask
        for index, agent in enumerate(data["agents"]):
            if "mask" in agent["action"]:
                raise BundleError(manifest_path, f"agents[{index}].action.mask",
                                  f"schema_version '{MASK_SCHEMA_VERSION}' for an action mask (a {version} runtime "
                                  "would pick unavailable actions)")
    if version != PROFILE_SCHEMA_VERSION:  # the 1.3 fields: an older runtime would drop them silently
        for field, present in _profile_fields(data):
            if present:
                raise BundleError(manifest_path, field, f"schema_version '{PROFILE_SCHEMA_VERSION}' for {field} "
                                  f"(a {version} manifest cannot carry it)")
    names = [agent["name"] for agent in data["agents"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BundleError(manifest_path, "agents[].name", f"unique agent names; {duplicates} repeat")
    check_team(data, manifest_path)
    for index, agent in enumerate(data["agents"]):
        _check_agent(manifest_path, index, agent)
        _check_communication(manifest_path, index, agent, names)


def _profile_fields(data: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """Each schema-1.3 field with whether this manifest holds it."""
    team = data.get("team") or {}
    fields = [(f"team.{key}", key in team) for key in PROFILE_TEAM_FIELDS]
    fields.append(("envelope", "envelope" in data))
    producer = data.get("producer") or {}
    fields.append(("producer.composed_from", "composed_from" in producer or producer.get("students") == "composed"))
    fields += [(f"agents[{i}].communication", "communication" in agent) for i, agent in enumerate(data["agents"])]
    return fields


def oldest_schema_version(data: Mapping[str, Any]) -> str:
    """The oldest schema version that holds this manifest (what writers write, so older runtimes keep loading
    what they can): 1.3 with a profile field, 1.2 with an action mask, else 1.1."""
    if any(present for _, present in _profile_fields(data)):
        return PROFILE_SCHEMA_VERSION
    if any("mask" in agent.get("action", {}) for agent in data["agents"]):
        return MASK_SCHEMA_VERSION
    return SCHEMA_VERSION


def _check_communication(manifest_path: Path, index: int, agent: Mapping[str, Any], names: list[str]) -> None:
    """``communication`` (schema 1.3): ``none`` listens to nobody; ``listens`` names teammates of this manifest."""
    comm = agent.get("communication")
    if comm is None:
        return
    field = f"agents[{index}].communication.listens_to"
    listens = list(comm.get("listens_to") or [])
    if comm["topology"] == "none" and listens:
        raise BundleError(manifest_path, field, f"empty for topology 'none'; got {listens}")
    if comm["topology"] == "listens":
        unknown = sorted(set(listens) - set(names))
        if not listens or unknown or agent["name"] in listens:
            raise BundleError(manifest_path, field, f"teammates of this manifest ({names}, not itself) for topology "
                              f"'listens'; got {listens}")


def check_team(data: Mapping[str, Any], manifest_path: Path) -> None:
    """The manifest's agents are the scenario's team (issue 22): a known scenario with valid parameters, as many
    agents as it has, with its names in its order (MPE: ``agent_0``..; SMAX: one ``ally_i`` per allied unit, the
    role naming the unit type), each with the scenario's observation width and action count. A 600-agent
    manifest for a 3-agent ``simple_spread`` would otherwise start 600 nodes."""
    scenario = data["scenario"]
    try:
        spec = scenario_spec(scenario["name"], **dict(scenario.get("params") or {}))
    except (ValueError, TypeError) as exc:
        raise BundleError(manifest_path, "scenario", f"a scenario this runtime knows, with valid parameters: {exc}") \
            from exc
    agents = data["agents"]
    expected = list(spec.agent_names)
    what = f"the allied units of {spec.name}" if is_smax(spec.name) else f"the agents of {spec.name}"
    if len(agents) != len(expected):
        raise BundleError(manifest_path, "agents", f"{len(expected)} agents ({what}: {expected}); got {len(agents)}")
    for index, (agent, want) in enumerate(zip(agents, spec.agents, strict=True)):
        prefix = f"agents[{index}]"
        if agent["name"] != want.name:
            raise BundleError(manifest_path, f"{prefix}.name", f"{want.name!r} ({what}, in order: {expected}); "
                              f"got {agent['name']!r}")
        if is_smax(spec.name) and agent["role"] != want.role:
            raise BundleError(manifest_path, f"{prefix}.role", f"{want.role!r} (the unit type of {want.name} in "
                              f"{spec.name}); got {agent['role']!r}")
        if int(agent["observation"]["source_dim"]) != want.obs_dim:
            raise BundleError(manifest_path, f"{prefix}.observation.source_dim",
                              f"{want.obs_dim} ({want.name}'s observation in {spec.name}); got "
                              f"{agent['observation']['source_dim']}")
        if int(agent["action"]["n_actions"]) != want.n_actions:
            raise BundleError(manifest_path, f"{prefix}.action.n_actions",
                              f"{want.n_actions} ({want.name}'s actions in {spec.name}); got "
                              f"{agent['action']['n_actions']}")


__all__ = ["INITIAL_STATES", "MASK_SCHEMA_VERSION", "MEMORY_KINDS", "PROFILE_SCHEMA_VERSION", "RESET_EVENTS",
           "SCHEMA_PATH", "SCHEMA_VERSION", "STATE_BYTES_PER_VALUE", "SUPPORTED_SCHEMA_VERSIONS", "check_team",
           "manifest_schema", "oldest_schema_version", "validate_manifest_data"]
