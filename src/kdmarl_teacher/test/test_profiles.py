"""Team configs: shipped ones load; every kind of mistake is a ValueError naming file, agent and field."""

from pathlib import Path

import pytest
from kdmarl_teacher.profiles import TEAMS_DIR, load_team


@pytest.mark.parametrize("name", sorted(p.stem for p in TEAMS_DIR.glob("*.yaml")))
def test_shipped_teams_load(name: str) -> None:
    team = load_team(name)
    assert [a.name for a in team.agents] == list(team.spec.agent_names)
    assert all(a.rung.resources.flops <= a.hardware["max_flops"] for a in team.agents)
    assert len(team.summary_lines()) == len(team.agents)


def test_hetero_team_differs_per_agent() -> None:
    team = load_team("spread3_hetero")
    assert len({a.sensing["name"] for a in team.agents}) == 3
    assert len({a.hardware["name"] for a in team.agents}) == 3
    assert len({a.input_dim for a in team.agents}) >= 2


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "team.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("agents", "match"),
    [
        ("agent_0: {sensing: x-ray, hardware: jetson_nano}", r"agent agent_0: field 'sensing'.*x-ray"),
        ("agent_0: {sensing: {slices: [lidar]}, hardware: jetson_nano}", r"agent agent_0: field 'sensing'.*lidar"),
        ("agent_0: {sensing: full, hardware: toaster}", r"agent agent_0: field 'hardware'.*toaster"),
        ("agent_0: {sensing: full, hardware: {name: tiny, max_flops: 50}}", r"agent agent_0: field 'hardware'.*tiny"),
        ("agent_0: {sensing: full}", r"agent agent_0: field 'hardware' is missing"),
        ("agent_7: {sensing: full, hardware: jetson_nano}", r"agent_7"),
    ],
)
def test_bad_team_configs(tmp_path: Path, agents: str, match: str) -> None:
    others = "  agent_1: {sensing: full, hardware: jetson_nano}\n  agent_2: {sensing: full, hardware: jetson_nano}\n"
    text = f"scenario: simple_spread\nparams: {{N: 3}}\nagents:\n  {agents}\n{others}"
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=match) as err:
        load_team(path)
    assert str(path) in str(err.value)


def test_bad_scenario(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="field 'scenario'"):
        load_team(_write(tmp_path, "scenario: simple_soccer\nagents: {}\n"))
    with pytest.raises(ValueError, match="unknown team config"):
        load_team("no_such_team")
