"""The fleet YAML's opt-in ``updates`` section (issue 23, docs/fleet_updates.md): one ``updater_node`` per robot
namespace, and every student running from its updater's release store.

.. code-block:: yaml

    updates:
      state_dir: /var/lib/kdmarl            # "{robot}" is replaced by the robot's name (several robots, one host)
      repository_url: http://workstation:8000   # the lead's source: the workstation's TUF repository
      team: spread                          # kdmarl publish --team (default there: the scenario name)
      trusted_root: /etc/kdmarl/1.root.json
      bundle_public_key: /etc/kdmarl/team.pub
      lead: robot1                          # mirrors the repository and serves it on serve_port
      serve_port: 8001
      lead_url: http://robot1:8001          # the followers' source (default http://127.0.0.1:<serve_port>)
      poll_period_s: 30.0                   # besides /kdmarl/release announcements (0: announcements only)
      max_flops: 12800                      # this device's budget (the hardware profile's figures); optional
      max_params: 20000
      max_memory_bytes: 262144

Every student then gets ``release_state_dir`` (its robot's ``state_dir``), ``release_team``, ``public_key`` =
``bundle_public_key`` and ``require_signature``; its ``bundle`` parameter is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REQUIRED = ("state_dir", "repository_url", "team", "trusted_root", "bundle_public_key", "lead")
OPTIONAL = {"serve_port": 8001, "lead_url": "", "poll_period_s": 30.0, "max_flops": 0.0, "max_params": 0.0,
            "max_memory_bytes": 0.0}


def load_updates(path: str | Path, robots: list[str]) -> dict[str, Any] | None:
    """The ``updates`` section of a fleet YAML (None without one), checked: fields, types, the lead a robot."""
    data = yaml.safe_load(Path(path).read_text())
    section = data.get("updates") if isinstance(data, dict) else None
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ValueError(f"{path}: field 'updates' must be a mapping")
    unknown = sorted(set(section) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ValueError(f"{path}: updates has unknown field(s) {unknown}; expected {[*REQUIRED, *OPTIONAL]}")
    missing = [k for k in REQUIRED if not str(section.get(k) or "")]
    if missing:
        raise ValueError(f"{path}: updates needs {missing} (see docs/fleet_updates.md)")
    if section["lead"] not in robots:
        raise ValueError(f"{path}: updates.lead {section['lead']!r} is not a robot of the fleet ({robots})")
    out = {**OPTIONAL, **section}
    for key in ("serve_port", "poll_period_s", "max_flops", "max_params", "max_memory_bytes"):
        if isinstance(out[key], bool) or not isinstance(out[key], int | float) or out[key] < 0:
            raise ValueError(f"{path}: updates.{key} must be a number >= 0, got {out[key]!r}")
    return out


def with_updaters(specs: list[Any], updates: dict[str, Any] | None, spec_type: Any) -> list[Any]:
    """``specs`` with an ``updater_node`` before every student (same namespace) and the students on their release
    store; unchanged without ``updates``."""
    if updates is None:
        return specs
    out = []
    follower_url = updates["lead_url"] or f"http://127.0.0.1:{int(updates['serve_port'])}"
    for spec in specs:
        if spec.role == "student":
            robot = spec.namespace
            state = str(updates["state_dir"]).replace("{robot}", robot)
            lead = robot == updates["lead"]
            out.append(spec_type(
                "kdmarl_student", "updater_node", "kdmarl_student.updater_node", "updater", robot,
                {"state_dir": state, "team": str(updates["team"]), "agent": spec.parameters["agent"],
                 "repository_url": str(updates["repository_url"]) if lead else follower_url,
                 "trusted_root": str(updates["trusted_root"]), "bundle_public_key": str(updates["bundle_public_key"]),
                 "mirror": lead, "serve_port": int(updates["serve_port"]) if lead else 0,
                 "poll_period_s": float(updates["poll_period_s"]),
                 **{k: float(updates[k]) for k in ("max_flops", "max_params", "max_memory_bytes")}},
                role="updater"))
            spec.parameters.update({"release_state_dir": state, "release_team": str(updates["team"]),
                                    "public_key": str(updates["bundle_public_key"]), "require_signature": True})
        out.append(spec)
    return out


__all__ = ["load_updates", "with_updaters"]
