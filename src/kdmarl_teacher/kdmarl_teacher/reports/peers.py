"""Our teacher against a JaxMARL peer, side by side: the curves of one benchmark run, the comparisons its targets
are made of, and the figure (`docs/peers_<task>.png`).

Why a module of its own: `bench/bench_peers.py` runs the peer driver (`../shared/peers/jaxmarl/run_*.py`) and our
teacher one after the other and needs to read both logs the same way every time, and `kdmarl report --bench`
redraws the figure from the result JSON alone. Torch-free, like every report module.

A curve is what each side logged against wall time since its training started:
- the peer's QMIX driver CSV (`run_qmix.py`): `test_returned_episode_returns` is the greedy test return summed over
  the three agents of JaxMARL's MPE spread (26-step episodes), logged with the latest test figure every 200
  updates; divided by the number of agents it is this project's team return (mean over agents);
- the peer's MAPPO driver CSV (`run_mappo.py`): `win_rate`, the training win rate of each update's finished
  battles;
- our `metrics.csv`: `greedy_return` (QMIX: greedy return on 64 fixed mpe2 seeds every `eval_every` iterations)
  or `task/won` (MAPPO on SMAX: training win rate of finished battles, read over the trailing iterations that
  make up one peer update's env steps, so both sides' readings average the same amount of play).
The peer's wall time starts after jax compiled its training loop (`COMPILE_S` in its log, reported separately);
ours starts when the run starts.
"""

from __future__ import annotations

import csv
import math
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdmarl_teacher.reports.common import pyplot, read_json, save_figure

PEER_QMIX_COLUMNS = ("update", "env_step", "wall_s_since_train_start", "test_returned_episode_returns")
PEER_MAPPO_COLUMNS = ("update", "env_steps", "wall_s_since_train_start", "win_rate")
MAX_POINTS = 400  # points kept per curve in the result JSON (a figure, not the raw log)


@dataclass
class Curve:
    """One side's figure against wall time: minutes[i], env_steps[i], value[i] (NaN-free, time-ordered)."""

    label: str
    who: str  # "ours" or "peer"
    metric: str
    minutes: list[float] = field(default_factory=list)
    env_steps: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)

    def to_dict(self, max_points: int = MAX_POINTS) -> dict[str, Any]:
        """JSON form, thinned to at most `max_points` (the first and last points are always kept)."""
        n = len(self.value)
        keep = list(range(n)) if n <= max_points else sorted(
            {round(i * (n - 1) / (max_points - 1)) for i in range(max_points)})
        d = asdict(self)
        for key in ("minutes", "env_steps", "value"):
            d[key] = [d[key][i] for i in keep]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "curve") -> Curve:
        missing = [k for k in ("label", "who", "metric", "minutes", "env_steps", "value") if k not in d]
        if missing:
            raise ValueError(f"{where}: missing field(s) {missing}")
        if not len(d["minutes"]) == len(d["env_steps"]) == len(d["value"]):
            raise ValueError(f"{where}: minutes, env_steps and value differ in length")
        return cls(**{k: d[k] for k in ("label", "who", "metric", "minutes", "env_steps", "value")})


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected at least {list(required)}")
        rows = list(reader)
    # a peer stopped at its budget may have been cut in the middle of writing its last line: drop that line only
    if rows and any(v is None for v in rows[-1].values()):
        rows.pop()
    return rows


def _number(path: Path, line: int, row: dict[str, str], key: str) -> float:
    try:
        return float(row[key])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: line {line}: column '{key}' = {row.get(key)!r} is not a number") from err


def read_peer_qmix(path: Path, n_agents: int, label: str) -> Curve:
    """The JaxMARL QMIX driver's CSV -> greedy team return (summed return / n_agents) against wall time."""
    curve = Curve(label, "peer", "greedy team return")
    for line, row in enumerate(_read_csv(path, PEER_QMIX_COLUMNS), start=2):
        curve.minutes.append(_number(path, line, row, "wall_s_since_train_start") / 60)
        curve.env_steps.append(int(_number(path, line, row, "env_step")))
        curve.value.append(_number(path, line, row, "test_returned_episode_returns") / n_agents)
    return curve


def read_peer_mappo(path: Path, label: str) -> Curve:
    """The JaxMARL MAPPO driver's CSV -> training win rate against wall time."""
    curve = Curve(label, "peer", "training win rate")
    for line, row in enumerate(_read_csv(path, PEER_MAPPO_COLUMNS), start=2):
        curve.minutes.append(_number(path, line, row, "wall_s_since_train_start") / 60)
        curve.env_steps.append(int(_number(path, line, row, "env_steps")))
        curve.value.append(_number(path, line, row, "win_rate"))
    return curve


