"""The one training run: what MAPPO and QMIX teachers and both distillation recipes share around their own
iteration. `TrainingRun` owns the run directory (refusing to start over an existing run or to resume from
nothing), the resumed checkpoint, the resolved config file, the metrics log (metrics.csv + TensorBoard, cut back on
resume), the progress bar, wall time, the checkpoint cadence (which iteration checkpoint.pt holds) and the
divergence guard (the one-line stop naming what went non-finite and which checkpoint is kept). The algorithm keeps
its iteration, what it stores and in which order it draws random numbers: the run never touches an RNG, so
moving a loop onto it changes no figure.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdmarl_teacher.core.config import RunConfig, save_config
from kdmarl_teacher.core.errors import NonFiniteError, writing
from kdmarl_teacher.core.run_files import (
    atomic_save,
    divergence_error,
    load_checkpoint,
    nonfinite_tensors,
    prepare_run_dir,
)

SEED_STRIDE = 1_000_003  # iteration seeds: seed * SEED_STRIDE + iteration (distinct runs never share rollouts)


def optimizer_to_cpu(state: dict) -> dict:
    """An optimizer state_dict with its tensors cloned to CPU (a checkpoint never depends on the device)."""
    out = {"param_groups": state["param_groups"], "state": {}}
    for k, s in state["state"].items():
        out["state"][k] = {n: (v.detach().to("cpu").clone() if torch.is_tensor(v) else v) for n, v in s.items()}
    return out


def anneal_lr(optimizer: torch.optim.Optimizer, lr: float, iteration: int, n_iterations: int) -> None:
    """Linear learning-rate decay to 0 over the run (CleanRL's anneal_lr), set before iteration `iteration`."""
    for group in optimizer.param_groups:
        group["lr"] = lr * (1.0 - iteration / n_iterations)


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


class TrainingRun:
    """One run directory from start (or resume) to the last checkpoint; see the module docstring.

    Use: ``run = TrainingRun(out, resume=..., what=...)``; ``ck = run.load()`` when resuming; ``run.start(cfg,
    ...)`` once the resume was accepted (a refused resume must leave the first run intact); per iteration
    ``run.check_finite`` / ``run.check_weights`` (raise `NonFiniteError` before anything bad is saved),
    ``run.log_row``, ``run.advance``, ``run.save`` when ``run.due(...)``; at the end ``run.close()``."""

    def __init__(self, out_dir: str | Path, *, resume: bool, what: str = "run", checkpoint_every: int = 1,
                 torch_threads: int | None = None, seed: int | None = None) -> None:
        """`torch_threads`: torch's intra-op threads for this run; `seed`: torch's global seed, set here (before
        any network exists) when the run's networks are initialized right after."""
        self.out = Path(out_dir)
        self.resume = resume
        self.ckpt_path = prepare_run_dir(self.out, resume, what=what)
        self.checkpoint_every = checkpoint_every
        self.last_checkpoint: int | None = None  # the iteration checkpoint.pt holds (None: none written yet)
        self.modules: dict[str, nn.Module] = {}  # what the divergence message inspects (`watch`)
        self.log: MetricsLog | None = None
        self.bar: Any = None
        self.wall_before = 0.0
        self.start_iteration = 0
        self._t0 = time.perf_counter()
        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        if seed is not None:
            torch.manual_seed(seed)  # network initialization

    def load(self, device: str | torch.device = "cpu") -> dict:
        """The checkpoint to resume from (`--resume`)."""
        return load_checkpoint(self.ckpt_path, device)

    def start(self, cfg: RunConfig, config_file: str, *, start_iteration: int, resume_step: int,
              wall_before: float = 0.0, progress: bool, bar_total: int, bar_initial: int, desc: str,
              unit: str = "it", unit_scale: bool = False) -> None:
        """After the resume check: write the resolved config, open the metrics log (cut back to `start_iteration`
        on resume), the progress bar, and start the wall clock (`wall_before`: the time of the resumed run)."""
        save_config(cfg, self.out / config_file)
        self.log = MetricsLog(self.out, start_iteration if self.resume else None, resume_step)
        self.last_checkpoint = start_iteration if self.resume else None
        self.start_iteration = start_iteration
        self.wall_before = wall_before
        if progress:
            from tqdm import tqdm  # noqa: PLC0415 (only for an interactive run)

            self.bar = tqdm(total=bar_total, initial=bar_initial, desc=desc, unit=unit, unit_scale=unit_scale,
                            dynamic_ncols=True)
        self._t0 = time.perf_counter()

    def wall(self) -> float:
        """Seconds of training so far, resumed runs included."""
        return self.wall_before + time.perf_counter() - self._t0

    def over_time(self, limit_minutes: float) -> bool:
        return limit_minutes > 0 and self.wall() >= 60.0 * limit_minutes

    def watch(self, modules: Mapping[str, nn.Module]) -> None:
        """The modules whose weights `check_weights` checks and a divergence message names (again after pruning)."""
        self.modules = dict(modules)

    def diverged(self, iteration_number: int, values: Mapping[str, float]) -> NonFiniteError:
        """The one-line stop of a diverged run (closes the bar and the log; the caller raises it)."""
        self.close()
        return divergence_error(iteration_number, values, self.modules, self.ckpt_path, self.last_checkpoint)

    def check_finite(self, iteration_number: int, values: Mapping[str, float]) -> None:
        """Before an optimizer step: a NaN/Inf loss or grad norm stops the run before it spreads into the weights."""
        if not all(map(math.isfinite, values.values())):
            raise self.diverged(iteration_number, values)

    def check_weights(self, iteration_number: int, values: Mapping[str, float]) -> None:
        """After an iteration: a NaN/Inf weight stops the run before it is checkpointed."""
        if nonfinite_tensors(t for m in self.modules.values() for t in m.state_dict().items()):
            raise self.diverged(iteration_number, values)

    def log_row(self, row: dict[str, Any]) -> None:
        assert self.log is not None, "TrainingRun.start first"
        self.log.write(row)

    def advance(self, n: int, **postfix: str) -> None:
        """The progress bar: `n` more units done, with the figures shown next to it."""
        if self.bar is not None:
            self.bar.set_postfix(refresh=False, **postfix)
            self.bar.update(n)

    def due(self, iterations_done: int) -> bool:
        """The checkpoint cadence: every `checkpoint_every` iterations (callers add their own final save)."""
        return iterations_done % self.checkpoint_every == 0

    def end_iteration(self, iterations_done: int, *, last: int, stop_after: int | None, time_limit_minutes: float,
                      checkpoint: Callable[[int], None]) -> bool:
        """A teacher's end of iteration: `checkpoint(iterations_done)` on the cadence, after the last iteration and
        when stopping early (the time limit; `stop_after` iterations of this session, as if interrupted: the
        resume tests). Returns True when the run stops here."""
        interrupted = stop_after is not None and iterations_done - self.start_iteration >= stop_after
        timed_out = self.over_time(time_limit_minutes)
        if self.due(iterations_done) or iterations_done == last or interrupted or timed_out:
            checkpoint(iterations_done)
        return interrupted or timed_out

    def save(self, iteration_done: int, files: Mapping[Path, Any]) -> None:
        """Atomically write each checkpoint file (checkpoint.pt first, then what is derived from it) and remember
        that checkpoint.pt now holds `iteration_done`."""
        for path, payload in files.items():
            atomic_save(payload, path)
        self.last_checkpoint = iteration_done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.log is not None:
            self.log.close()
            self.log = None
