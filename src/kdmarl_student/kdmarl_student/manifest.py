"""Load and validate a bundle manifest: the only contract between the offline and the on-board world.

A robot trusts nothing in a bundle until it has checked it, in this order:

1. ``manifest.json`` exists and is a JSON object;
2. its ``schema_version`` is one this runtime understands (checked before the schema, so an old runtime
   says "unknown schema_version" instead of a confusing schema error);
3. if a public key is configured, ``manifest.sig`` verifies over the exact bytes just read;
4. it validates against ``schema/manifest.schema.json`` (JSON Schema draft 2020-12);
5. cross-field rules the schema cannot express (slices inside the observation, the sensing profile fits
   the layout and gives ``input_dim``, action meanings match ``n_actions``, unique agent names);
6. per agent on demand: the model path stays inside the bundle and the file's sha256 matches.

Every failure is a :class:`~kdmarl_student.errors.BundleError` naming the file and the field.
Only numpy, jsonschema and cryptography (for signatures) are imported: this runs on robots. Both are imported
when first needed, not at import: jsonschema by the first validation (every load validates), cryptography
only when a signature is verified (docs/ARCHITECTURE.md, "memory").
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kdmarl_student.errors import BundleError
from kdmarl_student.metering import check_budget
from kdmarl_student.sensing import sensed_dim
from kdmarl_student.signing import MANIFEST_FILE, SIGNATURE_FILE, load_public_key, verify_bundle_signature

SCHEMA_VERSION = "1.0"
SUPPORTED_SCHEMA_VERSIONS: tuple[str, ...] = ("1.0",)
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "manifest.schema.json"

__all__ = [
    "MANIFEST_FILE",
    "SCHEMA_VERSION",
    "SIGNATURE_FILE",
    "AgentEntry",
    "Manifest",
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
    """Hex sha256 of a file, read in chunks (models can be large on bigger robots)."""
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
    raw: dict[str, Any] = field(repr=False)

    @property
    def field_prefix(self) -> str:
        return f"agents[{self.index}]"

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
            raw=dict(data),
        )


@dataclass(frozen=True)
class Manifest:
    """A validated manifest and where it came from. Model files are checked by :meth:`model_path`."""

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

    def model_path(self, entry: AgentEntry, verify_sha256: bool = True) -> Path:
        """Path of the agent's model, inside the bundle, existing, with the sha256 of the manifest."""
        field_name = f"{entry.field_prefix}.model.file"
        path = resolve_bundle_file(self.bundle_dir, entry.model_file, self.path, field_name)
        if not path.is_file():
            raise BundleError(path, "", f"the model file named by {MANIFEST_FILE} {field_name}; it is missing")
        if verify_sha256:
            actual = sha256_file(path)
            if actual != entry.model_sha256:
                raise BundleError(path, f"{entry.field_prefix}.model.sha256",
                                  f"sha256 {entry.model_sha256} as {MANIFEST_FILE} says; the file has {actual} "
                                  "(modified or corrupted model: refused)")
        return path

    def teacher_model_path(self, verify_sha256: bool = True) -> Path:
        """Path of the teacher actor shipped for comparison (``BundleError`` if the bundle has none)."""
        teacher = self.data.get("teacher")
        if not teacher:
            raise BundleError(self.path, "teacher", "a teacher actor entry; this bundle ships none")
        path = resolve_bundle_file(self.bundle_dir, teacher["file"], self.path, "teacher.file")
        if not path.is_file():
            raise BundleError(path, "", f"the teacher model named by {MANIFEST_FILE} teacher.file; it is missing")
        if verify_sha256 and sha256_file(path) != teacher["sha256"]:
            raise BundleError(path, "teacher.sha256", "the sha256 the manifest lists; the file differs")
        return path


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
        raise BundleError(manifest_path, _field_name(error.absolute_path) or "(root)", f"schema: {error.message}")
    names = [agent["name"] for agent in data["agents"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BundleError(manifest_path, "agents[].name", f"unique agent names; {duplicates} repeat")
    for index, agent in enumerate(data["agents"]):
        _check_agent(manifest_path, index, agent)


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
    try:
        payload = manifest_path.read_bytes()
    except FileNotFoundError as exc:
        raise BundleError(manifest_path, "", "a manifest; the file is missing (not a bundle, or an unfinished "
                          "export)") from exc
    except OSError as exc:
        raise BundleError(manifest_path, "", f"a readable manifest: {exc}") from exc
    signed_by = None
    if require_signature:
        signed_by = verify_bundle_signature(bundle_dir, load_public_key(public_key), payload=payload)
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(manifest_path, "", f"valid UTF-8 JSON: {exc}") from exc
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
    "normal confidence interval; retention = (R_student - R_random) / (R_teacher - R_random)",
}


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
) -> dict[str, Any]:
    """One ``agents[]`` entry of schema 1.0, with ``input_dim`` derived from the sensing profile and the
    budget status computed from the analytic figures (so writers cannot disagree with readers).

    The sensing profile is written with its slices spelled out (``"all"`` becomes the list of every slice)
    so a reader of the manifest sees what the agent observes without knowing the defaults.
    """
    layout = {k: [int(v[0]), int(v[1])] for k, v in layout.items()}
    profile = dict(sensing)
    if profile.get("slices", "all") in ("all", None):
        profile["slices"] = list(layout)
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
    return {
        "name": name,
        "role": role,
        "observation": {
            "source_dim": int(source_dim),
            "layout": layout,
            "sensing": profile,
            "input_dim": int(sensed_dim(layout, profile)),
            "dtype": "float32",
        },
        "action": {"n_actions": len(action_meanings), "meanings": list(action_meanings), "safe_action": safe_action},
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


def dump_manifest(data: Mapping[str, Any], manifest_path: Path | str = MANIFEST_FILE) -> bytes:
    """Validate and serialize a manifest (stable key order, 2-space indent, trailing newline).

    Writers validate with the same code readers use, so an exporter can never ship a manifest its own
    runtime would refuse.
    """
    validate_manifest_data(json.loads(json.dumps(data)), Path(manifest_path))
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8")
