"""The measured collaboration profile (issue 25): perturbed evaluation, team block, envelope, schema 1.3.

Real mpe2, real ONNX Runtime, the trained bundle of kdmarl_bringup's test data (spread3) and the test helper's
random bundles; no mocks.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from kdmarl_student.bundle_eval import evaluate_bundle
from kdmarl_student.errors import BundleError
from kdmarl_student.manifest import dump_manifest, load_manifest, oldest_schema_version
from kdmarl_student.perturbation import Perturbation, default_grid
from kdmarl_student.policy import StudentPolicy
from kdmarl_student.team_profile import measure_envelope, measure_team, retention_interval
from kdmarl_student.testing import make_bundle

SPREAD3 = Path(__file__).resolve().parents[2] / "kdmarl_bringup" / "test" / "data" / "spread3"
SEEDS = list(range(1000, 1012))


def test_null_perturbations_change_nothing() -> None:
    base = evaluate_bundle(SPREAD3, SEEDS)
    for cell in (Perturbation("obs_noise", sigma=0.0), Perturbation("obs_drop", p=0.0),
                 Perturbation("action_delay", k=0)):
        assert np.array_equal(evaluate_bundle(SPREAD3, SEEDS, perturbation=cell).returns, base.returns), cell


def test_each_perturbation_changes_the_team_and_is_reproducible() -> None:
    base = evaluate_bundle(SPREAD3, SEEDS)
    for cell in default_grid(25)[1:]:
        first = evaluate_bundle(SPREAD3, SEEDS, perturbation=cell).returns
        assert not np.array_equal(first, base.returns), cell.label()
        assert np.array_equal(evaluate_bundle(SPREAD3, SEEDS, perturbation=cell).returns, first), cell.label()
    # the random baseline is never perturbed
    rand = evaluate_bundle(SPREAD3, SEEDS, actor="random").returns
    assert np.array_equal(evaluate_bundle(SPREAD3, SEEDS, actor="random",
                                          perturbation=Perturbation("action_delay", k=3)).returns, rand)


def test_action_delay_and_teammate_failures_apply_what_they_say() -> None:
    names = ["a", "b"]
    delay = Perturbation("action_delay", k=2)
    delay.reset(seed=4, names=names, safe={"a": 0, "b": 0})
    applied = [delay.actions({"a": t + 1, "b": t + 2}) for t in range(5)]
    assert applied[:2] == [{"a": 0, "b": 0}] * 2  # nothing has arrived yet: the safe action
    assert applied[2:] == [{"a": 1, "b": 2}, {"a": 2, "b": 3}, {"a": 3, "b": 4}]
    gone = Perturbation("teammate_gone", from_step=2)
    gone.reset(seed=5, names=names, safe={"a": 0, "b": 0})  # seed 5: victim names[5 % 2] = "b"
    applied = [gone.actions({"a": t + 1, "b": t + 1}) for t in range(5)]
    assert [a["b"] for a in applied] == [1, 2, 2, 2, 2] and [a["a"] for a in applied] == [1, 2, 3, 4, 5]
    frozen = Perturbation("teammate_frozen")
    frozen.reset(seed=4, names=names, safe={"a": 3, "b": 0})
    assert frozen.actions({"a": 1, "b": 1}) == {"a": 3, "b": 1}
    drop = Perturbation("obs_drop", p=1.0, answer="last")
    drop.reset(seed=0, names=names, safe={"a": 0, "b": 0})
    drop.actions({"a": 4, "b": 2})
    assert drop.observe("a", np.zeros(3)) is None and drop.dropped_action("a") == 4
    with pytest.raises(ValueError, match="kind"):
        Perturbation("wind")


def test_team_block_has_retention_interval_and_protocol(tmp_path: Path) -> None:
    team = measure_team(SPREAD3, SEEDS)
    assert team["retention_ci95"][0] < team["retention"] < team["retention_ci95"][1]
    assert team["protocol"]["episodes"] == len(SEEDS) and team["protocol"]["seeds"] == [SEEDS[0], SEEDS[-1]]
    data = copy.deepcopy(load_manifest(SPREAD3).data)
    data["team"] = team
    with pytest.raises(BundleError, match=r"team\.retention_ci95.*'1\.3'"):  # a 1.0 manifest cannot carry it
        dump_manifest(data)
    data["schema_version"] = oldest_schema_version(data)
    assert data["schema_version"] == "1.3"
    dump_manifest(data)
    assert retention_interval(np.ones(1), np.ones(1), np.zeros(1)) is None


def test_envelope_goes_into_a_1_3_manifest_that_loads(tmp_path: Path) -> None:
    bundle = tmp_path / "spread3"
    shutil.copytree(SPREAD3, bundle)
    grid = [Perturbation(), Perturbation("obs_noise", sigma=0.2), Perturbation("action_delay", k=3)]
    envelope = measure_envelope(bundle, SEEDS[:6], grid=grid)
    cells = envelope["cells"]
    assert [c["perturbation"]["kind"] for c in cells] == ["none", "obs_noise", "action_delay"]
    assert cells[0]["teacher_retention"] == pytest.approx(1.0) and envelope["protocol"]["complete"]
    assert cells[2]["student_retention"] < cells[0]["student_retention"]  # three periods of delay hurt
    data = copy.deepcopy(load_manifest(bundle).data)
    data["envelope"] = envelope
    data["schema_version"] = oldest_schema_version(data)
    (bundle / "manifest.json").write_bytes(dump_manifest(data))
    assert load_manifest(bundle).data["envelope"]["cells"][1]["perturbation"] == {"kind": "obs_noise", "sigma": 0.2}
    stopped = measure_envelope(bundle, SEEDS[:2], grid=grid, time_budget_s=0.0)
    assert len(stopped["cells"]) == 1 and not stopped["protocol"]["complete"]  # the time bound holds


@pytest.mark.parametrize(("communication", "message"), [
    ({"topology": "none", "listens_to": ["agent_1"]}, "empty for topology 'none'"),
    ({"topology": "listens", "listens_to": ["agent_7"]}, "teammates of this manifest"),
    ({"topology": "listens", "listens_to": ["agent_0"]}, "not itself"),
    ({"topology": "radio"}, "schema"),
])
def test_communication_is_checked(tmp_path: Path, communication: dict, message: str) -> None:
    bundle, _, _ = make_bundle(tmp_path / "b")
    data = json.loads((bundle / "manifest.json").read_text())
    assert data["schema_version"] in ("1.1", "1.2")  # helpers write no 1.3 field: older versions still written
    data["agents"][0]["communication"] = {"topology": "listens", "listens_to": ["agent_1", "agent_2"]}
    data["schema_version"] = oldest_schema_version(data)
    (bundle / "manifest.json").write_bytes(dump_manifest(data))  # a listening student is declarable
    with pytest.raises(BundleError, match=r"agents\[0\]\.communication\.topology.*delivers no messages"):
        StudentPolicy(bundle, "agent_0")  # ... and refused by a runtime that delivers no messages
    StudentPolicy(bundle, "agent_1")  # its teammates run
    data["agents"][0]["communication"] = communication
    with pytest.raises(BundleError, match=message) as info:
        dump_manifest(data)
    assert "agents[0].communication" in str(info.value)
