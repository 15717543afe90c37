"""Load and validate a bundle manifest: the only contract between the offline and the on-board world.

A robot trusts nothing in a bundle until it has checked it, in this order:

1. ``manifest.json`` is a regular file (not a symlink, FIFO or device) of at most 1 MiB, read without
   blocking (:mod:`kdmarl_student.bundle_files`), and strict JSON: an object, no duplicate keys, no
   NaN/Infinity, no integer longer than 20 digits, nesting at most 32 levels;
2. its ``schema_version`` is one this runtime understands (checked before the schema, so an old runtime
   says "unknown schema_version" instead of a confusing schema error);
3. if a public key is configured, ``manifest.sig`` verifies over the exact bytes just read;
4. it validates against ``schema/manifest.schema.json`` (JSON Schema draft 2020-12);
5. cross-field rules the schema cannot express (slices inside the observation, the sensing profile fits
   the layout and gives ``input_dim``, action meanings match ``n_actions``, unique agent names, an agent's
   ``memory`` agrees with its sensing and names graph inputs and outputs of its own);
6. per agent on demand (:meth:`Manifest.read_model`): the model path stays inside the bundle, the file is
   regular, its size is ``model.bytes`` (and at most ``MAX_MODEL_BYTES``) before it is read, its sha256
   matches, and it keeps no tensor in ONNX external data (:mod:`kdmarl_student.onnx_wire`). The bytes
   checked are returned and are the bytes ONNX Runtime loads: the file is read once, so swapping it after
   the check changes nothing.

Every failure is a :class:`~kdmarl_student.errors.BundleError` naming the file and the field.
Only numpy, jsonschema and cryptography (for signatures) are imported: this runs on robots. Both are imported
when first needed, not at import: jsonschema by the first validation (every load validates), cryptography
only when a signature is verified (docs/ARCHITECTURE.md, "memory").
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kdmarl_student.budget import check_budget
from kdmarl_student.bundle_files import MAX_MANIFEST_BYTES, MAX_MODEL_BYTES, read_bundle_file
from kdmarl_student.errors import BundleError
from kdmarl_student.onnx_graph import check_graph
from kdmarl_student.onnx_wire import refuse_external_data
from kdmarl_student.scenarios import is_smax, scenario_spec
from kdmarl_student.sensing import history_dim, sensed_dim, sensed_slices
from kdmarl_student.signing import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    load_public_key,
    read_manifest_bytes,
    verify_bundle_signature,
)

SCHEMA_VERSION = "1.1"  # what writers write; 1.1 added agents[].memory (issue 11)
MASK_SCHEMA_VERSION = "1.2"  # 1.2 added agents[].action.mask (issue 12, SMAX); written only by manifests with one
SUPPORTED_SCHEMA_VERSIONS: tuple[str, ...] = ("1.0", "1.1", "1.2")  # what this runtime reads
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "manifest.schema.json"
MAX_JSON_DEPTH = 32  # a manifest nests 6 levels deep; the limit keeps every walk over it shallow
MAX_INT_DIGITS = 20  # int64 has 19 digits; longer integers are no count or size of this world
STATE_BYTES_PER_VALUE = 4  # a student's state is float32
MEMORY_KINDS = ("history", "recurrent")
RESET_EVENTS = ("episode_start", "step_backwards", "activate", "stale")  # when a runtime resets a state
INITIAL_STATES = {"history": "current_observation", "recurrent": "zeros"}

__all__ = [
    "MANIFEST_FILE",
    "MASK_SCHEMA_VERSION",
    "MEMORY_KINDS",
    "RESET_EVENTS",
    "SCHEMA_VERSION",
    "SIGNATURE_FILE",
    "SUPPORTED_SCHEMA_VERSIONS",
    "AgentEntry",
    "Manifest",
    "ModelFile",
    "action_mask_fields",
    "build_agent_entry",
    "build_manifest",
    "build_memory_entry",
    "decode_manifest_json",
    "dump_manifest",
    "load_manifest",
    "resolve_bundle_file",
    "sha256_file",
    "validate_manifest_data",
]


@functools.cache
def manifest_schema() -> dict[str, Any]:
    """The JSON Schema every manifest is validated against (read once per process)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.cache
