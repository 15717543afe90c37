"""Is the live swarm inside the conditions its bundle was measured under? (issue 25; ROS-free, used by the monitor)

The manifest's ``envelope`` (schema 1.3, :mod:`kdmarl_student.team_profile`) says how retention falls with
action delay, dropped observations and a missing teammate. The monitor hands this watch what it sees live per
agent (from the student nodes' ``/diagnostics`` values and the episode summaries) and gets back a verdict for
its own ``/diagnostics`` status:

- **delay**: observation delay (stamp to receipt) plus the decision latency p99, in control periods of the
  agent (``1 / control_rate_hz``), is compared with the action delays the envelope measured (a decision acting
  on an observation k periods old is, to the team, an action k periods late);
- **drops**: the share of observations lost (realtime: ``stale_observations / actions``; lockstep: the bridge's
  missed actions per step) is compared with the ``obs_drop`` cells answered with the safe action (what the node
  sends);
- **peers missing**: agents of the manifest that never reported (after a grace period) or went STALE are
  compared with the ``teammate_gone`` cell (one teammate).

A condition beyond the strongest measured cell is *outside the envelope*; one inside it whose interpolated
retention (students) is below ``min_retention`` is *inside but degraded*. Either gives WARN, naming the agent,
the condition, the measured range and the figure (``BUNDLE/<envelope.figure>``, drawn by ``kdmarl envelope``).
A bundle without an envelope gives no verdict (the monitor says so once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

OK, WARN = 0, 1


@dataclass
class LiveAgent:
    """What the monitor saw last of one agent's node; ``None`` fields were not reported."""

    delay_ms: float | None = None
    latency_p99_ms: float | None = None
    drop_rate: float | None = None
    present: bool = True


def _curve(cells: list[dict[str, Any]], kind: str, param: str, match: Mapping[str, Any] | None = None) \
        -> list[tuple[float, float]]:
    """(strength, student retention) along one perturbation family, the unperturbed cell at 0."""
    points = []
    for cell in cells:
        pert, value = cell["perturbation"], cell.get("student_retention")
        if value is None:
            continue
        if pert["kind"] == "none":
            points.append((0.0, float(value)))
        elif pert["kind"] == kind and all(pert.get(k) == v for k, v in (match or {}).items()):
            points.append((float(pert[param]), float(value)))
    return sorted(points)


class EnvelopeWatch:
    """Verdicts of live conditions against one bundle's envelope (see the module docstring)."""

    def __init__(self, manifest: Mapping[str, Any], bundle_dir: str | Path, min_retention: float = 0.8) -> None:
        self.envelope = manifest.get("envelope") or None
        self.periods_ms = {a["name"]: 1000.0 / float(a["control_rate_hz"]) for a in manifest["agents"]}
        self.agents = list(self.periods_ms)
        self.min_retention = float(min_retention)
        cells = list((self.envelope or {}).get("cells") or [])
        self.delay = _curve(cells, "action_delay", "k")
        self.drop = _curve(cells, "obs_drop", "p", {"answer": "safe"})
        gone = [c.get("student_retention") for c in cells if c["perturbation"]["kind"] == "teammate_gone"]
        self.gone_retention = gone[0] if gone else None
        figure = (self.envelope or {}).get("figure") or "envelope.png"
        self.figure = str(Path(bundle_dir) / figure)

    @property
    def active(self) -> bool:
        return self.envelope is not None

    def _against(self, curve: list[tuple[float, float]], value: float, what: str, unit: str) -> str | None:
        """A problem sentence when ``value`` is outside the measured curve or its retention is too low."""
        if len(curve) < 2:
            return f"{what} {value:.3g} {unit}: not measured by the envelope"
        xs, ys = [p[0] for p in curve], [p[1] for p in curve]
        if value > xs[-1] + 1e-9:
            return f"{what} {value:.3g} {unit} > the {xs[-1]:g} measured (outside the envelope)"
        predicted = float(np.interp(value, xs, ys))
        if predicted < self.min_retention:
            return (f"{what} {value:.3g} {unit}: the envelope predicts retention {predicted:.2f} < "
                    f"{self.min_retention:g}")
        return None

    def check(self, live: Mapping[str, LiveAgent | None]) -> tuple[int, str, dict[str, Any]]:
        """(level, message, values) for the monitor's status; ``live`` maps agent -> figures (None: not heard)."""
        if not self.active:
            return OK, "no envelope in the bundle (schema 1.3 'envelope'): nothing to compare", {}
        problems: list[str] = []
        values: dict[str, Any] = {"figure": self.figure, "min_retention": self.min_retention,
                                  "measured_max_delay_periods": self.delay[-1][0] if self.delay else None,
                                  "measured_max_drop_rate": self.drop[-1][0] if self.drop else None}
        missing = [a for a in self.agents if live.get(a) is None or not live[a].present]
        values["peers_missing"] = ",".join(missing)
        if len(missing) > 1:
            problems.append(f"{len(missing)} agents missing ({', '.join(missing)}) > the one teammate measured "
                            "(outside the envelope)")
        elif missing and self.gone_retention is None:
            problems.append(f"agent missing ({missing[0]}): not measured by the envelope")
        elif missing and self.gone_retention < self.min_retention:
            problems.append(f"agent missing ({missing[0]}): the envelope measured retention "
                            f"{self.gone_retention:.2f} < {self.min_retention:g} with a teammate gone")
        for agent in self.agents:
            seen = live.get(agent)
            if seen is None or not seen.present:
                continue
            if seen.delay_ms is not None or seen.latency_p99_ms is not None:
                periods = (max(0.0, seen.delay_ms or 0.0) + (seen.latency_p99_ms or 0.0)) / self.periods_ms[agent]
                values[f"{agent}.delay_periods"] = periods
                problem = self._against(self.delay, periods, "observation delay + decision latency",
                                        "control periods")
                if problem:
                    problems.append(f"{agent}: {problem}")
            if seen.drop_rate is not None:
                values[f"{agent}.drop_rate"] = seen.drop_rate
                problem = self._against(self.drop, seen.drop_rate, "dropped observations", "of decisions")
                if problem:
                    problems.append(f"{agent}: {problem}")
        if problems:
            return WARN, f"outside the measured conditions: {'; '.join(problems)} (figure: {self.figure})", values
        return OK, f"inside the measured conditions (figure: {self.figure})", values


def live_from_values(values: Mapping[str, str], present: bool = True) -> LiveAgent:
    """A :class:`LiveAgent` from a student node's ``/diagnostics`` values (strings, as published)."""

    def number(key: str) -> float | None:
        try:
            return float(values[key]) if values.get(key, "") != "" else None
        except ValueError:
            return None

    actions, stale = number("actions"), number("stale_observations")
    drop = None if not actions or stale is None else stale / max(actions + stale, 1.0)
    return LiveAgent(delay_ms=number("observation_delay_ms"), latency_p99_ms=number("inference_p99_ms"),
                     drop_rate=drop, present=present)


__all__ = ["OK", "WARN", "EnvelopeWatch", "LiveAgent", "live_from_values"]
