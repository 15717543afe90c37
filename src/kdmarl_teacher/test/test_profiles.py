"""Team configs: shipped ones load; every kind of mistake is a ValueError naming file, agent and field."""

from pathlib import Path

import pytest
from kdmarl_student.sensing import history_dim, sensed_dim
from kdmarl_teacher.distill.profiles import TEAMS_DIR, load_team
from kdmarl_teacher.distill.students import GRU_LADDER, LADDER, budget_violations, rung_resources


@pytest.mark.parametrize("name", sorted(p.stem for p in TEAMS_DIR.glob("*.yaml")))
def test_shipped_teams_load(name: str) -> None:
    """Every shipped team loads, and each agent gets the LARGEST ladder rung its hardware budget allows: the rung
    fits, and every rung with more FLOPs (by the same resource count the exporter records) does not."""
    team = load_team(name)
    for a in team.agents:
        assert not budget_violations(a.rung.resources, a.hardware), a.name
        state = history_dim(a.layout, a.sensing)
        ladder = GRU_LADDER if a.rung.gru_hidden else [(h, 0) for h in LADDER]  # the picked kind's ladder
        costs = [rung_resources(a.input_dim, a.n_actions, h, g, state_values=state) for h, g in ladder]
        larger = [res for res in costs if res.flops > a.rung.resources.flops]
        assert all(budget_violations(res, a.hardware) for res in larger), a.name
        assert a.input_dim == sensed_dim(a.layout, a.sensing)
    for line, a in zip(team.summary_lines(), team.agents, strict=True):
        assert line.startswith(f"{a.name}: sensing={a.sensing['name']} ({a.input_dim} inputs) "
                               f"hardware={a.hardware['name']} memory={a.memory} -> {a.rung.label}: ")


def test_hetero_team_differs_per_agent() -> None:
    """spread3_hetero as its YAML documents it: three sensing profiles, three boards, students sized by board,
    history features where its memory preference [history, none] applies, and none on the microcontroller agent
    (its own `memory: none`: there history would cost the student its second layer)."""
    team = load_team("spread3_hetero")
    assert [a.sensing["name"] for a in team.agents] == ["full", "no_velocity", "nearest2_landmarks"]
    assert [a.hardware["name"] for a in team.agents] == ["jetson_orin", "jetson_nano", "mcu_cortex_m4"]
    assert [a.memory for a in team.agents] == ["history", "history", "none"]
    assert team.agents[2].rung.label == "mlp[16, 16]"
    assert load_team("spread3_hetero", memory="history").agents[2].rung.label == "mlp[16]"
    # 2 velocity inputs, 2 of 6 landmark inputs dropped; history doubles the sliced inputs except "nearest" slots
    assert [a.input_dim for a in load_team("spread3_hetero", memory="none").agents] == [18, 16, 16]
    assert [a.input_dim for a in team.agents][:2] == [36, 32]
    flops = [a.rung.resources.flops for a in team.agents]
    assert flops == sorted(flops, reverse=True) and flops[0] > flops[2]  # the larger board gets the larger student


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
