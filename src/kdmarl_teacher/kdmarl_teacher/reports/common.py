"""What the three `kdmarl report` figures share: the metrics.csv and JSON readers, matplotlib (Agg, imported late),
saving and smoothing. Torch-free, like every report module: `kdmarl report` runs where only the results are.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

FLOPS_TARGET = 30.0  # issue 4 §6: >= 30x fewer FLOPs per agent than the teacher actor


def read_metrics(path: Path) -> dict[str, list[float]]:
    """metrics.csv (teacher or distillation run) -> column name -> floats (NaN where a cell is empty)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (a run directory holds metrics.csv)")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no rows yet")
    cols: dict[str, list[float]] = {k: [] for k in rows[0]}
    for r in rows:
        for k, column in cols.items():
            try:
                column.append(float(r[k]))
            except (TypeError, ValueError):
                column.append(float("nan"))
    return cols


def pyplot() -> Any:
    """matplotlib with the Agg backend, imported late so `kdmarl --help` stays light."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def read_json(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """A JSON object with ``required`` keys; any problem is a ValueError/FileNotFoundError naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{path}: missing field(s) {missing}")
    return data


def save_figure(fig: Any, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    pyplot().close(fig)
    return out


def smooth(y: list[float], window: int) -> list[float]:
    """Trailing moving average ignoring NaN: training curves are noisy per iteration."""
    out, acc = [], []
    for v in y:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        vals = [a for a in acc if not math.isnan(a)]
        out.append(sum(vals) / len(vals) if vals else float("nan"))
    return out
