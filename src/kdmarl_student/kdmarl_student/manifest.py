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

Every failure is a :class:`~kdmarl_student.errors.BundleError` naming the file and the field. The strict JSON rules
live in :mod:`kdmarl_student.manifest_json`, the validation in :mod:`kdmarl_student.manifest_rules` and the writers in
:mod:`kdmarl_student.manifest_build`; this module reads (and re-exports their public names, the import path every
caller uses). Step 6 also checks the graph: only the exporter's operators, float32 outputs of fixed width
(:mod:`kdmarl_student.onnx_graph`).
Only numpy, jsonschema and cryptography (for signatures) are imported: this runs on robots. Both are imported
when first needed, not at import: jsonschema by the first validation (every load validates), cryptography
only when a signature is verified (docs/ARCHITECTURE.md, "memory").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kdmarl_student.bundle_files import MAX_MODEL_BYTES, read_bundle_file
from kdmarl_student.errors import BundleError
from kdmarl_student.manifest_build import (
    CONVENTIONS,
    action_mask_fields,
    build_agent_entry,
    build_manifest,
    build_memory_entry,
    dump_manifest,
    sha256_file,
)
from kdmarl_student.manifest_json import MAX_INT_DIGITS, MAX_JSON_DEPTH, decode_manifest_json
from kdmarl_student.manifest_rules import (
    INITIAL_STATES,
    MASK_SCHEMA_VERSION,
    MEMORY_KINDS,
    PROFILE_SCHEMA_VERSION,
    RESET_EVENTS,
    SCHEMA_PATH,
    SCHEMA_VERSION,
    STATE_BYTES_PER_VALUE,
    SUPPORTED_SCHEMA_VERSIONS,
    check_team,
    manifest_schema,
    oldest_schema_version,
    validate_manifest_data,
)
from kdmarl_student.onnx_graph import check_graph
from kdmarl_student.onnx_wire import refuse_external_data
from kdmarl_student.signing import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    load_public_key,
    read_manifest_bytes,
    verify_bundle_signature,
)

__all__ = [
    "CONVENTIONS",
    "INITIAL_STATES",
    "MANIFEST_FILE",
    "MASK_SCHEMA_VERSION",
    "MAX_INT_DIGITS",
    "MAX_JSON_DEPTH",
    "MEMORY_KINDS",
    "PROFILE_SCHEMA_VERSION",
    "RESET_EVENTS",
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "SIGNATURE_FILE",
    "STATE_BYTES_PER_VALUE",
    "SUPPORTED_SCHEMA_VERSIONS",
    "AgentEntry",
    "Manifest",
    "ModelFile",
    "action_mask_fields",
    "build_agent_entry",
    "build_manifest",
    "build_memory_entry",
    "check_team",
    "decode_manifest_json",
    "dump_manifest",
    "load_manifest",
    "manifest_schema",
    "oldest_schema_version",
    "resolve_bundle_file",
    "sha256_file",
    "validate_manifest_data",
]


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
    def communication(self) -> dict[str, Any]:
        """Schema 1.3 ``communication``; an absent entry (older manifests) is ``{"topology": "none"}``."""
        return dict(self.raw.get("communication") or {"topology": "none"})

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
