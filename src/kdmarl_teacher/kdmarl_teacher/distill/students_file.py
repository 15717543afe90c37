"""`students.pt`, the distilled students of a run: the one module that writes, reads and versions it.

Written by `kdmarl distill` (every checkpoint and at the end), read by `kdmarl export` (the per-agent view
`student_agents`), `kdmarl report` (the hardware budgets) and the tests. Keeping the format constant, the
version check and the payload layout here means a new field or a version bump is one change, and no reader
can open a file of another version silently. The layout (docs/ARCHITECTURE.md, "Students file"):

    format "kdmarl_students", version 1
    scenario {"name", "params", "spec"}, team {"name", "source_file"}, teacher {"path", "sha256", ...}
    config   the resolved DistillConfig as a dict;  global_step
    agents   [{"name", "role", "obs_dim", "n_actions", "layout", "sensing", "input_dim", "hardware",
               "rung", "memory", "arch": the student's arch(), "resources", "state_dict"}, ...]
    (version 1 files written before issue 11 have no "memory" and MLP archs without "kind": read as MLPs)
    + extra keys of the writer (distill: "final", "role_centroids")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdmarl_teacher.core.run_files import load_checkpoint, spec_to_dict
from kdmarl_teacher.distill.profiles import TeamConfig
from kdmarl_teacher.distill.students import StudentGRU, StudentMLP, build_student, student_resources

Student = StudentMLP | StudentGRU

FILE_NAME = "students.pt"
FORMAT = "kdmarl_students"
VERSION = 1


def students_path(path: str | Path) -> Path:
    """A run directory -> its students.pt; a file path unchanged."""
    path = Path(path)
    return path / FILE_NAME if path.is_dir() else path


def students_payload(team: TeamConfig, students: list[Student], teacher_info: dict, config: dict,
                     *, step: int, extra: dict | None = None) -> dict:
    """The students.pt dict: every student with its profile, architecture and resources, and the teacher's hash
    (so export can refuse a teacher that changed since). Tensors are cloned to CPU."""
    agents = []
    for a, s in zip(team.agents, students, strict=True):
        agents.append({
            "name": a.name, "role": a.role, "obs_dim": a.obs_dim, "n_actions": a.n_actions,
            "layout": {k: list(v) for k, v in a.layout.items()}, "sensing": a.sensing, "input_dim": a.input_dim,
            "hardware": a.hardware, "rung": a.rung.to_dict(), "memory": a.memory, "arch": s.arch(),
            "resources": student_resources(s, a.layout, a.sensing).to_dict(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in s.state_dict().items()},
        })
    return {"format": FORMAT, "version": VERSION,
            "scenario": {"name": team.spec.name, "params": dict(team.spec.params), "spec": spec_to_dict(team.spec)},
            "team": {"name": team.name, "source_file": team.source_file},
            "teacher": teacher_info, "config": config, "global_step": step, "agents": agents,
            **(extra or {})}


def read_students_payload(path: str | Path, device: str = "cpu") -> dict:
    """students.pt (or a run directory holding one) -> its dict, refusing another format or version."""
    path = students_path(path)
    payload = load_checkpoint(path, device)  # a truncated file: InputFileError naming it
    if payload.get("format") != FORMAT or payload.get("version") != VERSION:
        raise ValueError(f"{path}: not a kdmarl students file v{VERSION} (format={payload.get('format')!r})")
    return payload


def load_students(path: str | Path, device: str = "cpu") -> tuple[list[Student], dict]:
    """Read students.pt -> (students in agent order, eval mode, the payload dict)."""
    payload = read_students_payload(path, device)
    students = []
    for a in payload["agents"]:
        s = build_student(a["arch"])
        s.load_state_dict(a["state_dict"])
        students.append(s.eval())
    return students, payload


@dataclass
class StudentAgent:
    """One agent's student as a deployer sees it: the module and what the bundle records about it."""

    name: str
    module: Student
    sensing: dict[str, Any]
    budget: dict[str, Any] | None  # the hardware profile it was sized for
    architecture: str  # e.g. "mlp[32, 32] tanh", "gru32 tanh"
    resources: dict[str, int]  # {params, flops_per_decision, memory_bytes}: what the manifest records


def _manifest_resources(module: Student, entry: Mapping[str, Any]) -> dict[str, int]:
    sensing = entry.get("sensing") or {"slices": "all"}
    res = student_resources(module, entry["layout"], sensing) if entry.get("layout") else module.resources()
    return {"params": res.params, "flops_per_decision": res.flops, "memory_bytes": res.memory_bytes}


def student_agents(path: str | Path) -> list[StudentAgent]:
    """The per-agent export view of students.pt (what `kdmarl export` turns into ONNX models)."""
    students, payload = load_students(path)
    out = []
    for entry, module in zip(payload["agents"], students, strict=True):
        arch: Mapping[str, Any] = entry["arch"]
        out.append(StudentAgent(
            name=entry["name"], module=module, sensing=dict(entry.get("sensing") or {"slices": "all"}),
            budget=dict(entry["hardware"]) if entry.get("hardware") else None,
            architecture=f"{module.label} {arch.get('activation', 'tanh')}",
            resources=_manifest_resources(module, entry),
        ))
    return out
