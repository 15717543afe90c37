"""Run configurations, the shared part: one flat dataclass per command with documented defaults, YAML files,
`--set` overrides, range checks, and the `--resume` rule. The three configurations themselves live with what
they configure (`algos.config`: `kdmarl train` for MAPPO and QMIX; `distill.config`: `kdmarl distill`).

Why flat: every hyper-parameter is one `key: value` line in the run's `config.yaml`, one `--set key=value` on
the command line and one attribute in the training loop, so an ablation is always a single edit. Only
`env_params` is a mapping (it is forwarded verbatim to the scenario, e.g. `N`, `local_ratio`); its entries are
overridden as `--set env_params.N=4`. Unknown keys raise `ValueError` naming the file (or `--set`) and the key,
so a typo never silently trains with a default; so do values outside a key's allowed range (each config's
`*RANGES`: e.g. `lr=1e9` or `gamma=1.5` would train to NaN or to nonsense instead of failing), and a YAML syntax
error names the file and the line (`errors.InputFileError`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from kdmarl_student.atomic import atomic_file

from kdmarl_teacher.core.errors import InputFileError, writing

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"  # the shipped YAML files (package data)
MAX_WIDTH = 4096  # widest hidden layer accepted (actor_hidden, critic_hidden, agent_hidden, gru_hidden)


class RunConfig:
    """What every run configuration shares (`TeacherConfig`, `QmixConfig`, `DistillConfig` are dataclasses
    deriving from it): its dict form (config.yaml, checkpoints) and the `--resume` rule. Each subclass has its own
    `validate(origins)` (its keys and ranges differ) and names in `resume_may_change` the keys a `--resume` may
    change without changing what is computed."""

    resume_may_change: ClassVar[tuple[str, ...]] = ()

    def validate(self, origins: Mapping[str, str] | None = None) -> None:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]  # subclasses are dataclasses

    def check_resume(self, saved: Mapping[str, Any]) -> None:
        """`--resume`: refuse a config that differs from the checkpoint's `saved` one but in `resume_may_change`."""
        check_resume_config(saved, self.to_dict(), self.resume_may_change)


RunConfigT = TypeVar("RunConfigT", bound=RunConfig)


@dataclass(frozen=True)
class Range:
    """The allowed interval of a numeric config key; `None` is unbounded, `*_open` excludes the bound itself."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if math.isnan(value):  # NaN is in no range
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self, key: str) -> str:
        """`0 < lr <= 1`, `num_envs >= 1`: the range as the error message states it."""

        def num(v: float) -> str:
            return str(int(v)) if float(v).is_integer() else f"{v:g}"

        if self.high is None and self.low is not None:
            return f"{key} {'>' if self.low_open else '>='} {num(self.low)}"
        low = "" if self.low is None else f"{num(self.low)} {'<' if self.low_open else '<='} "
        high = "" if self.high is None else f" {'<' if self.high_open else '<='} {num(self.high)}"
        return f"{low}{key}{high}"



# Scenario parameters with a range when present in env_params (the scenario checks which ones it accepts): a
# batched env allocates [num_envs, N, obs_dim(N)] tensors, so N = 100 000 would exhaust memory instead of failing.
ENV_PARAM_RANGES: dict[str, Range] = {
    "env_params.N": Range(1, 16),
    "env_params.local_ratio": Range(0, 1),  # a proportion (mpe2 asserts the same)
    "env_params.max_cycles": Range(1, 10_000),
}



def check_ranges(values: Mapping[str, Any], ranges: Mapping[str, Range], origins: Mapping[str, str],
                 what: str) -> None:
    """Raise ValueError for the first key of `ranges` whose value in `values` is not a number in its range;
    the message names the origin (`origins[key]`: a file or `--set`, when known), the key, value and range."""
    for key, allowed in ranges.items():
        if key not in values:
            continue
        value = values[key]
        prefix = f"{origins[key]}: " if key in origins else ""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{prefix}{what} '{key}' expects a number in {allowed.describe(key)}, got {value!r}")
        if value not in allowed:
            raise ValueError(f"{prefix}{what} '{key}' = {value!r} is out of range: expected {allowed.describe(key)}")


def check_device(device: Any, origin: str | None = None) -> None:
    """`cpu`, or `cuda` / `cuda:K` on a machine where torch sees that GPU (torch is imported only for cuda)."""
    prefix = f"{origin}: " if origin else ""
    name = str(device)
    if name == "cpu":
        return
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"{prefix}config key 'device' = {device!r} is not a device: expected cpu, cuda or cuda:K")
    import torch  # noqa: PLC0415 (config stays torch-free for CPU runs and tools that only read configs)

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(index or 0) >= count:
        seen = f"{count} CUDA device(s)" if count else "no usable CUDA device (torch.cuda.is_available() is False)"
        raise ValueError(f"{prefix}device {device!r} (config key 'device' or --device): this machine has {seen}; "
                         "expected 'cpu' (--device cpu) or an existing cuda:K")


def load_yaml(path: str | Path) -> Any:
    """`yaml.safe_load` of a file; a syntax error becomes `InputFileError` naming the file and the line."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError as err:
        raise InputFileError(path, f"expected a UTF-8 YAML file ({err.reason})") from err
    return parse_yaml(text, str(path), expected="`key: value` lines of valid YAML", in_file=True)


