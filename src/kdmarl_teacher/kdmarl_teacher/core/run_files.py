"""Run directories and their files, for every training run (teachers and distillation): atomic torch.save,
reading a checkpoint back with an error that names the file, the run-directory guard, the divergence stop,
and the scenario spec as plain data. Nothing here knows which algorithm wrote the file."""

from __future__ import annotations

import dataclasses
import io
import math
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from kdmarl_student.atomic import atomic_file
from kdmarl_student.scenarios import AgentSpec, ScenarioSpec

from kdmarl_teacher.core.config import check_device
from kdmarl_teacher.core.errors import InputFileError, NonFiniteError, writing


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file next to `path`, fsync, then os.replace (atomic on POSIX).

    Serialized in memory first: torch.save streaming into a file that hits a full disk reports a bare
    RuntimeError ("unexpected pos"), while a plain write reports the OS error, which `writing` names the file in.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with writing(path), atomic_file(path) as handle:
        handle.write(buffer.getbuffer())


def nonfinite_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an Inf (a state_dict's items, named_parameters())."""
    return [name for name, t in named if torch.is_tensor(t) and t.is_floating_point() and not bool(t.isfinite().all())]


def divergence_error(iteration: int, values: Mapping[str, float], modules: Mapping[str, torch.nn.Module],
                     ckpt_path: Path, last_checkpoint: int | None) -> NonFiniteError:
    """The one-line stop of a diverged run: which iteration, which losses / grad norm (`values`) and which weights
    of `modules` are NaN/Inf, and which checkpoint is kept (the run stops before writing a bad one)."""
    losses = ", ".join(f"{k}={v:g}" for k, v in values.items() if not math.isfinite(v))
    parts = [losses] if losses else []
    weights = [f"{name}.{t}" for name, m in modules.items() for t in nonfinite_tensors(m.state_dict().items())]
    if weights:
        more = f" (+{len(weights) - 4} more)" if len(weights) > 4 else ""
        parts.append(f"weights {', '.join(weights[:4])}{more}")
    kept = (f"{ckpt_path} keeps iteration {last_checkpoint}" if last_checkpoint is not None
            else "no checkpoint was written")
    return NonFiniteError(f"iteration {iteration}: non-finite {'; '.join(parts)}; stopped ({kept}): lower lr or "
                          "max_grad_norm, or check the inputs")


def prepare_run_dir(out_dir: str | Path, resume: bool, what: str = "run") -> Path:
    """Create ``out_dir`` and return its ``checkpoint.pt`` path, refusing to start a second run over an
    existing one (nothing is lost) and to ``--resume`` a directory that holds no checkpoint."""
    out = Path(out_dir)
    ckpt_path = out / "checkpoint.pt"
    if resume and not ckpt_path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
    if not resume and ckpt_path.exists():
        raise FileExistsError(f"{out} already holds a {what} (checkpoint.pt); use --resume or another --out")
    out.mkdir(parents=True, exist_ok=True)
    return ckpt_path


def spec_to_dict(spec: Any) -> dict:
    """ScenarioSpec -> plain dict (tuples kept), for the checkpoint and JSON reports."""
    return dataclasses.asdict(spec) if dataclasses.is_dataclass(spec) else dict(spec)


def spec_from_dict(data: dict) -> Any:
    """Rebuild a `kdmarl_student.scenarios.ScenarioSpec` from its dict (the stored copy is authoritative, so
    a checkpoint still loads if the scenario defaults change later)."""
    agents = tuple(
        AgentSpec(**{**a, "layout": {k: tuple(v) for k, v in a["layout"].items()},
                     "action_meanings": tuple(a["action_meanings"])})
        for a in data["agents"]
    )
    return ScenarioSpec(**{**data, "agents": agents})


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """torch.load (weights_only) of checkpoint.pt, teacher.pt or students.pt; a truncated or corrupt file raises
    InputFileError naming it (torch reports EOFError, OSError or RuntimeError, none of which names the file)."""
    path = Path(path)
    check_device(device)  # else torch's "cannot deserialize on CUDA" would read as a corrupt file below
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except (EOFError, OSError, RuntimeError, pickle.UnpicklingError) as err:
        detail = " ".join(str(err).split(". ")[0].split()) or type(err).__name__
        raise InputFileError(path, f"expected a complete torch.save checkpoint; the file is truncated or corrupt "
                             f"({detail})") from err
    if not isinstance(payload, dict):
        raise InputFileError(path, f"expected a checkpoint dict, got {type(payload).__name__}")
    return payload