def _schema_validator() -> Any:
    """The draft 2020-12 validator of :func:`manifest_schema`, built once per process (imports jsonschema)."""
    import jsonschema  # noqa: PLC0415  lazy: a process that never validates a manifest never maps it

    return jsonschema.Draft202012Validator(manifest_schema())


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks: for writers (export) hashing files they just wrote. The runtime
    never hashes a path: it hashes the bytes it read and then loads (:meth:`Manifest.read_model`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _field_name(parts: Any) -> str:
    """JSON path of a schema error as ``agents[0].model.sha256``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _HugeInt(str):
    """An integer literal with more than ``MAX_INT_DIGITS`` digits, kept as text until it is reported.

    Parsing it as ``int`` would cost quadratic time, or raise a bare ``ValueError`` beyond Python's
    4300-digit limit; keeping it lets :func:`_check_json_values` name the field that holds it.
    """


def _parse_int(text: str) -> int | _HugeInt:
    return _HugeInt(text) if len(text.lstrip("-")) > MAX_INT_DIGITS else int(text)


def _json_value_error(value: Any, depth: int, duplicates: Mapping[int, tuple[dict, str]]) -> tuple[str, str] | None:
    """(relative field, what was expected) if this one JSON value breaks a strict-JSON rule, else None."""
    if depth > MAX_JSON_DEPTH:
        return "", f"JSON nested at most {MAX_JSON_DEPTH} levels deep"
    if isinstance(value, _HugeInt):
        return "", f"an integer of at most {MAX_INT_DIGITS} digits; got {len(value)} characters"
    if isinstance(value, float) and not math.isfinite(value):
        return "", f"a finite number; got {value} (NaN, Infinity or out of float range)"
    if isinstance(value, dict) and id(value) in duplicates:
        expected = "each key once per object; this key repeats (which value counts would depend on the parser)"
        return duplicates[id(value)][1], expected
    return None


def _check_json_values(data: Any, path: Path, duplicates: Mapping[int, tuple[dict, str]]) -> None:
    """Walk the parsed document (iteratively: no recursion to exhaust) and refuse what strict JSON forbids."""
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(data, (), 0)]
    while stack:
        value, where, depth = stack.pop()
        problem = _json_value_error(value, depth, duplicates)
        if problem is not None:
            extra, expected = problem
            raise BundleError(path, _field_name((*where, extra) if extra else where) or "(root)", expected)
        if isinstance(value, dict):
            stack.extend((v, (*where, k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*where, i), depth + 1) for i, v in enumerate(value))
    if duplicates:  # a repeated key inside an object that was itself overwritten by a repeated key
        raise BundleError(path, next(iter(duplicates.values()))[1], "each key once per object; this key repeats")


def decode_manifest_json(payload: bytes, path: Path) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, finite numbers, bounded integers and nesting.

    Python's ``json`` accepts duplicate keys (last wins), ``NaN`` and ``Infinity`` and overflows ``1e400``
    to ``inf``; a signed manifest must mean one thing to every reader, so all of these are refused with a
    ``BundleError`` naming the field. Deep nesting and memory exhaustion also become ``BundleError``.
    """
    duplicates: dict[int, tuple[dict, str]] = {}  # id -> (the object, kept alive so ids stay unique; the key)

    def object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj and id(obj) not in duplicates:
                duplicates[id(obj)] = (obj, key)
            obj[key] = value
        return obj

    try:
        data = json.loads(payload.decode("utf-8"), object_pairs_hook=object_pairs, parse_int=_parse_int)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise BundleError(path, "", f"valid UTF-8 JSON: {exc}") from exc
    except RecursionError as exc:
        raise BundleError(path, "", f"valid JSON nested at most {MAX_JSON_DEPTH} levels deep") from exc
    except MemoryError as exc:
        raise BundleError(path, "", "valid JSON that fits in this robot's memory once parsed") from exc
    _check_json_values(data, path, duplicates)
    return data


def resolve_bundle_file(bundle_dir: Path, name: Any, manifest_path: Path, field_name: str) -> Path:
    """Resolve a file named by the manifest, refusing anything that could leave the bundle.

    Refused: absolute paths, ``..``, sub-directories, and names that resolve (through symlinks)
    outside the bundle directory. The schema's pattern already forbids most of these; this check is
    the one that matters, because it also holds against a manifest validated by an older schema.
    """
    if not isinstance(name, str) or not name:
        raise BundleError(manifest_path, field_name, "a file name inside the bundle")
    pure = PurePosixPath(name)
    if pure.is_absolute() or Path(name).is_absolute() or "\\" in name or len(pure.parts) != 1 or name in (".", ".."):
        raise BundleError(manifest_path, field_name, f"a plain file name inside the bundle; got {name!r}, which "
                          "escapes it (absolute path, '..' or a sub-directory)")
    root = bundle_dir.resolve()
    resolved = (bundle_dir / name).resolve()
    if resolved.parent != root:
        raise BundleError(manifest_path, field_name, f"a file inside the bundle; {name!r} resolves to {resolved}")
    return resolved


@dataclass(frozen=True)
class AgentEntry:
    """One agent of a manifest, as typed values (the raw dict is kept in ``raw``)."""

    index: int
    name: str
    role: str
    source_dim: int
    layout: dict[str, tuple[int, int]]
    sensing: dict[str, Any]
    input_dim: int
    n_actions: int
    action_meanings: tuple[str, ...]
    safe_action: int
    control_rate_hz: float
    model_file: str
    model_sha256: str
    input_name: str
    output_name: str
    resources: dict[str, int]
    budget: dict[str, Any]
    latency: dict[str, Any] | None
    memory: dict[str, Any] | None  # schema 1.1 ``memory`` (history / recurrent); None: a stateless student
    raw: dict[str, Any] = field(repr=False)
    action_mask: dict[str, Any] | None = None  # schema 1.2 ``action.mask``; None: every action always available

    @property
    def field_prefix(self) -> str:
        return f"agents[{self.index}]"

    @property
    def memory_kind(self) -> str:
        """``"none"`` (stateless), ``"history"`` or ``"recurrent"``."""
        return "none" if self.memory is None else str(self.memory["kind"])

    @property
    def state_dim(self) -> int:
        """Numbers of state the agent keeps between decisions (0 for a stateless student)."""
        return 0 if self.memory is None else int(self.memory["state_dim"])

    @classmethod
    def from_dict(cls, index: int, data: Mapping[str, Any]) -> AgentEntry:
        obs, action, model = data["observation"], data["action"], data["model"]
        return cls(
            index=index,
            name=data["name"],
            role=data["role"],
            source_dim=int(obs["source_dim"]),
            layout={k: (int(v[0]), int(v[1])) for k, v in obs["layout"].items()},
            sensing=dict(obs["sensing"]),
            input_dim=int(obs["input_dim"]),
            n_actions=int(action["n_actions"]),
            action_meanings=tuple(action["meanings"]),
            safe_action=int(action["safe_action"]),
            control_rate_hz=float(data["control_rate_hz"]),
            model_file=model["file"],
            model_sha256=model["sha256"],
            input_name=model["input_name"],
            output_name=model["output_name"],
            resources={k: int(v) for k, v in data["resources"].items()},
            budget=dict(data["budget"]),
            latency=data.get("latency"),
            memory=dict(data["memory"]) if data.get("memory") is not None else None,
            raw=dict(data),
            action_mask=dict(action["mask"]) if action.get("mask") is not None else None,
        )


@dataclass(frozen=True)
class ModelFile:
    """A model file's bytes as checked against the manifest, and where they were read from."""

    path: Path
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Manifest:
    """A validated manifest and where it came from. Model files are read and checked by :meth:`read_model`."""

    bundle_dir: Path
    data: dict[str, Any]
    agents: tuple[AgentEntry, ...]
    signed_by: str | None  # key id that verified the signature, None when not verified

    @property
    def path(self) -> Path:
        return self.bundle_dir / MANIFEST_FILE

    @property
    def agent_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.agents)

    @property
    def scenario(self) -> dict[str, Any]:
        return self.data["scenario"]

    def agent(self, name: str) -> AgentEntry:
        """The entry of agent ``name``; a ``BundleError`` lists the agents the bundle does have."""
        for entry in self.agents:
            if entry.name == name:
                return entry
        raise BundleError(self.path, "agents[].name",
                          f"an agent named {name!r}; this bundle has {list(self.agent_names)}")

    def read_model(self, entry: AgentEntry, verify_sha256: bool = True) -> ModelFile:
        """The agent's model file, read once and checked: the bytes to give ONNX Runtime.

        Inside the bundle, a regular file, ``model.bytes`` long (when the manifest says) and at most
        ``MAX_MODEL_BYTES`` (both before reading), with the manifest's sha256, and no ONNX external data.
        Load the returned ``data``, never the path again: a file swapped after the check would otherwise
        run unchecked (issue 9).
        """
        model = entry.raw["model"]
        return self._read_model_file(entry.model_file, entry.model_sha256 if verify_sha256 else None,
                                     model.get("bytes"), f"{entry.field_prefix}.model")

    def read_teacher_model(self, verify_sha256: bool = True) -> ModelFile:
        """The teacher actor shipped for comparison, checked like :meth:`read_model` (no ``bytes`` field)."""
        teacher = self.data.get("teacher")
        if not teacher:
            raise BundleError(self.path, "teacher", "a teacher actor entry; this bundle ships none")
        return self._read_model_file(teacher["file"], teacher["sha256"] if verify_sha256 else None, None, "teacher")

    def model_path(self, entry: AgentEntry, verify_sha256: bool = True) -> Path:
        """Path of the agent's model after the checks of :meth:`read_model`; for messages, not for loading
        (reopening the path would load whatever is there by then)."""
        return self.read_model(entry, verify_sha256).path

    def teacher_model_path(self, verify_sha256: bool = True) -> Path:
        """Path of the teacher actor after the checks of :meth:`read_teacher_model` (same caveat as model_path)."""
        return self.read_teacher_model(verify_sha256).path

    def _read_model_file(self, name: Any, sha256: str | None, expected_size: Any, prefix: str) -> ModelFile:
        """Resolve inside the bundle, read bounded, hash the bytes read, refuse external data."""
        path = resolve_bundle_file(self.bundle_dir, name, self.path, f"{prefix}.file")
        data = read_bundle_file(
            path, what=f"the model file named by {MANIFEST_FILE} {prefix}.file", limit=MAX_MODEL_BYTES,
            expected_size=expected_size, size_field=f"{prefix}.bytes", follow_symlinks=True,
        )
        if sha256 is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != sha256:
                raise BundleError(path, f"{prefix}.sha256",
                                  f"sha256 {sha256} as {MANIFEST_FILE} says; the file has {actual} "
                                  "(modified or corrupted model: refused)")
        refuse_external_data(data, path)
        check_graph(data, path)  # the exporter's operators only, float32 outputs of fixed width (issue 22)
        return ModelFile(path=path, data=data)


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
    return _field_name(parts) or "(root)"


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
    names = [agent["name"] for agent in data["agents"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BundleError(manifest_path, "agents[].name", f"unique agent names; {duplicates} repeat")
    check_team(data, manifest_path)
    for index, agent in enumerate(data["agents"]):
        _check_agent(manifest_path, index, agent)


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


def load_manifest(
    bundle_dir: str | Path,
    *,
    public_key: Any = None,
    require_signature: bool | None = None,
) -> Manifest:
    """Read, authenticate and validate ``bundle_dir/manifest.json``.

    Args:
        bundle_dir: the bundle directory.
        public_key: an ed25519 public key (object, PEM bytes or path). When given, the bundle must be
            signed by it: unsigned or badly signed bundles are refused.
        require_signature: defaults to ``public_key is not None``; ``True`` without a key is a
            configuration error (nothing to verify with).
    """
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / MANIFEST_FILE
    if require_signature is None:
        require_signature = public_key is not None
    if require_signature and public_key is None:
        raise BundleError(manifest_path, "", "a public key to verify the required signature with (none configured)")
    if not bundle_dir.is_dir():
        raise BundleError(bundle_dir, "", "a bundle directory; it does not exist")
    payload = read_manifest_bytes(manifest_path)
    signed_by = None
    if require_signature:
        signed_by = verify_bundle_signature(bundle_dir, load_public_key(public_key), payload=payload)
    data = decode_manifest_json(payload, manifest_path)
    validate_manifest_data(data, manifest_path)
    agents = tuple(AgentEntry.from_dict(i, a) for i, a in enumerate(data["agents"]))
    return Manifest(bundle_dir=bundle_dir, data=data, agents=agents, signed_by=signed_by)


# ------------------------------------------------------------------------------------------- writing
CONVENTIONS: dict[str, str] = {
    "flops": "2 x multiply-accumulates of the agent's deployed forward pass at batch 1 (Linear layers); "
    "bias additions and activations not counted (kdmarl_teacher.resources)",
    "memory": "weights (float32) + every activation buffer of the forward pass at batch 1",
    "latency": "measured at export: ONNX Runtime CPU, 1 thread, batch 1, warm, whole session.run call, on the "
    "named machine; a node re-measures on its own device",
    "budget": "met compares the analytic figures (flops, params, memory) with the hardware profile; latency is "
    "checked on the robot against max_latency_ms",
    "team_return": "per episode, mean over agents of each agent's summed reward; mean over eval_seeds with a 95% "
    "Student t confidence interval; retention = (R_student - R_random) / (R_teacher - R_random)",
}


def action_mask_fields(spec: Any) -> dict[str, Any]:
    """SMAX: the safe action ("stop") and the manifest's ``action.mask`` (schema 1.2); MPE: nothing (no-op 0,
    every action always available): the ``build_agent_entry`` arguments of a scenario spec's agents, for every
    writer of bundles (the exporter, the test builder)."""
    if "action_mask" not in spec.extra:
        return {}
    safe = int(spec.extra["safe_action"])
    return {"safe_action": safe, "action_mask": {"source": "environment", "description": spec.extra["action_mask"],
                                                 "always_available": safe}}


def build_agent_entry(
    *,
    name: str,
    role: str,
    source_dim: int,
    layout: Mapping[str, Any],
    sensing: Mapping[str, Any],
    action_meanings: Any,
    model_file: str,
    model_sha256: str,
    kind: str,
    resources: Mapping[str, int],
    control_rate_hz: float,
    opset: int,
    budget: Mapping[str, Any] | None = None,
    latency: Mapping[str, Any] | None = None,
    parity: Mapping[str, Any] | None = None,
    input_name: str = "observation",
    output_name: str = "logits",
    architecture: str = "",
    model_bytes: int | None = None,
    safe_action: int = 0,
    memory: Mapping[str, Any] | None = None,
    action_mask: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``agents[]`` entry of schema 1.1, with ``input_dim`` derived from the sensing profile and the
    budget status computed from the analytic figures (so writers cannot disagree with readers).

    The sensing profile is written with its slices spelled out (``"all"`` becomes the list of every slice)
    so a reader of the manifest sees what the agent observes without knowing the defaults.

    ``memory`` (see :func:`build_memory_entry`): ``None`` for a stateless student, or e.g.
    ``{"kind": "recurrent", "state_dim": 32}``; a profile with history features gets its ``history`` entry
    without being asked. ``resources["memory_bytes"]`` is the writer's figure and should count the state.

    ``action_mask`` (schema 1.2): ``None`` when every action is always available (MPE), else
    ``{"source": "environment", "description": ..., "always_available": safe_action}`` (SMAX).
    """
    layout = {k: [int(v[0]), int(v[1])] for k, v in layout.items()}
    profile = dict(sensing)
    profile["slices"] = sensed_slices(layout, profile)
    memory_entry = build_memory_entry(layout, profile, memory)
    resources = {k: int(resources[k]) for k in ("params", "flops_per_decision", "memory_bytes")}
    limits = {k: (budget or {}).get(k) for k in ("max_flops", "max_params", "max_memory_bytes", "max_latency_ms")}
    met, checks = check_budget({k: v for k, v in limits.items() if k != "max_latency_ms"}, resources, None)
    typed_limits = {k: None if v is None else float(v) if k == "max_latency_ms" else int(v) for k, v in limits.items()}
    model: dict[str, Any] = {
        "file": model_file,
        "sha256": model_sha256,
        "kind": kind,
        "input_name": input_name,
        "output_name": output_name,
        "output": "logits",
        "opset": int(opset),
        "architecture": architecture,
    }
    if model_bytes is not None:
        model["bytes"] = int(model_bytes)
    entry: dict[str, Any] = {
        "name": name,
        "role": role,
        "observation": {
            "source_dim": int(source_dim),
            "layout": layout,
            "sensing": profile,
            "input_dim": int(sensed_dim(layout, profile)),
            "dtype": "float32",
        },
        "action": {"n_actions": len(action_meanings), "meanings": list(action_meanings), "safe_action": safe_action,
                   **({"mask": dict(action_mask)} if action_mask is not None else {})},
        "control_rate_hz": float(control_rate_hz),
        "model": model,
        "resources": resources,
        "latency": dict(latency) if latency else None,
        "parity": dict(parity) if parity else None,
        "budget": {
            "profile": (budget or {}).get("name"),
            **typed_limits,
            "met": met,
            "checks": checks,
        },
    }
    if memory_entry is not None:
        entry["memory"] = memory_entry
    return entry


def build_memory_entry(layout: Mapping[str, Any], sensing: Mapping[str, Any],
                       memory: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The ``memory`` field of an agent entry, defaults filled (the one place they are decided).

    - ``None`` and a profile without history features: ``None`` (a stateless student).
    - ``None`` or ``{"kind": "history"}`` with history features: ``{"kind": "history", "state_dim": W,
      "state_bytes": 4 W, "initial_state": "current_observation", "reset_on": [...]}``, W =
      ``sensing.history_dim`` (a given ``state_dim`` must equal it).
    - ``{"kind": "recurrent", "state_dim": H}``: plus ``state_input`` "h_in", ``state_output`` "h_out",
      ``initial_state`` "zeros" unless given.

    ``reset_on`` defaults to every event of :data:`RESET_EVENTS`. Raises ``ValueError`` naming the field for
    an unknown kind, a missing or wrong ``state_dim`` or unknown keys (the manifest validation refuses the
    rest with a ``BundleError``).
    """
    history = history_dim(layout, sensing)
    if memory is None:
        if not history:
            return None
        memory = {"kind": "history"}
    known = {"kind", "state_dim", "state_bytes", "initial_state", "reset_on", "state_input", "state_output"}
    unknown = sorted(set(memory) - known)
    if unknown:
        raise ValueError(f"memory: unknown field(s) {unknown}; known: {sorted(known)}")
    kind = memory.get("kind")
    if kind not in MEMORY_KINDS:
        raise ValueError(f"memory: field 'kind' must be one of {list(MEMORY_KINDS)}; got {kind!r}")
    if kind == "history":
        state_dim = int(memory.get("state_dim", history))
        if state_dim != history or not history:
            raise ValueError(f"memory: field 'state_dim' of kind 'history' must be the profile's history width "
                             f"{history}; got {state_dim}")
    else:
        if "state_dim" not in memory:
            raise ValueError("memory: field 'state_dim' (the hidden size) is required for kind 'recurrent'")
        state_dim = int(memory["state_dim"])
        if state_dim < 1:
            raise ValueError(f"memory: field 'state_dim' must be >= 1; got {state_dim}")
    entry: dict[str, Any] = {
        "kind": kind,
        "state_dim": state_dim,
        "state_bytes": int(memory.get("state_bytes", STATE_BYTES_PER_VALUE * state_dim)),
    }
    if kind == "recurrent":
        entry["state_input"] = str(memory.get("state_input", "h_in"))
        entry["state_output"] = str(memory.get("state_output", "h_out"))
    entry["initial_state"] = str(memory.get("initial_state", INITIAL_STATES[kind]))
    entry["reset_on"] = [str(e) for e in memory.get("reset_on", RESET_EVENTS)]
    return entry


def build_manifest(
    *,
    scenario: Any,
    agents: list[dict[str, Any]],
    producer: Mapping[str, Any],
    eval_seeds: list[int] | None = None,
    teacher: Mapping[str, Any] | None = None,
    conventions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The top level of a schema-1.1 manifest around its ``agents[]`` entries (:func:`build_agent_entry`).

    The one builder for every writer (``kdmarl export``, the test and demo bundles), so the fields and their
    defaults are decided here; ``scenario`` is a :class:`kdmarl_student.scenarios.ScenarioSpec`. The team's
    returns start empty: the exporter fills them after evaluating the staged bundle.
    """
    import datetime  # noqa: PLC0415  writers only

    masked = any("mask" in a.get("action", {}) for a in agents)
    return {
        "schema_version": MASK_SCHEMA_VERSION if masked else SCHEMA_VERSION,
        "format": "kdmarl-bundle",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "producer": dict(producer),
        "scenario": {"name": scenario.name, "mpe2_module": scenario.mpe2_module, "params": dict(scenario.params),
                     "max_cycles": scenario.max_cycles},
        "conventions": dict(CONVENTIONS if conventions is None else conventions),
        "agents": list(agents),
        "teacher": None if teacher is None else dict(teacher),
        "team": {"eval_seeds": [int(s) for s in (eval_seeds or [])], "teacher_return": None,
                 "student_return": None, "random_return": None, "retention": None},
    }


def dump_manifest(data: Mapping[str, Any], manifest_path: Path | str = MANIFEST_FILE) -> bytes:
    """Validate and serialize a manifest (stable key order, 2-space indent, trailing newline).

    Writers validate with the same code readers use, so an exporter can never ship a manifest its own
    runtime would refuse.
    """
    manifest_path = Path(manifest_path)
    validate_manifest_data(decode_manifest_json(json.dumps(data).encode("utf-8"), manifest_path), manifest_path)
    payload = (json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n").encode("utf-8")
    if len(payload) > MAX_MANIFEST_BYTES:
        raise BundleError(manifest_path, "", f"a manifest of at most {MAX_MANIFEST_BYTES} bytes (what a robot "
                          f"reads); this one has {len(payload)}")
    return payload