def read_ours(metrics_csv: Path, column: str, label: str, metric: str, window_steps: int = 0) -> Curve:
    """Our run's metrics.csv -> `column` against wall time; rows where the column is empty or NaN (a greedy
    evaluation is not run every iteration, an iteration may finish no battle) are skipped.

    With `window_steps` (a rate per iteration, such as `task/won`, weighted by the `episodes` column): each point is
    the episode-weighted mean over the trailing iterations that cover at least `window_steps` env steps. Why: a
    training win rate read off one iteration averages that iteration's battles only, so a config with fewer envs
    per iteration reads noisier and reaches a level early by chance (num_envs=16 on 3m: ~135 battles a reading,
    one of them 0.9 at 4.4 min while the mean was 0.84). Matched to the peer's steps per update
    (`steps_per_reading`), both sides' readings average the same amount of play."""
    curve = Curve(label, "ours", metric)
    steps: list[int] = []
    won: list[float] = []
    weight: list[float] = []
    required = ("global_step", "wall_time", column) + (("episodes",) if window_steps else ())
    for line, row in enumerate(_read_csv(metrics_csv, required), start=2):
        cell = row[column]
        if cell in ("", "nan"):
            continue
        value = _number(metrics_csv, line, row, column)
        if math.isnan(value):
            continue
        step = int(_number(metrics_csv, line, row, "global_step"))
        if window_steps:
            steps.append(step)
            won.append(value)
            weight.append(_number(metrics_csv, line, row, "episodes"))
            first = len(steps) - 1
            while first > 0 and step - steps[first - 1] < window_steps:
                first -= 1
            n = sum(weight[first:])
            value = sum(w * v for w, v in zip(weight[first:], won[first:], strict=True)) / n if n else value
        curve.minutes.append(_number(metrics_csv, line, row, "wall_time") / 60)
        curve.env_steps.append(step)
        curve.value.append(value)
    return curve


def steps_per_reading(curve: Curve) -> int:
    """The env steps behind one point of `curve` (the median step between points): the peer's update size."""
    gaps = sorted(b - a for a, b in zip(curve.env_steps, curve.env_steps[1:], strict=False))
    return gaps[len(gaps) // 2] if gaps else 0


def value_at(curve: Curve, minutes: float) -> float | None:
    """The curve's latest figure at wall time `minutes` (a step function: what that side had shown by then);
    None before its first point. Past its end it keeps its last figure (the run had stopped with it)."""
    out = None
    for t, v in zip(curve.minutes, curve.value, strict=True):
        if t > minutes:
            break
        out = v
    return out


def first_time(curve: Curve, level: float) -> float | None:
    """Minutes at which the curve first reached `level` (None if never)."""
    return next((t for t, v in zip(curve.minutes, curve.value, strict=True) if v >= level), None)


def ahead_at_every_time(ours: Curve, peer: Curve) -> dict[str, Any]:
    """Ours against the peer at each wall time at which the peer showed a new figure, and at the peer's end.

    Compared from the first time both sides have a figure (before that one side has none). A tie counts as
    ahead (not behind). Returns the comparisons, how many were behind, and the worst margin (ours - peer)."""
    if not ours.value or not peer.value:
        return {"compared": 0, "behind": 0, "worst_margin": None, "at_peer_end": None, "points": []}
    start = max(ours.minutes[0], peer.minutes[0])
    times = [t for i, t in enumerate(peer.minutes)
             if t >= start and (i == 0 or peer.value[i] != peer.value[i - 1] or i == len(peer.minutes) - 1)]
    points = []
    for t in times:
        p, o = value_at(peer, t), value_at(ours, t)
        if p is None or o is None:
            continue
        points.append({"minutes": round(t, 3), "ours": round(o, 4), "peer": round(p, 4), "margin": round(o - p, 4)})
    behind = [pt for pt in points if pt["margin"] < 0]
    return {"compared": len(points), "behind": len(behind),
            "worst_margin": min((pt["margin"] for pt in points), default=None),
            "first_behind": behind[0] if behind else None,
            "at_peer_end": points[-1] if points else None, "points": points}


def draw_peers(result_json: Path, out: Path) -> Path:
    """Both curves of a `bench_peers` result (its `curves`), value against wall time, with the target line."""
    data = read_json(result_json, ("curves", "title"))
    curves = [Curve.from_dict(c, f"{result_json}: curves[{i}]") for i, c in enumerate(data["curves"])]
    if not curves:
        raise ValueError(f"{result_json}: no curves to plot")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for c in curves:
        ax.step(c.minutes, c.value, where="post", lw=1.8 if c.who == "ours" else 1.4,
                ls="-" if c.who == "ours" else "--", label=f"{c.label} ({c.who})")
    for level, text in data.get("levels", []):
        ax.axhline(level, color="grey", lw=0.8, ls=":")
        ax.annotate(text, (0, level), xytext=(2, 2), textcoords="offset points", fontsize=8, color="grey")
    ax.set_xlabel("wall time since training started (min)")
    ax.set_ylabel(curves[0].metric)
    ax.set_title("\n".join(textwrap.wrap(data["title"], 95)), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    caption = data.get("caption", "")
    if caption:
        fig.text(0.01, 0.01, caption, fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.06 if caption else 0, 1, 1))
    return save_figure(fig, out)
