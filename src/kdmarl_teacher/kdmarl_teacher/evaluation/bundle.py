"""`kdmarl evaluate --bundle bundles/NAME`: a deployable bundle evaluated alone.

Its teacher actor, its students and uniformly random actions, each through ONNX Runtime on the real mpe2 env
(`kdmarl_student.bundle_eval.evaluate_bundle`, the code path the ROS sim bridge reproduces), with retention and
the FLOPs of every agent. Needs nothing but the bundle: no checkpoint, no torch network. The statistics are the
teacher evaluation's (`kdmarl_student.stats.mean_ci`), so the two tables `kdmarl evaluate` prints compare figure
for figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdmarl_student.bundle_eval import evaluate_bundle, retention
from kdmarl_student.manifest import load_manifest
from kdmarl_student.stats import mean_ci


def bundle_seeding(scenario: str) -> str:
    """What seed s means for the bundle evaluation of ``scenario`` (the report's ``seeding`` field)."""
    if scenario.startswith("smax:"):
        return ("SMAX battle s = JaxMARL reset from PRNGKey(s) (SmaxBattle); ONNX Runtime, 1 thread, greedy actions "
                "among the available ones")
    if scenario.startswith("grf:"):
        return "GRF episode s = engine seed s (GrfGame); ONNX Runtime, 1 thread, greedy actions"
    return "mpe2 reset(seed=s) per episode; ONNX Runtime, 1 thread, greedy actions"


def evaluate_bundle_report(bundle: str | Path, episodes: int = 200, seed_start: int = 1000) -> dict[str, Any]:
    """Teacher actor, students and random from the bundle alone, on fixed seeds; a JSON-ready dict.

    Retention = (R_student - R_random) / (R_teacher - R_random) on the same seeds (DESIGN.md §5); FLOPs
    reduction per agent = the teacher actor's FLOPs per decision / the student's.
    """
    manifest = load_manifest(bundle)
    seeds = list(range(seed_start, seed_start + episodes))
    results: dict[str, Any] = {}
    for label, actor in (("teacher (ONNX)", "teacher"), ("students (ONNX)", "student"), ("random", "random")):
        ev = evaluate_bundle(bundle, seeds, actor=actor)
        results[label] = {
            "team_return": mean_ci(ev.returns),
            "agent_returns": {name: float(ev.agent_returns[:, i].mean()) for i, name in enumerate(ev.agents)},
            "metrics": {k: mean_ci(v) for k, v in ev.metrics.items()},
            "episode_team_returns": [round(float(r), 6) for r in ev.returns],
        }
        if "won" in ev.metrics:  # SMAX: win rate with its 95 % interval, as `kdmarl evaluate` reports it
            results[label]["win_rate"] = mean_ci(ev.metrics["won"])
    mean = {k: r["team_return"]["mean"] for k, r in results.items()}
    teacher_flops = (manifest.data.get("teacher") or {}).get("resources", {}).get("flops_per_decision")
    agents = []
    for entry in manifest.agents:
        flops = entry.resources["flops_per_decision"]
        agents.append({
            "agent": entry.name, "input_dim": entry.input_dim, "architecture": entry.raw["model"].get("architecture"),
            "params": entry.resources["params"], "flops": flops,
            "flops_reduction": teacher_flops / flops if teacher_flops and flops else None,
            "budget": entry.budget.get("profile"), "budget_met": entry.budget.get("met"),
        })
    return {
        "bundle": str(bundle),
        "scenario": manifest.scenario,
        "episodes": episodes,
        "seeds": [seeds[0], seeds[-1]],
        "seeding": bundle_seeding(manifest.scenario["name"]),
        "team_return_definition": "per episode, mean over agents of each agent's summed reward (DESIGN.md §5)",
        "results": results,
        "retention": retention(mean["students (ONNX)"], mean["teacher (ONNX)"], mean["random"]),
        "teacher_flops": teacher_flops,
        "agents": agents,
    }


