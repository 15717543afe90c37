"""The fleet YAML's ``updates`` section (issue 23): one updater per robot namespace, the lead mirroring and
serving, followers pointed at it, every student on its release store; a bad section is refused naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kdmarl_bringup.swarm_spec import build
from kdmarl_bringup.testing import make_bundle

UPDATES = {"state_dir": "/tmp/kdmarl/{robot}", "repository_url": "http://ws:8000", "team": "spread",
           "trusted_root": "/etc/kdmarl/1.root.json", "bundle_public_key": "/etc/kdmarl/team.pub", "lead": "r1",
           "serve_port": 8101, "poll_period_s": 5.0, "max_flops": 12800}
ROBOTS = [{"name": f"r{i + 1}", "agent": f"agent_{i}"} for i in range(3)]


def _fleet(tmp_path: Path, **updates: object) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"robots": ROBOTS, "updates": {**UPDATES, **updates}}))
    return path


def test_updates_section_adds_one_updater_per_robot_and_students_run_from_the_store(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    _, specs, _ = build({"bundle": str(bundle), "fleet": str(_fleet(tmp_path))})
    updaters = {s.namespace: s.parameters for s in specs if s.role == "updater"}
    students = {s.namespace: s.parameters for s in specs if s.role == "student"}
    assert sorted(updaters) == sorted(students) == ["r1", "r2", "r3"]
    assert updaters["r1"]["repository_url"] == "http://ws:8000" and updaters["r1"]["mirror"] is True
    assert updaters["r1"]["serve_port"] == 8101 and updaters["r1"]["max_flops"] == 12800.0
    for robot in ("r2", "r3"):
        assert updaters[robot]["repository_url"] == "http://127.0.0.1:8101" and updaters[robot]["serve_port"] == 0
    for robot, params in students.items():
        assert params["release_state_dir"] == updaters[robot]["state_dir"] == f"/tmp/kdmarl/{robot}"
        assert params["release_team"] == "spread" and params["require_signature"] is True
    order = [(s.role, s.namespace) for s in specs]
    assert all(order.index(("updater", r)) < order.index(("student", r)) for r in students)
    # Without the section: no updater, students on the bundle.
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"robots": ROBOTS}))
    _, specs, _ = build({"bundle": str(bundle), "fleet": str(plain)})
    assert not [s for s in specs if s.role == "updater"]
    assert not any("release_state_dir" in s.parameters for s in specs if s.role == "student")


@pytest.mark.parametrize(("updates", "match"), [
    ({"lead": "r9"}, "updates.lead 'r9' is not a robot"),
    ({"trusted_root": ""}, r"updates needs \['trusted_root'\]"),
    ({"serve_port": -1}, "updates.serve_port must be a number"),
    ({"polling": 3}, r"unknown field\(s\) \['polling'\]"),
])
def test_a_bad_updates_section_is_refused_naming_the_field(tmp_path: Path, updates: dict, match: str) -> None:
    bundle = make_bundle(tmp_path / "b")
    with pytest.raises(ValueError, match=match):
        build({"bundle": str(bundle), "fleet": str(_fleet(tmp_path, **updates))})
