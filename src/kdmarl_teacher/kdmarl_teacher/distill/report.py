"""The parts of distill_report.json both recipes share: the team for a teacher, per-agent rows, win-rate fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdmarl_student.manifest import sha256_file

from kdmarl_teacher.algos.teacher import Teacher
from kdmarl_teacher.algos.teacher import teacher_path as resolve_teacher_path
from kdmarl_teacher.core.resources import module_resources
from kdmarl_teacher.distill.config import DistillConfig
from kdmarl_teacher.distill.profiles import TeamConfig, load_team
from kdmarl_teacher.distill.students import budget_violations, student_resources
from kdmarl_teacher.distill.team import Student


def team_for_teacher(cfg: DistillConfig, teacher: Teacher, teacher_path: str | Path | None,
                     team: TeamConfig | None) -> tuple[TeamConfig, Any, dict]:
    """The team (its ladder capped at the teacher actor's FLOPs; it must be for the teacher's scenario), the
    teacher actor's resources and the teacher record of students.pt / distill_report.json (path, sha256)."""
    teacher_actor_res = module_resources(teacher.actor)
    team = team or load_team(cfg.team, max_flops=teacher_actor_res.flops, memory=cfg.memory or None)
    spec = teacher.spec
    if team.spec.name != spec.name or team.spec.agent_names != spec.agent_names or team.spec.obs_dims != spec.obs_dims:
        raise ValueError(f"{team.source_file}: field 'scenario': team is for {team.spec.name} "
                         f"{list(team.spec.agent_names)}, the teacher for {spec.name} {list(spec.agent_names)}")
    if teacher_path is not None:
        teacher_path = resolve_teacher_path(teacher_path)
    teacher_info = {"path": str(Path(teacher_path).resolve()) if teacher_path else None,
                    "sha256": sha256_file(teacher_path) if teacher_path else None,
                    "actor_resources": teacher_actor_res.to_dict(), "global_step": teacher.global_step,
                    "algo": teacher.algo}
    return team, teacher_actor_res, teacher_info


def agent_rows(team: TeamConfig, students: list[Student], teacher_flops: int) -> list[dict[str, Any]]:
    """distill_report.json's per-agent entries: profiles, student size, resources, FLOPs reduction, budget."""
    rows = []
    for a, s in zip(team.agents, students, strict=True):
        res = student_resources(s, a.layout, a.sensing)
        rows.append({"name": a.name, "sensing": a.sensing, "input_dim": a.input_dim,
                     "hardware": a.hardware["name"], "memory": a.memory, "student": s.label,
                     "hidden": list(s.hidden), "ladder_rung": list(a.rung.hidden),
                     "ladder_label": a.rung.label, "ladder_margins": a.rung.margins,
                     "flops": res.flops, "params": res.params, "memory_bytes": res.memory_bytes,
                     "state_bytes": res.state_bytes,
                     "flops_reduction": teacher_flops / res.flops,
                     "fits_budget": not budget_violations(res, a.hardware)})
    return rows


def win_rate_fields(ev_teacher: dict[str, Any], ev_students: dict[str, Any]) -> dict[str, Any]:
    """SMAX: win-rate retention = student win rate / teacher win rate (issue 12; None if the teacher never wins);
    nothing for MPE (no wins)."""
    if "win_rate" not in ev_students:
        return {}
    t = ev_teacher["win_rate"]
    return {"win_rate_retention": ev_students["win_rate"] / t if t > 0 else None,
            "win_rate_definition": "fraction of evaluation battles won (greedy, masked actions); retention = "
                                   "student / teacher win rate on the same seeds"}
