"""A sweep's spec and state: the YAML spec (fields, teachers, grid x variants), its expansion into trials, each
trial's config resolved exactly as `kdmarl distill` / `kdmarl train` resolve theirs, and the sweep_state.json that
lets `--resume` and `--report` find the trials again. Needs neither Ray nor torch."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml
from kdmarl_student.atomic import atomic_file

from kdmarl_teacher.algos import ALGORITHMS, train_cli
from kdmarl_teacher.algos.config import load_config
from kdmarl_teacher.core.config import load_yaml
from kdmarl_teacher.distill.config import ALL_TERMS, load_distill_config

SPEC_FIELDS = ("kind", "teacher", "config", "base", "grid", "variants", "reference", "metric", "cpus_per_trial",
               "eval_episodes", "description", "bench")


METRICS = {"distill": ("retention", "win_rate_retention", "student_return", "min_flops_reduction"),
           "train": ("team_return",)}


REPLICATE_KEYS = ("teacher", "seed")  # what varies across the replicates of a grid point (paired on these)


TRIAL_FILE = "sweep_trial.json"  # per trial directory: status, figures, error (written by the trial itself)


@dataclasses.dataclass
class Trial:
    name: str
    kind: str
    teacher: str | None  # absolute path (distill)
    teacher_index: int  # position in the teacher list of its team (the teacher-seed axis)
    variant: str
    values: dict[str, Any]  # grid values of this trial (the seed included)
    overrides: dict[str, Any]  # every config key set by the spec for this trial (base, grid, variant, threads)
    config_file: str | None
    dir: str  # absolute trial run directory
    cpus: int
    eval_episodes: int

    def point(self) -> dict[str, Any]:
        """The grid point: variant and every grid value but the replicate keys."""
        return {"variant": self.variant, **{k: v for k, v in self.values.items() if k not in REPLICATE_KEYS}}


def _fail(path: Path, field: str, message: str) -> ValueError:
    return ValueError(f"{path}: field '{field}': {message}")


def _expand_path(value: Any, path: Path, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, field, f"expected a path, got {value!r}")
    expanded = os.path.expandvars(os.path.expanduser(value))
    if "$" in expanded:
        raise _fail(path, field, f"{value!r}: environment variable not set")
    return expanded


def _resolve_file(value: str, spec_path: Path) -> Path:
    """A relative path: from the working directory if it exists there, else from the spec's directory."""
    p = Path(value)
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (spec_path.parent / p).resolve()


def _is_path_like(value: Any) -> bool:
    return isinstance(value, str) and ("/" in value or value.endswith((".yaml", ".yml")))


def fmt(value: Any) -> str:
    if _is_path_like(value):
        value = Path(value).stem
    text = json.dumps(value) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "", text.replace(",", "x")) or "v"


