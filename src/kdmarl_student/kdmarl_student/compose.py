"""A team bundle composed from students of different bundles (issue 25): the compatibility rules and the manifest.

``kdmarl compose --agent agent_0=bundles/a --agent agent_1=bundles/b[:agent_1] ... --out bundles/c`` takes each
agent's entry and model from the bundle named for it. The first ``--agent`` bundle is the *reference*: it
fixes what the team runs in. Every part must agree with it, and each disagreement is a
:class:`CompositionError` naming the field:

- ``scenario.name``, ``scenario.params.<key>``, ``scenario.max_cycles``: the same world;
- ``conventions.<key>``: the same definitions of the per-agent figures each entry keeps (FLOPs, memory,
  latency, budget); ``team_return`` is not compared, the team figures being measured again (the composed
  manifest states today's definition);
- per agent, against the reference's entry for that slot: ``role``, ``observation.source_dim``,
  ``observation.layout``, ``action.meanings`` (order included), ``action.safe_action``, ``action.mask``
  (an action mask or none), ``control_rate_hz`` (lockstep at one rate), ``memory.kind`` (the robot's runtime
  keeps a state for that slot or not; ``allow_memory_change`` accepts another kind) and ``memory.reset_on``,
  ``communication.topology`` and ``communication.listens_to`` (a student may only listen to teammates that
  came from its own bundle: only they speak its messages).

What a student *sees* (its sensing profile, ``input_dim``) and its model may differ: that is the point of
composing (one robot replaced by a student distilled for smaller hardware). The composed manifest keeps each
entry as written by its producer (sha256, resources, budget, latency, parity), records the parts in
``producer.composed_from`` and takes the reference's teacher actor; its team figures are measured again.

:func:`compose_bundle` writes the composed bundle (models copied byte for byte after the robot's checks, team
results and envelope measured again, signed if a key is given, published atomically). ROS-free, torch-free: a
fleet tool can check and build a composition without the training stack.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdmarl_student.bundle_stage import publish_stage, staging
from kdmarl_student.manifest import (
    CONVENTIONS,
    MANIFEST_FILE,
    Manifest,
    build_manifest,
    dump_manifest,
    load_manifest,
    oldest_schema_version,
    sha256_file,
)
from kdmarl_student.scenarios import scenario_spec
from kdmarl_student.team_profile import (
    DEFAULT_ENVELOPE_EPISODES,
    DEFAULT_ENVELOPE_SECONDS,
    measure_envelope,
    measure_team,
)


class CompositionError(ValueError):
    """Two parts of a composition disagree on ``field`` (for agent ``agent``, if per agent)."""

    def __init__(self, field: str, message: str, agent: str | None = None) -> None:
        self.field = field
        self.agent = agent
        where = f"agents[{agent}].{field}" if agent else field
        super().__init__(f"incompatible composition: {where}: {message}")


@dataclass(frozen=True)
class Part:
    """Agent ``slot`` of the composed team is agent ``source_agent`` of the bundle ``manifest``."""

    slot: str
    manifest: Manifest
    source_agent: str


def parse_agent_option(value: str) -> tuple[str, Path, str]:
    """``agent_0=bundles/a`` or ``agent_0=bundles/a:agent_2`` -> (slot, bundle, source agent)."""
    slot, sep, rest = value.partition("=")
    if not sep or not slot or not rest:
        raise ValueError(f"--agent {value!r}: expected AGENT=BUNDLE or AGENT=BUNDLE:SOURCE_AGENT")
    bundle, _, source = rest.rpartition(":") if ":" in Path(rest).name else (rest, "", slot)
    return slot, Path(bundle), source or slot


def _memory(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    return entry.get("memory") or {}


def _communication(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    return entry.get("communication") or {"topology": "none"}


AGENT_FIELDS: tuple[tuple[str, Any], ...] = (
    ("role", lambda e: e["role"]),
    ("observation.source_dim", lambda e: e["observation"]["source_dim"]),
    ("observation.layout", lambda e: {k: list(v) for k, v in e["observation"]["layout"].items()}),
    ("action.meanings", lambda e: list(e["action"]["meanings"])),
    ("action.safe_action", lambda e: e["action"]["safe_action"]),
    ("action.mask", lambda e: (e["action"].get("mask") or {}).get("source")),
    ("control_rate_hz", lambda e: float(e["control_rate_hz"])),
    ("memory.kind", lambda e: _memory(e).get("kind", "none")),
    ("memory.reset_on", lambda e: sorted(_memory(e).get("reset_on", [])) if _memory(e) else None),
    ("communication.topology", lambda e: _communication(e)["topology"]),
)


def check_composition(parts: Sequence[Part], *, allow_memory_change: bool = False) -> None:
    """Raise :class:`CompositionError` naming the first field on which a part disagrees with the reference."""
    if not parts:
        raise CompositionError("agents", "at least one --agent")
    ref = parts[0].manifest
    scenario = ref.scenario
    slots = [p.slot for p in parts]
    expected = list(scenario_spec(scenario["name"], **dict(scenario.get("params") or {})).agent_names)
    if sorted(slots) != sorted(expected) or len(set(slots)) != len(slots):
        raise CompositionError("agents", f"exactly one part per agent of {scenario['name']} {expected}; got {slots}")
    for part in parts:
        other = part.manifest.scenario
        if other["name"] != scenario["name"]:
            raise CompositionError("scenario.name", f"{scenario['name']!r} (reference) vs {other['name']!r} "
                                   f"({part.manifest.path})", part.slot)
        for key in sorted(set(scenario.get("params") or {}) | set(other.get("params") or {})):
            a, b = (scenario.get("params") or {}).get(key), (other.get("params") or {}).get(key)
            if a != b:
                raise CompositionError(f"scenario.params.{key}", f"{a!r} (reference) vs {b!r} ({part.manifest.path})",
                                       part.slot)
        if other.get("max_cycles") != scenario.get("max_cycles"):
            raise CompositionError("scenario.max_cycles", f"{scenario.get('max_cycles')} vs {other.get('max_cycles')}",
                                   part.slot)
        conv_a, conv_b = ref.data.get("conventions") or {}, part.manifest.data.get("conventions") or {}
        for key in sorted((set(conv_a) | set(conv_b)) - {"team_return"}):
            if conv_a.get(key) != conv_b.get(key):
                raise CompositionError(f"conventions.{key}", f"{conv_a.get(key)!r} (reference) vs "
                                       f"{conv_b.get(key)!r} ({part.manifest.path})", part.slot)
        if part.source_agent not in part.manifest.agent_names:
            raise CompositionError("name", f"{part.manifest.path} has no agent {part.source_agent!r}", part.slot)
        want = ref.agent(part.slot).raw
        have = part.manifest.agent(part.source_agent).raw
        for field, read in AGENT_FIELDS:
            if field == "memory.kind" and allow_memory_change:
                continue
            if field == "memory.reset_on" and (not _memory(want) or not _memory(have)):
                continue
            if read(want) != read(have):
                raise CompositionError(field, f"{read(want)!r} (the reference's {part.slot}) vs {read(have)!r} "
                                       f"({part.manifest.path}, {part.source_agent})", part.slot)
        listens = list(_communication(have).get("listens_to") or [])
        strangers = [p.slot for p in parts if p.slot in listens and p.manifest.path != part.manifest.path]
        if strangers or (part.source_agent != part.slot and listens):
            raise CompositionError("communication.listens_to", f"listens to {listens}, but {strangers or listens} "
                                   "come from another bundle or slot (they would not speak its messages)", part.slot)


def compose_manifest(parts: Sequence[Part], *, source: str = "kdmarl compose",
                     allow_memory_change: bool = False) -> dict[str, Any]:
    """The composed team's manifest (team figures empty: measure them on the written bundle). Each agent's model
    file is renamed ``<slot>.onnx``; the caller copies the model bytes there (they keep their sha256)."""
    check_composition(parts, allow_memory_change=allow_memory_change)
    ref = parts[0].manifest
    by_slot = {p.slot: p for p in parts}
    agents = []
    for name in ref.agent_names:
        part = by_slot[name]
        entry = copy.deepcopy(part.manifest.agent(part.source_agent).raw)
        entry["name"] = name
        entry["model"]["file"] = f"{name}.onnx"
        agents.append(entry)
    spec = scenario_spec(ref.scenario["name"], **dict(ref.scenario.get("params") or {}))
    data = build_manifest(
        scenario=spec, agents=agents, teacher=copy.deepcopy(ref.data.get("teacher")),
        conventions={**(ref.data.get("conventions") or {}), "team_return": CONVENTIONS["team_return"]},
        producer={"tool": "kdmarl compose", "source": source, "students": "composed",
                  "composed_from": [{"agent": p.slot, "bundle": str(p.manifest.path.parent), "source_agent":
                                     p.source_agent, "manifest_sha256": sha256_file(p.manifest.path)} for p in parts]})
    data["schema_version"] = oldest_schema_version(data)
    return data


def compose_bundle(agents: list[str], out: Path, *, private_key: Any = None, force: bool = False,
                   allow_memory_change: bool = False, eval_episodes: int = 100, eval_seed: int = 1000,
                   envelope_episodes: int | None = None,
                   envelope_seconds: float = DEFAULT_ENVELOPE_SECONDS) -> Path:
    """Compose (``agents``: ``SLOT=BUNDLE[:SOURCE]``), copy every checked model byte for byte, measure the team
    results and the envelope on the composed bundle, sign it with ``private_key`` (ed25519) if given, load it as a
    robot does and publish it atomically; returns ``out``."""
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists (use --force to replace it)")
    parts, loaded = [], {}
    for option in agents:
        slot, bundle, source = parse_agent_option(option)
        key_dir = bundle.resolve()
        if key_dir not in loaded:
            loaded[key_dir] = load_manifest(bundle)
        parts.append(Part(slot=slot, manifest=loaded[key_dir], source_agent=source))
    data = compose_manifest(parts, source=" ".join(agents), allow_memory_change=allow_memory_change)
    with staging(out) as stage:
        for part in parts:
            model = part.manifest.read_model(part.manifest.agent(part.source_agent))  # size, sha256, graph checked
            (stage / f"{part.slot}.onnx").write_bytes(model.data)
        if data.get("teacher"):
            (stage / data["teacher"]["file"]).write_bytes(parts[0].manifest.read_teacher_model().data)
        path = stage / MANIFEST_FILE
        path.write_bytes(dump_manifest(data, path))
        seeds = list(range(eval_seed, eval_seed + eval_episodes))
        has_teacher = bool(data.get("teacher"))
        if seeds:
            data["team"] = measure_team(stage, seeds, has_teacher=has_teacher)
        n_envelope = min(DEFAULT_ENVELOPE_EPISODES, eval_episodes) if envelope_episodes is None else envelope_episodes
        if n_envelope > 0:
            data["envelope"] = measure_envelope(stage, range(eval_seed, eval_seed + n_envelope),
                                                time_budget_s=envelope_seconds, has_teacher=has_teacher,
                                                max_cycles=int(data["scenario"].get("max_cycles") or 25))
        data["schema_version"] = oldest_schema_version(data)
        path.write_bytes(dump_manifest(data, path))
        publish_stage(stage, out, private_key)
    return out


__all__ = ["AGENT_FIELDS", "CompositionError", "Part", "check_composition", "compose_bundle", "compose_manifest",
           "parse_agent_option"]
