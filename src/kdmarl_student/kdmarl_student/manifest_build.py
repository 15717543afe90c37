"""Writing manifests: the one builder for every writer (``kdmarl export``, the test and demo bundles).

Fields and their defaults are decided here, and :func:`dump_manifest` validates with the reader's own rules
(:func:`kdmarl_student.manifest_rules.validate_manifest_data`) before it serializes, so a writer can never produce a
manifest a robot refuses. Re-exported by :mod:`kdmarl_student.manifest` (the import path writers have always used).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdmarl_student.budget import check_budget
from kdmarl_student.bundle_files import MAX_MANIFEST_BYTES
from kdmarl_student.errors import BundleError
from kdmarl_student.manifest_json import decode_manifest_json
from kdmarl_student.manifest_rules import (
    INITIAL_STATES,
    MEMORY_KINDS,
    RESET_EVENTS,
    STATE_BYTES_PER_VALUE,
    oldest_schema_version,
    validate_manifest_data,
)
from kdmarl_student.sensing import history_dim, sensed_dim, sensed_slices
from kdmarl_student.signing import MANIFEST_FILE


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks: for writers (export) hashing files they just wrote. The runtime
    never hashes a path: it hashes the bytes it read and then loads (:meth:`Manifest.read_model`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


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
    communication: Mapping[str, Any] | None = None,
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

    ``communication`` (schema 1.3): ``{"topology": "none"}`` for a student acting on its own observation only
    (every student today); ``None`` leaves it out (a reader takes an absent entry as ``none``).
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
    if communication is not None:
        entry["communication"] = dict(communication)
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
    """The top level of a manifest (the oldest schema version that holds it) around its ``agents[]`` entries
    (:func:`build_agent_entry`).

    The one builder for every writer (``kdmarl export``, the test and demo bundles), so the fields and their
    defaults are decided here; ``scenario`` is a :class:`kdmarl_student.scenarios.ScenarioSpec`. The team's
    returns start empty: the exporter fills them after evaluating the staged bundle.
    """
    import datetime  # noqa: PLC0415  writers only

    manifest = {
        "schema_version": "",
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
    manifest["schema_version"] = oldest_schema_version(manifest)  # again after adding 1.3 fields (writers do)
    return manifest


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


__all__ = ["CONVENTIONS", "action_mask_fields", "build_agent_entry", "build_manifest", "build_memory_entry",
           "dump_manifest", "sha256_file"]
