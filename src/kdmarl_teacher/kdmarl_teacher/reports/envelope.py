"""The envelope figure (issue 25): retention vs each perturbation, one line for the students, one for the teacher.

Drawn from a manifest's ``envelope`` block alone (:mod:`kdmarl_student.team_profile`), so it can be redrawn from
any bundle. One panel per perturbation family, its strength on the x axis (the unperturbed cell is strength 0 of
every family); the teammate failures are one panel with two categories. Error bars are the cells' 95 % retention
intervals (paired bootstrap over episodes).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdmarl_teacher.reports.common import pyplot, save_figure

# panel title -> (kinds it draws, x parameter, extra match, x label)
PANELS: tuple[tuple[str, str, str, dict[str, Any], str], ...] = (
    ("observation noise", "obs_noise", "sigma", {}, "sigma (observation units)"),
    ("dropped observations, safe action", "obs_drop", "p", {"answer": "safe"}, "drop probability"),
    ("dropped observations, last action", "obs_drop", "p", {"answer": "last"}, "drop probability"),
    ("action delay", "action_delay", "k", {}, "control periods"),
)
ACTORS = (("student", "students", "tab:blue"), ("teacher", "teacher actor", "tab:gray"))


def envelope_series(envelope: Mapping[str, Any], kind: str, param: str, match: Mapping[str, Any],
                    actor: str) -> list[tuple[float, float, list[float] | None]]:
    """(strength, retention, interval) of one actor along one perturbation family, the baseline at 0."""
    points = []
    for cell in envelope["cells"]:
        pert = cell["perturbation"]
        value = cell.get(f"{actor}_retention")
        if value is None:
            continue
        if pert["kind"] == "none":
            points.append((0.0, value, cell.get(f"{actor}_retention_ci95")))
        elif pert["kind"] == kind and all(pert.get(k) == v for k, v in match.items()):
            points.append((float(pert[param]), value, cell.get(f"{actor}_retention_ci95")))
    return sorted(points, key=lambda p: p[0])


def draw_envelope(envelope: Mapping[str, Any], out: Path, title: str = "") -> Path:
    """Write the envelope figure to ``out`` (PNG) and return its path."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(PANELS) + 1, figsize=(4.0 * (len(PANELS) + 1), 3.6), sharey=True)
    for ax, (name, kind, param, match, xlabel) in zip(axes, PANELS, strict=False):
        for actor, label, color in ACTORS:
            pts = envelope_series(envelope, kind, param, match, actor)
            if len(pts) < 2:
                continue
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            err = [[y - (p[2] or [y, y])[0] for y, p in zip(ys, pts, strict=True)],
                   [(p[2] or [y, y])[1] - y for y, p in zip(ys, pts, strict=True)]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label, color=color)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    ax = axes[-1]
    labels = ["none", "teammate_frozen", "teammate_gone"]
    for offset, (actor, label, color) in zip((-0.15, 0.15), ACTORS, strict=True):
        xs, ys = [], []
        for i, kind in enumerate(labels):
            for cell in envelope["cells"]:
                if cell["perturbation"]["kind"] == kind and cell.get(f"{actor}_retention") is not None:
                    xs.append(i + offset)
                    ys.append(cell[f"{actor}_retention"])
        ax.bar(xs, ys, width=0.3, label=label, color=color)
    ax.set_xticks(range(len(labels)), ["none", "one frozen", "one gone\n(last action held)"])
    ax.set_title("a teammate fails", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("retention vs unperturbed teacher")
    axes[-1].legend(fontsize=8)  # the bars always carry both labels
    proto = envelope["protocol"]
    fig.suptitle(f"{title} envelope: {proto['episodes']} episodes per cell, seeds {proto['seeds']}"
                 f"{'' if proto.get('complete', True) else ' (grid cut by its time bound)'}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out)


__all__ = ["draw_envelope", "envelope_series"]