def set_items(overrides: dict[str, Any]) -> list[str]:
    """Config overrides as `--set key=value` items (JSON is valid YAML, which `parse_set` reads)."""
    return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read and check a spec's shape; every error names the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such sweep spec")
    spec = load_yaml(path)
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: expected a mapping of sweep spec fields ({', '.join(SPEC_FIELDS)})")
    unknown = sorted(set(spec) - set(SPEC_FIELDS))
    if unknown:
        raise _fail(path, unknown[0], f"unknown sweep spec field (known: {', '.join(SPEC_FIELDS)})")
    kind = spec.setdefault("kind", "distill")
    if kind not in METRICS:
        raise _fail(path, "kind", f"expected 'distill' or 'train', got {kind!r}")
    for field in ("base", "grid", "variants"):
        value = spec.get(field)
        spec[field] = {} if value is None else value
        if not isinstance(spec[field], dict):
            raise _fail(path, field, f"expected a mapping, got {type(value).__name__}")
    for key, values in spec["grid"].items():
        if not isinstance(values, list) or not values:
            raise _fail(path, f"grid.{key}", f"expected a non-empty list of values, got {values!r}")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise _fail(path, f"grid.{key}", f"repeated values in {values}")
    if not spec["variants"]:
        spec["variants"] = {"default": {}}
    for name, over in spec["variants"].items():
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", str(name)):
            raise _fail(path, f"variants.{name}", "a variant name is letters, digits and _ . + - only")
        if over is None:
            spec["variants"][name] = {}
        elif not isinstance(over, dict):
            raise _fail(path, f"variants.{name}", f"expected a mapping of config keys, got {over!r}")
    ref = spec.get("reference")
    if ref is not None and ref not in spec["variants"]:
        raise _fail(path, "reference", f"{ref!r} is not one of the variants {list(spec['variants'])}")
    metric = spec.setdefault("metric", METRICS[kind][0])
    if metric not in METRICS[kind]:
        raise _fail(path, "metric", f"{metric!r}: expected one of {list(METRICS[kind])} for kind {kind}")
    cpus = spec.setdefault("cpus_per_trial", 1)
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
        raise _fail(path, "cpus_per_trial", f"expected an integer >= 1, got {cpus!r}")
    episodes = spec.setdefault("eval_episodes", 200)
    if not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 1:
        raise _fail(path, "eval_episodes", f"expected an integer >= 1, got {episodes!r}")
    if "torch_threads" in spec["base"] or "torch_threads" in spec["grid"] or any(
            "torch_threads" in v for v in spec["variants"].values()):
        raise _fail(path, "cpus_per_trial", "torch_threads is set from cpus_per_trial; do not set it in base, "
                                            "grid or variants")
    if spec.get("config") is not None:
        spec["config"] = str(_resolve_file(_expand_path(spec["config"], path, "config"), path))
        if not Path(spec["config"]).is_file():
            raise _fail(path, "config", f"{spec['config']}: no such file")
    if kind == "distill":
        spec["teacher"] = _teachers(spec.get("teacher"), path)
    elif spec.get("teacher") is not None:
        raise _fail(path, "teacher", "kind train trains teachers: give no teacher")
    spec["source"] = str(path.resolve())
    return spec


def _teachers(value: Any, path: Path) -> dict[str, list[str]] | list[str]:
    """teacher: path | [paths] | {team: path | [paths]} -> absolute teacher.pt paths (a list, or per team)."""
    from kdmarl_teacher.algos.teacher import teacher_path  # noqa: PLC0415 (torch: not for --report)

    def one(v: Any, field: str) -> str:
        p = teacher_path(_resolve_file(_expand_path(v, path, field), path))
        if not p.is_file():
            raise _fail(path, field, f"no teacher checkpoint at {p}")
        return str(p)

    def many(v: Any, field: str) -> list[str]:
        items = v if isinstance(v, list) else [v]
        if not items:
            raise _fail(path, field, "expected at least one teacher")
        return [one(x, f"{field}[{i}]" if isinstance(v, list) else field) for i, x in enumerate(items)]

    if value is None:
        raise _fail(path, "teacher", "kind distill needs a teacher (a path, a list, or a mapping team -> path)")
    if isinstance(value, dict):
        return {str(team): many(v, f"teacher.{team}") for team, v in value.items()}
    return many(value, "teacher")


def _check_key(spec: dict[str, Any], field: str, key: str, value: Any) -> None:
    """One config key of the spec against the config loader (unknown key, type, range), naming the field."""
    try:
        if spec["kind"] == "distill":
            load_distill_config(None, set_items({key: value}))
        else:
            load_config(None, set_items({key: value}))
    except ValueError as err:
        message = str(err).replace("--set: ", "").replace("--set ", "")
        raise _fail(Path(spec["source"]), field, message) from None


