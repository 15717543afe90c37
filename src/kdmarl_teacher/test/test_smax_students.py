"""SMAX students (issue 12): sensing profiles and team configs per unit type, masked distillation, export with the
action mask in the manifest, the runtime's mask and `kdmarl evaluate --bundle` on a tiny SMAX bundle."""

from __future__ import annotations

import pytest

pytest.importorskip("jaxmarl")

from kdmarl_student.scenarios import scenario_spec
from kdmarl_teacher.profiles import load_team, resolve_sensing


# ---- sensing and hardware profiles ----------------------------------------------------------------------------
def test_smax_sensing_profiles_drop_whole_slices() -> None:
    layout = scenario_spec("smax:2s3z").agents[0].layout  # allies 52, enemies 65, own 4, unit_type 6
    assert resolve_sensing("no_allies", layout)["slices"] == ["enemies", "own", "unit_type"]
    assert resolve_sensing("no_unit_type", layout)["slices"] == ["allies", "enemies", "own"]
    assert resolve_sensing("enemies_and_own", layout)["slices"] == ["enemies", "own"]
    with pytest.raises(ValueError, match="not 2-D positions"):  # 3m's allies slice (26) would split into 2-D pairs
        resolve_sensing({"nearest": {"allies": 1}}, scenario_spec("smax:3m").agents[0].layout)
    mpe = scenario_spec("simple_spread", N=3).agents[0].layout  # "exclude" profiles work across scenarios
    assert resolve_sensing("enemies_and_own", mpe)["slices"] == list(mpe)


def test_smax_teams_load() -> None:
    small = load_team("smax_3m")
    assert [a.role for a in small.agents] == ["marine"] * 3
    assert {a.hardware["name"] for a in small.agents} == {"jetson_nano"} and {a.input_dim for a in small.agents} == {75}
    hetero = load_team("smax_2s3z")
    assert [a.role for a in hetero.agents] == ["stalker"] * 2 + ["zealot"] * 3
    assert [a.hardware["name"] for a in hetero.agents] == ["jetson_orin"] * 2 + ["mcu_cortex_m4"] * 3
    assert [a.input_dim for a in hetero.agents] == [127, 127, 69, 69, 69]  # zealots: 65 enemy + 4 own features
    assert hetero.agents[0].rung.resources.flops > 50 * hetero.agents[2].rung.resources.flops
    assert all(a.rung.resources.flops <= 1280 for a in hetero.agents[2:])
    capped = load_team("smax_2s3z", max_flops=60_000)  # distill caps the ladder at the teacher actor's FLOPs
    assert all(a.rung.resources.flops <= 60_000 for a in capped.agents)