def parse_yaml(text: str, source: str, expected: str = "a YAML value (number, true/false, [list], ...)",
               in_file: bool = False) -> Any:
    """`yaml.safe_load(text)`; an error names `source` (a file, with the line, or `--set KEY`) and `expected`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        if not in_file:
            raise InputFileError(source, f"invalid YAML {text!r} ({problem}); expected {expected}") from err
        where = f" at column {mark.column + 1}" if mark is not None else ""
        raise InputFileError(source, f"invalid YAML ({problem}{where}); expected {expected}",
                             line=mark.line + 1 if mark is not None else None) from err


def coerce(key: str, value: Any, default: Any, source: str, what: str = "config key") -> Any:
    """Check a value against the default's type (YAML gives ints for floats like `1`, accept those)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{source}: {what} '{key}' expects true/false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
        try:  # YAML 1.1 reads "3e-4" (no dot) as a string
            number = float(value)
        except ValueError:
            raise ValueError(f"{source}: {what} '{key}' expects a number, got {value!r}") from None
        value = number
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if type(default) is not type(value) and not (default is None or value is None):
        raise ValueError(f"{source}: {what} '{key}' expects {type(default).__name__}, got {value!r}")
    return value


def apply_overrides(cfg: RunConfigT, values: dict[str, Any], source: str,
                    origins: dict[str, str] | None = None) -> RunConfigT:
    """Return a copy of `cfg` (a TeacherConfig or a QmixConfig) with `values` applied; `source` (a file name or
    '--set') goes into errors and, per key, into `origins` (so a range error found later by `validate` still
    names where the value came from)."""
    if not isinstance(values, dict):
        raise ValueError(f"{source}: expected a mapping of config keys, got {type(values).__name__}")
    origins = {} if origins is None else origins
    cls = type(cfg)
    names = tuple(f.name for f in dataclasses.fields(cls))
    defaults = cls()
    data = cfg.to_dict()
    for key, value in values.items():
        if key.startswith("env_params."):
            data["env_params"] = {**data["env_params"], key.split(".", 1)[1]: value}
            origins[key] = source
            continue
        if key not in names:
            raise ValueError(f"{source}: unknown config key '{key}' (known keys: {', '.join(names)})")
        data[key] = coerce(key, value, getattr(defaults, key), source)
        origins[key] = source
        if key == "env_params" and isinstance(value, dict):
            origins.update({f"env_params.{k}": source for k in value})
    return cls(**data)


def check_resume_config(saved: Mapping[str, Any], now: Mapping[str, Any], ignore: Iterable[str]) -> None:
    """`--resume` continues THE run in the directory: refuse a config that differs from the checkpoint's in any key
    but `ignore` (keys that do not change what is computed, e.g. device, time limit), naming the keys."""
    skip = set(ignore)
    diff = sorted(k for k in {*saved, *now} - skip if saved.get(k) != now.get(k))
    if diff:
        raise ValueError(f"--resume: config differs from the checkpoint's in {diff}")


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """`["lr=3e-4", "actor_hidden=[64,64]"]` -> dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set: expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        out[key.strip()] = parse_yaml(raw, f"--set {key.strip()}")
    return out



def save_config(cfg: RunConfig, path: str | Path) -> None:
    """The run's resolved config (config.yaml, distill_config.yaml), written atomically (a write error names
    the file)."""
    with writing(path), atomic_file(path) as fh:
        fh.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