def expand(spec: dict[str, Any], out: Path) -> list[Trial]:
    """The trials of a spec (teachers x grid product x variants), each config resolved and validated."""
    path = Path(spec["source"])
    for key, value in spec["base"].items():
        _check_key(spec, f"base.{key}", key, value)
    for key, values in spec["grid"].items():
        if key == "teacher":
            raise _fail(path, "grid.teacher", "give teachers as the top-level 'teacher' list (the teacher axis)")
        for i, value in enumerate(values):
            _check_key(spec, f"grid.{key}[{i}]", key, value)
    for name, over in spec["variants"].items():
        for key, value in over.items():
            _check_key(spec, f"variants.{name}.{key}", key, value)
    keys = list(spec["grid"])
    combos = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*spec["grid"].values())]
    trials: list[Trial] = []
    names: set[str] = set()
    for variant, over in spec["variants"].items():
        for values in combos:
            overrides = {**spec["base"], **values, **over, "torch_threads": spec["cpus_per_trial"]}
            if spec["kind"] == "distill":
                team = str(overrides.get("team") or _default_team(spec))
                if isinstance(spec["teacher"], dict):
                    if team not in spec["teacher"]:
                        raise _fail(path, "teacher", f"no teacher given for team {team!r} "
                                                     f"(teams with a teacher: {list(spec['teacher'])})")
                    teachers = spec["teacher"][team]
                else:
                    teachers = spec["teacher"]
            else:
                teachers = [None]
            if _is_path_like(overrides.get("team")):
                overrides["team"] = str(_resolve_file(overrides["team"], path))
            for ti, teacher in enumerate(teachers):
                parts = [variant] + ([f"t{ti}"] if len(teachers) > 1 else [])
                parts += [f"{k}={fmt(v)}" for k, v in values.items()]
                name = "_".join(parts)
                while name in names:
                    name += "+"
                names.add(name)
                trials.append(Trial(name=name, kind=spec["kind"], teacher=teacher, teacher_index=ti,
                                    variant=variant, values={**values, "teacher": ti} if len(teachers) > 1 else values,
                                    overrides=overrides, config_file=spec.get("config"),
                                    dir=str((out / "trials" / name).resolve()), cpus=spec["cpus_per_trial"],
                                    eval_episodes=spec["eval_episodes"]))
    teachers: dict[str, dict[str, Any]] = {}
    for t in trials:  # the whole config of each trial, as its run would resolve it (cross-key checks too)
        try:
            resolve_trial_config(t, teachers)
        except ValueError as err:
            raise ValueError(f"{path}: trial {t.name}: {err}") from None
    return trials


def _default_team(spec: dict[str, Any]) -> str:
    return load_distill_config(spec.get("config")).team


def teacher_checkpoint(path: str, cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The teacher's checkpoint (read once per sweep): its algorithm and scenario pick the trial's defaults."""
    if path not in cache:
        from kdmarl_teacher.core.run_files import load_checkpoint  # noqa: PLC0415 (torch: not for --report)

        cache[path] = load_checkpoint(path, "cpu")
    return cache[path]


def resolve_trial_config(t: Trial, teachers: dict[str, dict[str, Any]] | None = None) -> Any:
    """The trial's config exactly as `kdmarl distill` / `kdmarl train` resolve theirs (their own functions): the
    spec's `config` file (else the shipped default), then every override as a `--set`."""
    if t.kind == "distill":
        from kdmarl_teacher.distill import cli as distill_cli  # noqa: PLC0415 (torch: not for --report)
        args = argparse.Namespace(config=t.config_file, resume=False, out=t.dir, overrides=set_items(t.overrides),
                                  team=None, seed=None, device=None, resource_aware=False,
                                  **{f"no_{term}": False for term in ALL_TERMS})
        payload = teacher_checkpoint(t.teacher, teachers if teachers is not None else {})
        return distill_cli.resolve_config(args, distill_cli.default_config_file(payload),
                                          distill_cli.episode_limit(payload))
    args = argparse.Namespace(config=t.config_file, resume=False, out=t.dir, overrides=set_items(t.overrides),
                              scenario=None, seed=None, device=None)
    return train_cli.resolve_config(args, ALGORITHMS["mappo"])


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_file(path) as fh:
        fh.write((json.dumps(_finite(data), indent=2) + "\n").encode())


def save_state(out: Path, spec: dict[str, Any], trials: list[Trial]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep_spec.yaml").write_text(yaml.safe_dump({k: v for k, v in spec.items()}, sort_keys=False))
    write_json(out / "trials.json", {"kind": spec["kind"], "metric": spec["metric"],
                                      "reference": spec.get("reference"), "grid": spec["grid"],
                                      "variants": spec["variants"], "source": spec["source"],
                                      "trials": [dataclasses.asdict(t) for t in trials]})


def load_state(out: Path) -> tuple[dict[str, Any], list[Trial]]:
    path = out / "trials.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file ({out} is not a kdmarl sweep directory)")
    data = json.loads(path.read_text())
    return data, [Trial(**t) for t in data["trials"]]


def report_file(kind: str) -> str:
    return "distill_report.json" if kind == "distill" else "eval.json"


def _finite(value: Any) -> Any:
    """NaN/inf -> None, recursively: the JSON files stay standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
