"""Composition of a team from students of different bundles (issue 25): real bundles, real mpe2 and ONNX Runtime.

Each incompatibility is a real second bundle (built by the test helper with another scenario parameter,
another memory, or its manifest rewritten through the writers' own validation) and must be refused with the
field named.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kdmarl_student.bundle_eval import evaluate_bundle
from kdmarl_student.compose import CompositionError, compose_bundle, parse_agent_option
from kdmarl_student.manifest import dump_manifest, load_manifest, oldest_schema_version
from kdmarl_student.signing import generate_keypair, load_private_key, load_public_key
from kdmarl_student.testing import make_bundle

SPREAD3 = Path(__file__).resolve().parents[2] / "kdmarl_bringup" / "test" / "data" / "spread3"
SMALL = {"agent_2": {"slices": ["self_vel", "self_pos", "landmarks"]}}  # a student that sees less


def _bundle(path: Path, seed: int, **kwargs: Any) -> Path:
    return make_bundle(path, seed=seed, eval_seeds=[1000, 1001], **kwargs)[0]


def _edited(path: Path, seed: int, edit: Callable[[dict], None]) -> Path:
    bundle = _bundle(path, seed)
    data = json.loads((bundle / "manifest.json").read_text())
    edit(data)
    data["schema_version"] = oldest_schema_version(data)
    (bundle / "manifest.json").write_bytes(dump_manifest(data))  # still a valid bundle on its own
    return bundle


def _swap_layout(data: dict) -> None:
    layout = data["agents"][2]["observation"]["layout"]
    layout["self_vel"], layout["self_pos"] = layout["self_pos"], layout["self_vel"]


def _reorder_actions(data: dict) -> None:
    meanings = data["agents"][2]["action"]["meanings"]
    meanings[1], meanings[2] = meanings[2], meanings[1]


def _listens(data: dict) -> None:
    data["agents"][2]["communication"] = {"topology": "listens", "listens_to": ["agent_0"]}


INCOMPATIBLE: dict[str, Callable[[Path], Path]] = {
    "scenario.params.local_ratio": lambda p: _bundle(p, 5, local_ratio=0.25),
    "scenario.params.max_cycles": lambda p: _bundle(p, 5, max_cycles=40),
    "conventions.flops": lambda p: _edited(p, 5, lambda d: d["conventions"].update(flops="MACs, not FLOPs")),
    "role": lambda p: _edited(p, 5, lambda d: d["agents"][2].update(role="scout")),
    "observation.layout": lambda p: _edited(p, 5, _swap_layout),
    "action.meanings": lambda p: _edited(p, 5, _reorder_actions),
    "control_rate_hz": lambda p: _edited(p, 5, lambda d: d["agents"][2].update(control_rate_hz=50.0)),
    "memory.kind": lambda p: _bundle(p, 5, recurrent={"agent_2": 4}),
    "communication.topology": lambda p: _edited(p, 5, _listens),
}


@pytest.mark.parametrize("field", list(INCOMPATIBLE))
def test_incompatible_part_is_refused_with_the_field_named(tmp_path: Path, field: str) -> None:
    base = _bundle(tmp_path / "a", 3)
    other = INCOMPATIBLE[field](tmp_path / "b")
    load_manifest(other)  # each part is a valid bundle: only the composition is wrong
    agents = [f"agent_0={base}", f"agent_1={base}", f"agent_2={other}"]
    with pytest.raises(CompositionError) as info:
        compose_bundle(agents, tmp_path / "c", eval_episodes=0)
    assert info.value.field == field and f"agents[agent_2].{field}" in str(info.value)
    assert not (tmp_path / "c").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".c.")]


def test_trained_and_helper_bundles_disagree_on_control_rate(tmp_path: Path) -> None:
    other = _bundle(tmp_path / "b", 5)
    with pytest.raises(CompositionError, match=r"agents\[agent_2\]\.control_rate_hz: 100\.0"):
        compose_bundle([f"agent_0={SPREAD3}", f"agent_1={SPREAD3}", f"agent_2={other}"], tmp_path / "c")


def test_memory_change_is_accepted_on_request_and_slots_must_cover_the_team(tmp_path: Path) -> None:
    base, other = _bundle(tmp_path / "a", 3), _bundle(tmp_path / "b", 5, recurrent={"agent_2": 4})
    out = compose_bundle([f"agent_0={base}", f"agent_1={base}", f"agent_2={other}"], tmp_path / "c",
                         allow_memory_change=True, eval_episodes=0)
    assert load_manifest(out).agent("agent_2").memory_kind == "recurrent"
    with pytest.raises(CompositionError, match="exactly one part per agent"):
        compose_bundle([f"agent_0={base}", f"agent_1={base}"], tmp_path / "d", eval_episodes=0)


def test_mixed_team_is_composed_signed_and_measured(tmp_path: Path) -> None:
    a, b = _bundle(tmp_path / "a", 3), _bundle(tmp_path / "b", 5, sensing=SMALL)
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    seeds = list(range(1000, 1008))
    out = compose_bundle([f"agent_0={a}", f"agent_1={b}:agent_1", f"agent_2={b}"], tmp_path / "mixed",
                         private_key=load_private_key(tmp_path / "k.key"), eval_episodes=len(seeds),
                         envelope_episodes=2)
    manifest = load_manifest(out, public_key=load_public_key(tmp_path / "k.pub"))  # signed, verified
    data = manifest.data
    assert data["schema_version"] == "1.3" and data["producer"]["students"] == "composed"
    assert [p["bundle"] for p in data["producer"]["composed_from"]] == [str(a), str(b), str(b)]
    assert manifest.agent("agent_2").input_dim == 10  # the small student kept its sensing
    for name, source in (("agent_0", a), ("agent_1", b), ("agent_2", b)):  # the models are the parts' bytes
        assert (out / f"{name}.onnx").read_bytes() == (source / f"{name}.onnx").read_bytes()
    # the team results are the composed team's: agent by agent, the composed returns are a new team's
    offline = evaluate_bundle(out, seeds)
    assert data["team"]["student_return"]["mean"] == pytest.approx(offline.returns.mean(), abs=1e-6)
    assert not np.array_equal(offline.returns, evaluate_bundle(a, seeds).returns)
    assert not np.array_equal(offline.returns, evaluate_bundle(b, seeds).returns)
    assert data["envelope"]["protocol"]["episodes"] == 2 and data["envelope"]["cells"][0]["perturbation"] == {
        "kind": "none"}


def test_agent_option_parsing() -> None:
    assert parse_agent_option("agent_0=bundles/a") == ("agent_0", Path("bundles/a"), "agent_0")
    assert parse_agent_option("agent_0=bundles/a:agent_2") == ("agent_0", Path("bundles/a"), "agent_2")
    with pytest.raises(ValueError, match="AGENT=BUNDLE"):
        parse_agent_option("bundles/a")
