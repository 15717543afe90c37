"""What every training run shares (MAPPO and QMIX teachers, both distillation recipes): iteration seeds, the
metrics log (metrics.csv + TensorBoard, cut back on resume) and optimizer state on CPU for checkpoints."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import torch

from kdmarl_teacher.core.errors import writing

SEED_STRIDE = 1_000_003  # iteration seeds: seed * SEED_STRIDE + iteration (distinct runs never share rollouts)


def _optimizer_to_cpu(state: dict) -> dict:
    out = {"param_groups": state["param_groups"], "state": {}}
    for k, s in state["state"].items():
        out["state"][k] = {n: (v.detach().to("cpu").clone() if torch.is_tensor(v) else v) for n, v in s.items()}
    return out


def _wait_past_event_files(tb_dir: Path) -> None:
    """TensorBoard reads a run's event files in name order, and a name starts with the second its writer was
    created (then host and pid): a resumed writer created in the same second as the killed run's could sort first,
    so its purge would be read before the events it must drop. Wait (at most a second) until ours sorts last."""
    stamps = [int(f) for p in tb_dir.glob("events.out.tfevents.*") if (f := p.name.split(".")[3]).isdigit()]
    delay = max(stamps) + 1 - time.time() if stamps else 0.0
    if delay > 0:
        time.sleep(delay)


class MetricsLog:
    """metrics.csv (one row per logged iteration) + TensorBoard scalars, for `kdmarl train` and `kdmarl distill`.

    On resume from a checkpoint taken after `resume_iteration` iterations (at TensorBoard step `resume_step`),
    the CSV is cut back to that iteration and TensorBoard purges every step after `resume_step`, so the
    iterations run after the last checkpoint (then lost by the kill) appear once, not twice."""

    def __init__(self, out: Path, resume_iteration: int | None, resume_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (slow import, only when training)

        self.path = out / "metrics.csv"
        self.fields: list[str] | None = None
        if resume_iteration is not None and self.path.exists():
            with self.path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                self.fields = list(reader.fieldnames or [])
                rows = [r for r in reader if int(r["iteration"]) <= resume_iteration]
            with writing(self.path), self.path.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.fields)
                writer.writeheader()
                writer.writerows(rows)
        elif self.path.exists():
            self.path.unlink()
        # purge_step: TensorBoard drops the events of steps >= it (from earlier files too) when it reads the log
        purge = None if resume_iteration is None or resume_step is None else resume_step + 1
        if purge is not None:
            _wait_past_event_files(out / "tb")
        self.tb = SummaryWriter(str(out / "tb"), purge_step=purge)

    def write(self, row: dict[str, Any]) -> None:
        with writing(self.path):
            if self.fields is None:
                self.fields = list(row)
                with self.path.open("w", newline="") as fh:
                    csv.DictWriter(fh, fieldnames=self.fields).writeheader()
            with self.path.open("a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore").writerow(row)
        step = int(row["global_step"])
        for key, value in row.items():
            if key not in ("global_step", "iteration") and isinstance(value, (int, float)) and math.isfinite(value):
                self.tb.add_scalar(key if "/" in key else f"train/{key}", value, step)

    def close(self) -> None:
        self.tb.flush()
        self.tb.close()
